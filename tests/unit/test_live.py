"""Live streams without a broker: SSE framing and parsing, the resume rule,
the broadcaster's bounds and its slow-client behaviour, signed stream URLs,
the finish rules and the settings."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from regen.agents.live_hub import LiveHub, Subscription, TableWatch, Wake
from regen.agents.live_views import FOLLOWED, _expected
from regen.cli.live_follow import _batch_state, _outcome
from regen.projections import sse
from regen.projections.signed_urls import image_signature, image_url_key
from regen.projections.stream_urls import (
    STREAM_URL_LIFETIME_S,
    stream_signature_valid,
    stream_url,
    stream_url_key,
)
from regen.settings import Settings
from regen.streams.exceptions import ConfigError

# --- framing -------------------------------------------------------------------------


def test_an_event_is_its_type_id_and_one_json_data_line_then_a_blank_line():
    frame = sse.event_frame("state", {"a": 1, "text": "two\nlines\r\n"}, "0123456789abcdef")
    assert frame == b'event: state\nid: 0123456789abcdef\ndata: {"a":1,"text":"two\\nlines\\r\\n"}\n\n'
    assert frame.count(b"\n\n") == 1, "a line break inside the data must not end the event"


def test_a_field_value_with_a_line_break_is_refused_instead_of_smuggling_fields():
    with pytest.raises(ValueError, match="line break"):
        sse.event_frame("state\ndata: evil", {})
    with pytest.raises(ValueError, match="line break"):
        sse.event_frame("state", {}, "id\nevent: finished")
    with pytest.raises(ValueError, match="NUL"):
        sse.event_frame("state", {}, "a\0b")
    with pytest.raises(ValueError, match="line break"):
        sse.comment_frame("x\ny")


def test_comments_and_retry_fields():
    assert sse.comment_frame() == b":\n\n"
    assert sse.comment_frame("waiting") == b": waiting\n\n"
    assert sse.retry_frame(2000) == b"retry: 2000\n\n"
    assert sse.retry_frame(-5) == b"retry: 0\n\n"


def test_the_parser_reads_what_the_server_writes_whatever_the_chunking():
    stream = (sse.retry_frame(1500) + sse.comment_frame("hi") + sse.event_frame("state", {"n": 1}, "a" * 16)
              + sse.comment_frame() + sse.event_frame("moved", {"reason": "r"}))
    for size in (1, 2, 7, len(stream)):
        parser = sse.EventParser()
        events = [e for i in range(0, len(stream), size) for e in parser.feed(stream[i:i + size])]
        assert [(e.event, orjson.loads(e.data), e.id) for e in events] == [
            ("state", {"n": 1}, "a" * 16), ("moved", {"reason": "r"}, "a" * 16)]  # an id sticks until replaced
        assert parser.retry_ms == 1500 and parser.last_id == "a" * 16


def test_the_parser_takes_crlf_and_ignores_unknown_fields():
    parser = sse.EventParser()
    events = list(parser.feed(b"event: state\r\nfoo: bar\r\ndata: 1\r\ndata: 2\r\n\r\n"))
    assert [(e.event, e.data) for e in events] == [("state", "1\n2")]


def test_the_parser_refuses_an_endless_event():
    parser = sse.EventParser(max_event_bytes=100)
    with pytest.raises(ValueError, match="more than 100 bytes"):
        list(parser.feed(b"data: " + b"x" * 200))


# --- ids and resuming --------------------------------------------------------------


def test_a_state_id_names_the_content_whatever_the_order_of_its_keys():
    assert sse.state_id({"a": 1, "b": [1, 2]}) == sse.state_id({"b": [1, 2], "a": 1})
    assert sse.state_id({"a": 1}) != sse.state_id({"a": 2})
    assert len(sse.state_id({})) == 16


def test_only_an_id_of_ours_counts_as_last_event_id():
    assert sse.resume_id("0123456789abcdef") == "0123456789abcdef"
    for junk in (None, "", "x" * 16, "0123456789ABCDEF", "0123456789abcdef0", "1 OR 1=1"):
        assert sse.resume_id(junk) is None


def test_the_resume_rules():
    # 1. a state the client lacks goes out
    assert sse.should_send(None, "s1", finished=False)
    assert sse.should_send("s0", "s1", finished=False)
    # 2. the state it has does not (nothing would change on screen)
    assert not sse.should_send("s1", "s1", finished=False)
    # 3. the final state always does, or a client that missed the end would wait forever
    assert sse.should_send("s1", "s1", finished=True)


# --- the broadcaster ------------------------------------------------------------------


def test_a_slow_client_is_cut_to_the_latest_state_not_an_ever_longer_queue():
    async def scenario():
        subscription = Subscription("k", limit=4)
        for n in range(10):
            subscription.offer({"n": n})
        assert subscription.pending() <= 4
        got = []
        while (item := await subscription.next(0.01)) is not None:
            got.append(item["n"])
        assert got[-1] == 9, "the newest state is never the one dropped"
        assert got == sorted(got)
        assert subscription.dropped == 10 - len(got)

    asyncio.run(scenario())


def test_a_client_that_keeps_up_sees_every_state():
    async def scenario():
        subscription = Subscription("k", limit=4)
        got = []
        for n in range(10):
            subscription.offer(n)
            got.append(await subscription.next(0.01))
        assert got == list(range(10)) and subscription.dropped == 0

    asyncio.run(scenario())


def test_a_wake_survives_the_cut():
    async def scenario():
        subscription = Subscription("k", limit=3)
        subscription.offer(1)
        subscription.offer(Wake("stopping", final=True))
        for n in range(2, 6):
            subscription.offer(n)
        items = [await subscription.next(0.01) for _ in range(subscription.pending())]
        assert any(isinstance(i, Wake) and i.final for i in items)
        assert items[-1] == 5

    asyncio.run(scenario())


def test_next_waits_for_an_offer_and_times_out_without_one():
    async def scenario():
        subscription = Subscription("k")
        started = time.monotonic()
        assert await subscription.next(0.05) is None
        assert time.monotonic() - started >= 0.04
        asyncio.get_running_loop().call_later(0.01, subscription.offer, "x")
        assert await subscription.next(5) == "x"

    asyncio.run(scenario())


def test_the_hub_bounds_open_streams_and_frees_a_slot_when_one_ends():
    hub = LiveHub(max_streams=2)
    with hub.slot() as first, hub.slot() as second:
        assert first and second
        with hub.slot() as third:
            assert not third
        assert hub.open_streams == 2 and hub.refused == 1
    assert hub.open_streams == 0
    with hub.slot() as again:
        assert again


def test_a_closing_hub_refuses_new_streams_and_ends_the_open_ones():
    async def scenario():
        hub = LiveHub(max_streams=5)
        with hub.subscribe(("batches", "b")) as subscription:
            hub.close("stopping")
            item = await subscription.next(1)
            assert isinstance(item, Wake) and item.final
            with hub.slot() as admitted:
                assert not admitted

    asyncio.run(scenario())


def test_the_hub_delivers_by_key_and_forgets_a_key_nobody_follows():
    async def scenario():
        hub = LiveHub(max_streams=5)
        with hub.subscribe(("batches", "a")) as a, hub.subscribe(("batches", "a")) as a2, \
                hub.subscribe(("groups", "a")) as g:
            hub.publish(("batches", "a"), {"v": 1})
            assert (await a.next(0.1), await a2.next(0.1)) == ({"v": 1}, {"v": 1})
            assert await g.next(0.01) is None
        assert not hub.followed(("batches", "a")) and not hub.followed(("groups", "a"))
        hub.publish(("batches", "a"), {"v": 2})  # nobody follows: nothing kept

    asyncio.run(scenario())


def test_the_table_sensor_passes_on_writes_to_watched_tables_only():
    class FakeTable:
        def __init__(self, name):
            self.name = name

    async def scenario():
        hub = LiveHub(max_streams=5)
        watch = TableWatch(hub, frozenset({"batches"}))
        with hub.subscribe(("batches", "b1")) as subscription, hub.subscribe(("jobs", "j")) as jobs:
            watch.on_table_set(FakeTable("batches"), "b1", {"row": 1})
            watch.on_table_set(FakeTable("jobs"), "j", {"row": 2})
            assert await subscription.next(0.1) == {"row": 1}
            assert await jobs.next(0.01) is None
            watch.on_rebalance_start(None)
            assert isinstance(await subscription.next(0.1), Wake)

    asyncio.run(scenario())


# --- signed stream URLs -------------------------------------------------------------


def test_a_stream_url_is_signed_for_its_path_and_expires():
    key, now = stream_url_key("s3cret"), 1_700_000_000.0
    url = stream_url(key, "/events/batches/walk", now)
    path, _, query = url.partition("?")
    fields = dict(part.split("=") for part in query.split("&"))
    assert path == "/events/batches/walk" and set(fields) == {"exp", "sig"}
    assert "s3cret" not in url
    assert int(fields["exp"]) == int(now) + STREAM_URL_LIFETIME_S
    assert stream_signature_valid(key, path, fields["exp"], fields["sig"], now)
    assert not stream_signature_valid(key, "/events/batches/other", fields["exp"], fields["sig"], now)
    assert not stream_signature_valid(key, path, fields["exp"], fields["sig"], now + STREAM_URL_LIFETIME_S + 1)
    assert not stream_signature_valid(stream_url_key("other"), path, fields["exp"], fields["sig"], now)


def test_an_image_signature_opens_no_stream():
    token, exp = "s3cret", "1700000300"
    image_sig = image_signature(image_url_key(token), "/events/overview", int(exp))
    assert not stream_signature_valid(stream_url_key(token), "/events/overview", exp, image_sig, 1_700_000_000)


def test_only_stream_paths_are_signed_and_odd_ids_are_quoted():
    key = stream_url_key("t")
    for bad in ("/images/x.jpg", "/events/batches/", "/events/batches/a/b", "/events/ticket", "/api/overview"):
        with pytest.raises(ValueError, match="not a live stream path"):
            stream_url(key, bad, 0)
    assert stream_url(None, "/events/batches/ü", 0, expect=3) == "/events/batches/%C3%BC?expect=3"
    assert stream_url(None, "/events/overview", 0) == "/events/overview"


# --- when a stream is finished -------------------------------------------------------------


def test_a_batch_is_finished_when_done_and_as_big_as_expected():
    finished = FOLLOWED["batches"].finished
    assert finished({"done": True, "total": 6}, 0)
    assert finished({"done": True, "total": 6}, 6)
    # Some partitions have not reported their items yet: not over for a client expecting 8.
    assert not finished({"done": True, "total": 6}, 8)
    assert not finished({"done": False, "total": 6}, 0)
    assert FOLLOWED["groups"].finished({"finished_at": "2026-01-01T00:00:00Z"}, 0)
    assert not FOLLOWED["groups"].finished({"finished_at": None}, 0)
    assert not FOLLOWED["videos"].finished({"pending": 0}, 0), "a video is followed until the client leaves"


def test_expect_is_a_small_whole_number_or_refused():
    assert _expected(None) == 0 and _expected("") == 0 and _expected("12") == 12
    for bad in ("-1", "1.5", "1e9", "123456789", " 1", "x"):
        assert _expected(bad) is None


def test_a_row_that_does_not_parse_shows_nothing():
    assert FOLLOWED["batches"].show("b", {"not": "a batch"}, 0.0) is None
    assert FOLLOWED["groups"].show("g", "junk", 0.0) is None


# --- the CLI's side ---------------------------------------------------------------------


def test_the_cli_takes_only_a_well_formed_batch_state():
    good = {"total": 4, "completed": 3, "failed": 1, "pending": 0, "failures": [{"asset_id": "a", "variant": "v",
                                                                                   "error": "e"}]}
    assert _batch_state(orjson.dumps(good).decode()) == good
    for bad in ("not json", "[]", '{"total": -1, "completed": 0, "failed": 0, "pending": 0, "failures": []}',
                '{"total": "4", "completed": 0, "failed": 0, "pending": 0, "failures": []}',
                '{"total": 4, "completed": 0, "failed": 0, "pending": 0, "failures": "x"}'):
        assert _batch_state(bad) is None
    outcome = _outcome(good, 4, "http://w:1")
    assert (outcome["completed"], outcome["failed"], outcome["unfinished"]) == (3, 1, 0)
    assert outcome["failures"] == ["a v: e"] and "http://w:1" in outcome["via"]
    assert _outcome(None, 4, "http://w:1", unfinished=True)["unfinished"] == 4


# --- settings ------------------------------------------------------------------------------


def test_live_settings_are_validated_and_the_cli_finds_the_local_worker():
    assert Settings().live_max_streams == 100
    with pytest.raises(ConfigError, match="REGEN_LIVE_MAX_STREAMS"):
        Settings.from_env({"REGEN_LIVE_MAX_STREAMS": "0"})
    with pytest.raises(ConfigError, match="REGEN_LIVE_URL"):
        Settings.from_env({"REGEN_LIVE_URL": "ftp://x"})
    assert Settings(web_host="0.0.0.0", web_port=7000).live_base_url() == "http://127.0.0.1:7000"
    assert Settings(web_port=7000).live_base_url() == "http://127.0.0.1:7000"
    assert Settings.from_env({"REGEN_LIVE_URL": "http://w2:6066/"}).live_base_url() == "http://w2:6066"


def test_the_relay_knows_whether_the_owner_ended_its_stream_as_it_should():
    from regen.agents.live_views import ENDING_EVENT

    state, comment = sse.event_frame("state", {"n": 1}, "a" * 16), sse.comment_frame()
    assert ENDING_EVENT.search(state + sse.event_frame("finished", {"n": 2}, "b" * 16))
    assert ENDING_EVENT.search(sse.retry_frame(2000) + sse.event_frame("moved", {"reason": "r"}))
    assert not ENDING_EVENT.search(sse.event_frame("finished", {"n": 2}, "b" * 16) + state)
    assert not ENDING_EVENT.search(state + comment)
    assert not ENDING_EVENT.search(sse.event_frame("state", {"text": "event: finished"}, "c" * 16))
