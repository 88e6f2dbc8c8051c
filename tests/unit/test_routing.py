"""Which worker answers a query: the routing decision, and forwarding to the
owner (against a small local aiohttp server)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from regen.agents.routing import (
    ANSWERED_BY,
    FORWARDED_BY,
    RETRY_REBALANCE_S,
    Forward,
    GroupView,
    Local,
    Unavailable,
    decide,
    forward,
    group_view,
    normalize_url,
)

ME, OTHER = "http://w1:6066", "http://w2:6066"
TOPIC = "regen-assets-changelog"
OWNERS = {TOPIC: {0: ME, 1: OTHER, 2: ME, 3: OTHER}}


def view(state: str = "ok", owners=OWNERS) -> GroupView:
    return GroupView(self_url=ME, state=state, owners=owners)


def test_a_key_this_worker_owns_is_answered_here():
    assert decide(view(), "assets", TOPIC, 2, forwarded_by=None) == Local()


def test_a_key_another_worker_owns_is_forwarded_to_it():
    assert decide(view(), "assets", TOPIC, 1, forwarded_by=None) == Forward(OTHER)


def test_a_forwarded_query_for_a_partition_this_worker_owns_is_answered_here():
    assert decide(view(), "assets", TOPIC, 0, forwarded_by=OTHER) == Local()


def test_a_forwarded_query_is_never_forwarded_again():
    decision = decide(view(), "assets", TOPIC, 3, forwarded_by="http://w3:6066")
    assert isinstance(decision, Unavailable) and decision.retry_after == RETRY_REBALANCE_S
    assert "ownership is moving" in decision.reason and "w3" in decision.reason


def test_a_partition_nobody_owns_is_unavailable_not_missing():
    decision = decide(view(owners={TOPIC: {0: ME}}), "assets", TOPIC, 1, forwarded_by=None)
    assert isinstance(decision, Unavailable) and "no member" in decision.reason


def test_a_changelog_left_out_of_the_assignment_goes_to_the_owner_of_its_partition_in_the_other_tables():
    # Co-partitioned tables: partition 1 of every table is w2's, so the batch rows of partition 1 are there.
    owners = {TOPIC: {0: ME, 1: OTHER}, "regen-jobs-changelog": {0: ME, 1: OTHER}}
    assert decide(view(owners=owners), "batches", "regen-batches-changelog", 1, None) == Forward(OTHER)
    assert decide(view(owners=owners), "batches", "regen-batches-changelog", 0, None) == Local()
    # Tables that disagree (a member mid-move) name no owner: 503, not a guess.
    owners["regen-jobs-changelog"] = {0: ME, 1: "http://w3:6066"}
    assert isinstance(decide(view(owners=owners), "batches", "regen-batches-changelog", 1, None), Unavailable)


@pytest.mark.parametrize("state", ["starting", "rebalancing", "crashed"])
def test_while_not_ready_even_an_owned_partition_is_unavailable(state):
    for partition in range(4):
        decision = decide(view(state), "assets", TOPIC, partition, forwarded_by=None)
        assert isinstance(decision, Unavailable) and state in decision.reason


def test_urls_compare_in_one_spelling():
    assert normalize_url("HTTP://W1:6066/") == normalize_url("http://w1:6066") == "http://w1:6066"
    assert normalize_url("http://w1") == "http://w1:80"
    assert normalize_url("https://w1") == "https://w1:443"
    assert normalize_url("http://[::1]:6066") == "http://[::1]:6066"
    owners = {TOPIC: {0: "http://W1:6066/"}}
    assert decide(view(owners=owners), "assets", TOPIC, 0, None) == Local()


def test_members_are_listed_with_their_partitions_and_this_worker_always_among_them():
    assert view().members() == {ME: (0, 2), OTHER: (1, 3)}
    assert view(owners={}).members() == {ME: ()}
    idle = GroupView(self_url=ME, state="ok", owners=OWNERS, member_urls=(ME, OTHER, "http://w3:6066"))
    assert idle.members() == {ME: (0, 2), OTHER: (1, 3), "http://w3:6066": ()}


def fake_app(*, completed=True, rebalancing=False, crashed=False, metadata=None):
    event = asyncio.Event()
    if completed:
        event.set()
    return SimpleNamespace(
        tables=SimpleNamespace(recovery=SimpleNamespace(crashed=crashed, completed=event)),
        rebalancing=rebalancing,
        assignor=SimpleNamespace(tables_metadata=lambda: metadata or {}))


def test_the_group_view_reads_state_and_owners_from_faust():
    metadata = {ME: {TOPIC: [0, 2], "regen-jobs-changelog": [0, 2]}, OTHER: {TOPIC: [1, 3]}, "http://w3:6066": {}}
    group = group_view(fake_app(metadata=metadata), ME)
    assert group.state == "ok" and group.owners[TOPIC] == {0: ME, 1: OTHER, 2: ME, 3: OTHER}
    assert group.members() == {ME: (0, 2), OTHER: (1, 3), "http://w3:6066": ()}
    assert group.owners["regen-jobs-changelog"] == {0: ME, 2: ME}
    assert group_view(fake_app(completed=False), ME).state == "starting"
    assert group_view(fake_app(rebalancing=True), ME).state == "rebalancing"
    assert group_view(fake_app(crashed=True), ME).state == "crashed"


# --- forwarding -------------------------------------------------------------------

async def owner_server(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_forwarded_query_carries_the_token_and_marks_itself_and_the_answer_comes_back():
    seen = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(path=request.raw_path, auth=request.headers.get("Authorization"),
                    by=request.headers.get(FORWARDED_BY), host=request.headers.get("Host"))
        return web.json_response({"error": "busy"}, status=503,
                                 headers={"Retry-After": "2", ANSWERED_BY: "http://owner:1", "X-Other": "x"})

    runner, url = await owner_server(handler)
    try:
        async with aiohttp.ClientSession() as session:
            reply = await forward(session, url, "/assets/a%20b?x=1", "Bearer t0ken", ME)
    finally:
        await runner.cleanup()
    assert seen["path"] == "/assets/a%20b?x=1" and seen["auth"] == "Bearer t0ken" and seen["by"] == ME
    assert seen["host"] == url.removeprefix("http://")
    assert reply.status == 503 and reply.body == b'{"error": "busy"}'
    assert reply.headers["Retry-After"] == "2" and reply.headers[ANSWERED_BY] == "http://owner:1"
    assert reply.headers["Content-Type"].startswith("application/json") and "X-Other" not in reply.headers


async def test_an_owner_that_does_not_answer_in_time_raises_instead_of_hanging():
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()  # a stuck owner
        return web.Response(text="late")

    runner, url = await owner_server(handler)
    try:
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                await forward(session, url, "/assets/a", None, ME, timeout=0.3)
            assert loop.time() - started < 2
    finally:
        release.set()
        await runner.cleanup()
