"""projections/stalls.py: which partitions are stalled, rule by rule."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.types import TP

from regen.agents.stall_watch import faust_readings, fetch_position_now, follower_readings
from regen.projections.stalls import PartitionKey, Reading, StallDetector, describe_recovery, describe_stall
from regen.settings import Settings
from regen.streams.checkpoint import Sequencer
from regen.streams.exceptions import ConfigError

BG3 = PartitionKey("render.background", 3)
EVENTS0 = PartitionKey("images.imported", 0)


def behind(committed: int = 99, end: int = 126, **kwargs) -> Reading:
    return Reading(committed=committed, end=end, **kwargs)


def test_work_waiting_with_the_committed_offset_unchanged_for_after_s_is_a_stall_told_once():
    detector = StallDetector(after_s=120)
    assert detector.observe(0, {BG3: behind()}).began == []
    assert detector.observe(119, {BG3: behind()}).began == []
    assert detector.stalled() == []
    changes = detector.observe(120, {BG3: behind()})
    assert [(s.key, s.committed, s.end, s.since, s.behind) for s in changes.began] == [(BG3, 99, 126, 0, 27)]
    assert detector.observe(125, {BG3: behind(end=130)}).began == []  # told once
    assert [(s.key, s.end) for s in detector.stalled()] == [(BG3, 130)]  # the end is kept current


def test_a_partition_that_moves_resets_and_its_stall_ends():
    detector = StallDetector(after_s=10)
    detector.observe(0, {BG3: behind()})
    detector.observe(10, {BG3: behind()})
    changes = detector.observe(11, {BG3: behind(committed=100)})
    assert [s.key for s in changes.ended] == [BG3] and detector.stalled() == []
    # The clock starts again at the new offset.
    assert detector.observe(20, {BG3: behind(committed=100)}).began == []
    assert [s.since for s in detector.observe(21, {BG3: behind(committed=100)}).began] == [11]


def test_a_long_batch_whose_records_keep_finishing_is_not_stalled():
    # A lane commits a batch once its slowest render is done: four renders of
    # 100 s each in one process hold the committed offset for 400 s, but one
    # of them finishes every 100 s.
    detector = StallDetector(after_s=120)
    for n, now in enumerate(range(0, 400, 100)):
        assert detector.observe(now, {BG3: behind(in_hand=True, finished=n)}).began == []
    assert detector.stalled() == []


def test_a_batch_that_stops_finishing_records_stalls_after_s_from_the_last_one():
    detector = StallDetector(after_s=120)
    detector.observe(0, {BG3: behind(in_hand=True, finished=0)})
    detector.observe(100, {BG3: behind(in_hand=True, finished=1)})  # the last render that finished
    assert detector.observe(219, {BG3: behind(in_hand=True, finished=1)}).began == []
    changes = detector.observe(220, {BG3: behind(in_hand=True, finished=1)})
    assert [(s.key, s.since) for s in changes.began] == [(BG3, 100)]
    # And a record finishing later ends the stall.
    assert [s.key for s in detector.observe(230, {BG3: behind(in_hand=True, finished=2)}).ended] == [BG3]


def test_a_rewind_is_movement_too():
    detector = StallDetector(after_s=10)
    detector.observe(0, {BG3: behind()})
    detector.observe(9, {BG3: behind(committed=90)})
    assert detector.observe(12, {BG3: behind(committed=90)}).began == []


def test_a_partition_that_catches_up_is_not_stalled():
    detector = StallDetector(after_s=10)
    detector.observe(0, {BG3: behind()})
    detector.observe(10, {BG3: behind()})
    changes = detector.observe(11, {BG3: behind(committed=126)})
    assert [s.key for s in changes.ended] == [BG3]
    assert detector.observe(100, {BG3: behind(committed=126)}).began == []


def test_a_held_partition_is_not_stalled_and_its_clock_restarts_when_released():
    detector = StallDetector(after_s=10)
    detector.observe(0, {BG3: behind()})
    detector.observe(10, {BG3: behind()})
    assert [s.key for s in detector.observe(11, {BG3: behind(held=True)}).ended] == [BG3]
    assert detector.observe(500, {BG3: behind(held=True)}).began == []
    assert detector.observe(501, {BG3: behind()}).began == []  # released: after_s from now
    assert [s.key for s in detector.observe(511, {BG3: behind()}).began] == [BG3]


def test_a_partition_gone_from_the_readings_resets():
    detector = StallDetector(after_s=10)
    detector.observe(0, {BG3: behind(), EVENTS0: behind()})
    detector.observe(10, {BG3: behind(), EVENTS0: behind()})
    assert [s.key for s in detector.stalled()] == [EVENTS0, BG3]
    changes = detector.observe(11, {EVENTS0: behind()})  # BG3 went to another worker
    assert [s.key for s in changes.ended] == [BG3]
    assert [s.key for s in detector.stalled()] == [EVENTS0]
    assert detector.observe(12, {BG3: behind(), EVENTS0: behind()}).began == []  # back: a new clock


def test_a_transaction_marker_left_after_everything_delivered_is_not_a_stall():
    # The publisher's last record was 98, its commit marker 99: the reader
    # committed 99, fetched past the marker, and holds nothing.
    detector = StallDetector(after_s=10)
    marker = Reading(committed=99, end=100, fetched_to=100, in_hand=False)
    detector.observe(0, {EVENTS0: marker})
    assert detector.observe(1000, {EVENTS0: marker}).began == []
    assert detector.stalled() == []


def test_records_in_hand_are_never_taken_for_markers():
    # The same offsets, but the reader holds records it has not finished
    # (a hung handler): that is a stall, whatever the fetch position says.
    detector = StallDetector(after_s=10)
    hung = Reading(committed=99, end=100, fetched_to=100, in_hand=True)
    detector.observe(0, {EVENTS0: hung})
    assert [s.in_hand for s in detector.observe(10, {EVENTS0: hung}).began] == [True]


@pytest.mark.parametrize("fetched_to", [None, 99])
def test_offsets_not_fetched_yet_are_work_even_with_nothing_in_hand(fetched_to):
    # A reader that stopped fetching (or whose position is unknown) with
    # records after its committed offset: the stall issue #12 saw.
    detector = StallDetector(after_s=10)
    idle = Reading(committed=99, end=126, fetched_to=fetched_to, in_hand=False)
    detector.observe(0, {BG3: idle})
    assert [s.key for s in detector.observe(10, {BG3: idle}).began] == [BG3]


def test_after_an_excused_pause_unreported_partitions_get_after_s_again_but_told_ones_stay():
    detector = StallDetector(after_s=10)
    detector.observe(0, {BG3: behind()})
    detector.observe(10, {BG3: behind()})  # told
    detector.observe(5, {EVENTS0: behind(), BG3: behind()})  # EVENTS0 watched from 5
    detector.excuse(60)  # a rebalance or broker outage until 60
    changes = detector.observe(61, {EVENTS0: behind(), BG3: behind()})
    assert changes.began == [] and changes.ended == []
    assert [s.key for s in detector.stalled()] == [BG3]
    assert [s.key for s in detector.observe(70, {EVENTS0: behind(), BG3: behind()}).began] == [EVENTS0]


def test_the_messages_say_where_how_long_and_what_to_do():
    detector = StallDetector(after_s=120)
    detector.observe(0, {BG3: behind(in_hand=True)})
    (stall,) = detector.observe(120, {BG3: behind(in_hand=True)}).began
    text = describe_stall(stall, "the background consumer of this worker", 120)
    assert text.startswith("render.background[3]: committed offset 99 has not moved for 120 s with 27 records "
                           "after it (end offset 126); the background consumer of this worker has records")
    assert "restart this worker" in text
    assert describe_recovery(stall, 130).startswith("render.background[3]: no longer stalled after 130 s")


def test_stall_after_is_validated():
    assert Settings.from_env({}).stall_after == 120
    assert Settings.from_env({"REGEN_STALL_AFTER": "30"}).stall_after == 30
    for bad in ("0", "4", "-1", "100000"):
        with pytest.raises(ConfigError, match="REGEN_STALL_AFTER"):
            Settings.from_env({"REGEN_STALL_AFTER": bad})
    with pytest.raises(ConfigError, match="REGEN_STALL_AFTER"):
        Settings.from_env({"REGEN_STALL_AFTER": "soon"})


# --- what agents/stall_watch.py reads from Faust's consumer and a lane -------

def kafka_consumer_at(position):
    """The part of an aiokafka consumer fetch_position_now reads."""
    state = SimpleNamespace(has_valid_position=position is not None, position=position)
    assignment = SimpleNamespace(state_value=lambda tp: state)
    return SimpleNamespace(_subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment)))


class FakeFaustConsumer:
    """The parts of CommitOnlyProcessedConsumer the stall watch reads."""

    def __init__(self, tp, committed, end, position):
        self.tp, self.end = tp, end
        self._thread = SimpleNamespace(_consumer=kafka_consumer_at(position))
        self.sequencer = Sequencer()
        self._committed_offset = {tp: committed} if committed is not None else {}

    def assignment(self):
        return {self.tp, TP("regen.jobs-changelog", 0)}  # a changelog: never read by the watch

    def highwater(self, tp):
        return self.end


def faust_ctx(consumer):
    return SimpleNamespace(settings=Settings(), app=SimpleNamespace(
        consumer=consumer, topics=SimpleNamespace(acks_enabled_for=lambda topic: "changelog" not in topic)))


IMPORTS0 = TP("regen.assets.imported", 0)


def test_faust_marker_case_everything_delivered_counted_and_committed_is_not_in_hand():
    consumer = FakeFaustConsumer(IMPORTS0, committed=99, end=100, position=100)
    consumer.sequencer.sought(IMPORTS0, 98)
    consumer.sequencer.delivered(IMPORTS0, 98)
    consumer.sequencer.counted(IMPORTS0, 98)
    assert consumer.sequencer.commit_bound(IMPORTS0) == 99
    ((key, reading),) = asyncio.run(faust_readings(faust_ctx(consumer)))
    assert key == PartitionKey("assets.imported", 0)
    assert reading == Reading(committed=99, end=100, fetched_to=100, in_hand=False)
    assert not reading.work_waits()


def test_faust_records_delivered_and_not_counted_are_in_hand_though_committed_equals_the_bound():
    # A hung agent: record 99 delivered, never acked. The commit bound is 99,
    # the committed offset too, and the fetch position past the end.
    consumer = FakeFaustConsumer(IMPORTS0, committed=99, end=100, position=100)
    consumer.sequencer.sought(IMPORTS0, 99)
    consumer.sequencer.delivered(IMPORTS0, 99)
    assert consumer.sequencer.commit_bound(IMPORTS0) == 99
    ((_, reading),) = asyncio.run(faust_readings(faust_ctx(consumer)))
    assert reading.in_hand and reading.work_waits()


def test_faust_counted_but_not_committed_is_in_hand_and_never_committed_uses_the_bound():
    consumer = FakeFaustConsumer(IMPORTS0, committed=None, end=5, position=5)
    consumer.sequencer.sought(IMPORTS0, 0)
    for offset in range(3):
        consumer.sequencer.delivered(IMPORTS0, offset)
    consumer.sequencer.counted(IMPORTS0, 0)
    ((_, reading),) = asyncio.run(faust_readings(faust_ctx(consumer)))
    assert (reading.committed, reading.in_hand) == (1, True)  # rule 7's bound: record 1 is not counted


def test_an_unplaced_faust_partition_never_committed_is_left_out():
    consumer = FakeFaustConsumer(IMPORTS0, committed=None, end=5, position=None)
    assert asyncio.run(faust_readings(faust_ctx(consumer))) == []


class FakeLaneConsumer:
    def __init__(self, end, position):
        self.end = end
        self._subscription = kafka_consumer_at(position)._subscription

    def highwater(self, tp):
        return self.end


@pytest.mark.parametrize(("busy", "held"), [(False, False), (True, False), (True, True)])
def test_a_lane_reading_says_what_the_lane_holds(busy, held):
    lane = SimpleNamespace(consumer=FakeLaneConsumer(end=126, position=126), topic="regen.render.background",
                           committed={3: 99}, finished=4, in_batch=frozenset({3}) if busy else frozenset(),
                           busy=lambda: busy, held=lambda: held, name="background")
    ((key, reading),) = asyncio.run(follower_readings(SimpleNamespace(settings=Settings()), lane))
    assert key == BG3
    # A partition of the batch in flight has the lane's count of records finished; others have none.
    assert reading == Reading(committed=99, end=126, fetched_to=126, in_hand=busy, held=held,
                              finished=4 if busy else 0)


def test_a_position_that_cannot_be_read_now_is_unknown():
    assert fetch_position_now(kafka_consumer_at(None), BG3) is None
    assert fetch_position_now(SimpleNamespace(), BG3) is None  # not started, or aiokafka changed
    assert fetch_position_now(kafka_consumer_at(7), BG3) == 7
