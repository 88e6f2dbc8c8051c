"""A reader's fetches: answered at once when idle, held for a batch when busy
(streams/fetch_pacing.py, rules 1-4), and how the pace reaches aiokafka."""

from __future__ import annotations

import pytest

from regen.streams.consumer import FAUST_FETCH_WAIT_MS
from regen.streams.fetch_pacing import (
    BUSY_MIN_BYTES,
    BUSY_WAIT_MS,
    FetchPacer,
    Pace,
    apply_pace,
)
from tests.helpers import source_digest

IDLE = Pace(1, 500)
BUSY = Pace(BUSY_MIN_BYTES, BUSY_WAIT_MS)


def feed(pacer: FetchPacer, per_fetch: int, fetches: int, start: float, every: float) -> float:
    """``fetches`` deliveries of ``per_fetch`` records, ``every`` seconds apart; returns the time after."""
    now = start
    for _ in range(fetches):
        pacer.observe(per_fetch, now)
        now += every
    return now


def test_rule_1_a_new_reader_is_answered_at_once_and_waits_its_own_idle_wait_when_empty():
    pacer = FetchPacer(idle_wait_ms=500)
    assert pacer.observe(0, 100.0) == IDLE
    assert not pacer.is_busy


def test_rule_2_a_reader_delivering_many_records_a_second_waits_for_a_batch():
    pacer = FetchPacer(idle_wait_ms=500, busy_from=40)
    now = feed(pacer, per_fetch=10, fetches=8, start=0.0, every=0.125)  # 80 records a second
    assert pacer.observe(10, now) == BUSY
    assert pacer.is_busy


def test_rule_2_a_few_records_a_second_leave_a_reader_idle():
    pacer = FetchPacer(idle_wait_ms=500, busy_from=40)
    now = feed(pacer, per_fetch=1, fetches=24, start=0.0, every=0.125)  # 8 records a second, for 3 s
    assert pacer.observe(1, now) == IDLE


def test_rule_3_a_busy_reader_stays_busy_above_idle_below_and_turns_idle_under_it():
    pacer = FetchPacer(idle_wait_ms=500, busy_from=40, idle_below=10)
    now = feed(pacer, per_fetch=10, fetches=9, start=0.0, every=0.125)
    assert pacer.is_busy
    now = feed(pacer, per_fetch=2, fetches=16, start=now, every=0.125)  # 16 a second: between the two
    assert pacer.is_busy
    now = feed(pacer, per_fetch=0, fetches=8, start=now, every=0.125)  # the work ended: empty fetches
    assert pacer.observe(0, now) == IDLE


def test_rule_4_the_pace_changes_only_when_a_window_ends():
    pacer = FetchPacer(idle_wait_ms=500, busy_from=40, window_s=1.0)
    assert pacer.observe(1000, 0.0) == IDLE  # a burst opens the window
    assert pacer.observe(1000, 0.5) == IDLE  # half a window: undecided
    assert pacer.observe(0, 1.0) == BUSY


def test_rule_4_an_idle_readers_empty_fetches_end_a_window_too():
    # An idle reader observes once per idle wait (500 ms), and a burst still
    # turns it busy one window later.
    pacer = FetchPacer(idle_wait_ms=500, busy_from=40)
    pacer.observe(0, 0.0)
    pacer.observe(0, 0.5)
    assert pacer.observe(60, 1.0) == BUSY  # 60 records over the 1 s window


def test_a_busy_fetch_never_waits_longer_than_an_idle_one():
    # A reader whose idle wait is shorter than BUSY_WAIT_MS is never held longer for being busy.
    pacer = FetchPacer(idle_wait_ms=50, busy_from=1, idle_below=0)
    now = feed(pacer, per_fetch=10, fetches=16, start=0.0, every=0.0625)
    assert pacer.observe(10, now) == Pace(BUSY_MIN_BYTES, 50)


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="idle_below"):
        FetchPacer(idle_wait_ms=500, busy_from=10, idle_below=20)


class _Fetcher:
    _fetch_min_bytes = 1
    _fetch_max_wait_ms = 500


class _Consumer:
    def __init__(self, fetcher: object | None) -> None:
        self._fetcher = fetcher


def test_the_pace_is_given_to_the_consumers_fetcher():
    consumer = _Consumer(_Fetcher())
    apply_pace(consumer, BUSY)
    assert (consumer._fetcher._fetch_min_bytes, consumer._fetcher._fetch_max_wait_ms) == \
        (BUSY_MIN_BYTES, BUSY_WAIT_MS)


def test_a_consumer_not_started_yet_is_left_alone():
    apply_pace(_Consumer(None), BUSY)  # no fetcher yet: nothing to set, and no error


# The two attributes the pace is written to are read by aiokafka each time it
# builds a fetch request, and Faust gives its consumer FAUST_FETCH_WAIT_MS:
# a changed method fails here, and the upgrade re-reads it first.
WATCHED = {
    "aiokafka.consumer.fetcher.Fetcher.__init__": "bf21ecb7e0f210b7",
    "aiokafka.consumer.fetcher.Fetcher._get_actions_per_node": "1dab2cf937d165d0",
    "aiokafka.consumer.consumer.AIOKafkaConsumer.start": "2f1ba70443327538",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": "c2701bfc3e6f6cad",
}


@pytest.mark.parametrize("name", sorted(WATCHED))
def test_a_watched_upstream_method_is_unchanged(name):
    assert source_digest(name) == WATCHED[name], f"{name} changed upstream: compare it with streams/fetch_pacing.py"


def test_faust_gives_its_consumer_the_fetch_wait_taken_as_its_idle_pace():
    import inspect

    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert f"fetch_max_wait_ms={FAUST_FETCH_WAIT_MS}," in inspect.getsource(
        AIOKafkaConsumerThread._create_worker_consumer)
