"""Live progress over server-sent events with a real broker and two worker
processes: a client on the worker that does NOT own a batch follows it to
its ``finished`` event; a stream whose owner stops says ``moved`` and a
client resuming with Last-Event-ID gets the final state from the new
owner; `regen import --follow` shows completion over the stream (and falls
back to Kafka when no worker answers at REGEN_LIVE_URL)."""

from __future__ import annotations

import http.client
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from regen.agents.routing import ANSWERED_BY
from regen.cli.importer import scan
from regen.projections.sse import EventParser, ParsedEvent
from regen.streams.topics import partition_for
from tests.helpers import WorkerProcess, free_port, make_photos, publish_all, run

TOKEN = "live-t0ken"


class Stream:
    """One SSE request, read as parsed events (blocking, with a read timeout)."""

    def __init__(self, worker: WorkerProcess, path: str, token: str | None = TOKEN, last_id: str | None = None,
                 timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", worker.settings.web_port, timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if last_id:
            headers["Last-Event-ID"] = last_id
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.parser = EventParser()

    def events(self, until: float | None = None) -> Iterator[ParsedEvent]:
        """Until the server ends the stream. ``until`` (a time.monotonic()
        deadline) fails the test once passed: the server's heartbeats (every
        15 s) keep the read timeout from ever firing on a stream that never ends."""
        last: ParsedEvent | None = None
        while True:
            if until is not None and time.monotonic() > until:
                raise AssertionError(f"the stream did not end in time; its last event: {last}")
            chunk = self.response.read1(65536)
            if not chunk:
                return
            for event in self.parser.feed(chunk):
                last = event
                yield event

    def close(self) -> None:
        self.conn.close()


def url_of(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.settings.web_port}"


def start_pair(start_worker, tmp_path: Path, **env: str) -> list[WorkerProcess]:
    workers = [start_worker(REGEN_WEB_TOKEN=TOKEN, REGEN_STATE_DIR=str(tmp_path / f"state{i}"),
                            REGEN_WEB_PORT=str(free_port()), REGEN_RENDER_PROCESSES="1",
                            REGEN_PREGENERATE_VARIANTS="h400.jpg", **env)
               for i in range(2)]
    # Both in the group, each owning partitions, the group settled.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, view = workers[0].get("/api/overview", token=TOKEN)
        members = view.get("members", []) if status == 200 else []
        if view.get("state") == "ok" and len(members) == 2 and all(m["partitions"] for m in members):
            return workers
        time.sleep(0.3)
    raise AssertionError(f"the two workers did not settle into one group: {workers[0].get('/api/overview', TOKEN)}")


def partitions_of(asked: WorkerProcess, member: WorkerProcess) -> set[int]:
    _, view = asked.get("/api/overview", token=TOKEN)
    port = f":{member.settings.web_port}"
    return {p for m in view["members"] if m["url"].endswith(port) for p in m["partitions"]}


def batch_owned_by(asked: WorkerProcess, owner: WorkerProcess, prefix: str) -> str:
    owned = partitions_of(asked, owner)
    partitions = asked.settings.partitions
    return next(b for n in itertools.count() if partition_for(b := f"{prefix}-{n}", partitions) in owned)


def imports_of(folder: Path, count: int, root: Path, batch_id: str):
    return [s.event for s in scan(make_photos(folder, count), [root], batch_id)]


def test_a_client_on_the_non_owner_follows_a_batch_to_finished_and_the_cli_follows_over_the_stream(
        start_worker, tmp_path):
    media = tmp_path / "media"
    asked, owner = start_pair(start_worker, tmp_path, REGEN_MEDIA_ROOTS=str(media), REGEN_LIVE_MAX_STREAMS="4")
    batch_id = batch_owned_by(asked, owner, "live")
    imports = imports_of(media / "walk", 8, media, batch_id)

    # No token, a wrong one, an unsigned or a tampered URL: refused, before anything is relayed.
    assert Stream(asked, f"/events/batches/{batch_id}", token=None).status == 401
    assert Stream(asked, f"/events/batches/{batch_id}", token="wrong").status == 401
    assert Stream(asked, f"/events/batches/{batch_id}?exp=9999999999&sig={'0' * 64}", token=None).status == 401

    stream = Stream(asked, f"/events/batches/{batch_id}?expect=8")
    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.headers[ANSWERED_BY] == url_of(owner), "the non-owner relays the owner's stream"
    run(publish_all(asked.settings, asked.env["KAFKA_BOOTSTRAP_SERVERS"], imports))

    seen = list(stream.events())  # until the server ends the stream
    stream.close()
    assert seen and seen[-1].event == "finished", [e.event for e in seen]
    assert all(e.event == "state" for e in seen[:-1])
    bodies = [orjson.loads(e.data) for e in seen]
    final = bodies[-1]
    assert (final["batch_id"], final["total"], final["completed"] + final["failed"], final["pending"]) == (
        batch_id, 8, 8, 0)
    assert final["done"] and final["percent"] == 100.0
    done = [b["completed"] + b["failed"] for b in bodies]
    assert done == sorted(done), "progress never goes back"
    assert all(e.id and len(e.id) == 16 for e in seen) and len({e.id for e in seen}) == len(seen)

    # Resuming after the end (the client missed the close): told again that it is finished, not left waiting.
    again = Stream(asked, f"/events/batches/{batch_id}", last_id=seen[-1].id, timeout=20)
    resumed = list(again.events())
    assert [e.event for e in resumed] == ["finished"] and orjson.loads(resumed[0].data) == final

    # A browser's way in: a signed URL from /events/ticket (with the token), no token in the URL.
    status, ticket = asked.get(f"/events/ticket?path=/events/batches/{batch_id}", token=TOKEN)
    assert status == 200 and TOKEN not in ticket["url"] and "sig=" in ticket["url"]
    signed = Stream(asked, ticket["url"], token=None, timeout=20)
    assert signed.status == 200 and [e.event for e in signed.events()] == ["finished"]
    assert asked.get(f"/events/ticket?path=/events/batches/{batch_id}")[0] == 401

    # `regen import --follow --batch` follows over the stream of the worker at REGEN_LIVE_URL.
    folder = media / "trip"
    make_photos(folder, 5)
    cli_env = {**asked.env, "REGEN_LIVE_URL": url_of(asked)}
    trip = batch_owned_by(asked, owner, "trip")
    imported = subprocess.run([sys.executable, "-m", "regen.cli.main", "import", str(folder), "--batch", trip,
                               "--follow", "--json"], env=cli_env, capture_output=True, text=True, timeout=180)
    assert imported.returncode == 0, imported.stderr
    followed = orjson.loads(imported.stdout.splitlines()[-1])
    assert (followed["completed"], followed["failed"], followed["unfinished"]) == (5, 0, 0), followed
    assert followed["via"] == f"live stream at {url_of(asked)}"

    # No worker at REGEN_LIVE_URL: the CLI follows the completions on Kafka, as before.
    nobody = {**asked.env, "REGEN_LIVE_URL": f"http://127.0.0.1:{free_port()}"}
    again_folder = media / "again"
    make_photos(again_folder, 3)
    imported = subprocess.run([sys.executable, "-m", "regen.cli.main", "import", str(again_folder), "--batch",
                               "again", "--follow", "--json"], env=nobody, capture_output=True, text=True,
                              timeout=180)
    assert imported.returncode == 0, imported.stderr
    followed = orjson.loads(imported.stdout.splitlines()[-1])
    assert (followed["completed"], followed["unfinished"], followed["via"]) == (3, 0, "completions on Kafka")

    # Streams are bounded per worker: past REGEN_LIVE_MAX_STREAMS, 503 with Retry-After.
    held = [Stream(asked, "/events/videos/v-none", timeout=20) for _ in range(4)]
    assert [s.status for s in held] == [200] * 4
    refused = Stream(asked, "/events/videos/v-none", timeout=20)
    assert refused.status == 503 and refused.headers.get("Retry-After")
    for s in held:
        s.close()


@pytest.mark.slow  # two workers, one stopped mid-batch, the group rebalancing
def test_a_stream_whose_owner_stops_says_moved_and_a_resumed_client_gets_the_final_state(start_worker, tmp_path):
    media = tmp_path / "media"
    asked, owner = start_pair(start_worker, tmp_path, REGEN_MEDIA_ROOTS=str(media))
    batch_id = batch_owned_by(asked, owner, "moving")
    imports = imports_of(media / "big", 30, media, batch_id)

    stream = Stream(asked, f"/events/batches/{batch_id}?expect=30")
    assert stream.headers[ANSWERED_BY] == url_of(owner)
    run(publish_all(asked.settings, asked.env["KAFKA_BOOTSTRAP_SERVERS"], imports))
    # The owner's stop takes up to 30 s (then SIGKILL); a relay whose owner went silent ends within 35 s.
    events = stream.events(until=time.monotonic() + 120)
    first = next(events)
    assert first.event == "state"
    owner.stop(signal.SIGTERM)
    rest = list(events)
    stream.close()
    assert rest and rest[-1].event == "moved", [e.event for e in rest]
    assert stream.parser.retry_ms and stream.parser.retry_ms > 0
    last_id = stream.parser.last_id

    # Reconnect as EventSource would: to the same worker, with Last-Event-ID, after the retry.
    deadline = time.monotonic() + 120
    final = None
    while final is None and time.monotonic() < deadline:
        time.sleep(stream.parser.retry_ms / 1000)
        again = Stream(asked, f"/events/batches/{batch_id}?expect=30", last_id=last_id)
        if again.status == 503:  # the group is rebalancing
            again.close()
            continue
        assert again.status == 200
        for event in again.events(until=deadline):
            last_id = event.id or last_id
            if event.event == "finished":
                final = orjson.loads(event.data)
                assert again.headers[ANSWERED_BY] == url_of(asked), "the survivor owns the batch now"
        again.close()
    assert final is not None, "the batch never finished for the resumed client"
    assert (final["total"], final["completed"] + final["failed"], final["pending"]) == (30, 30, 0)

