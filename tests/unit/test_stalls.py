"""projections/stalls.py: which partitions are stalled, rule by rule."""

from __future__ import annotations

import pytest

from regen.projections.stalls import PartitionKey, Reading, StallDetector, describe_recovery, describe_stall
from regen.settings import Settings
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
