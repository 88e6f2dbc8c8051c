"""streams/checkpoint.py's rules, on their own (no Kafka client)."""

from __future__ import annotations

from dataclasses import dataclass

from regen.streams.checkpoint import Sequencer, Verdict, commit_positions, lane_partitions

P = ("assets", 0)


def test_rule_1_the_next_offset_is_delivered_and_moves_on():
    sequencer: Sequencer = Sequencer()
    fetched_in = sequencer.fetch_started()
    sequencer.sought(P, 10)  # recovery: the committed offset
    fetched_in = sequencer.fetch_started()
    for offset in (10, 11, 12):
        assert sequencer.verdict(P, offset, fetched_in) is Verdict.DELIVER
        sequencer.delivered(P, offset)
    assert sequencer.next_offset[P] == 13


def test_rule_1_a_partition_never_sought_delivers_nothing_until_placed():
    sequencer: Sequencer = Sequencer()
    assert sequencer.verdict(P, 500, sequencer.fetch_started()) is Verdict.UNPLACED
    assert sequencer.commit_bound(P) is None, "nothing is committed from an unknown position"
    sequencer.sought(P, 480)  # the committed offset
    fetched_in = sequencer.fetch_started()
    assert sequencer.verdict(P, 500, fetched_in) is Verdict.DELIVER, "rule 3 once placed"


def test_rule_2_records_fetched_before_a_seek_are_stale():
    sequencer: Sequencer = Sequencer()
    fetched_in = sequencer.fetch_started()
    sequencer.sought(P, 24)  # a seek while this fetch's records are in hand
    assert sequencer.verdict(P, 35, fetched_in) is Verdict.STALE
    assert sequencer.verdict(P, 24, fetched_in) is Verdict.DELIVER, "the next offset is the next offset"


def test_rule_3_a_hole_in_a_fetch_after_the_seek_is_real_at_once():
    sequencer: Sequencer = Sequencer()
    sequencer.fetch_started()
    sequencer.sought(P, 10)
    fetched_in = sequencer.fetch_started()
    # 10 and 11 are a transaction's markers: no record lives there.
    assert sequencer.verdict(P, 12, fetched_in) is Verdict.DELIVER
    sequencer.delivered(P, 12)
    assert sequencer.next_offset[P] == 13


def test_records_below_the_next_offset_were_delivered_already():
    sequencer: Sequencer = Sequencer()
    sequencer.sought(P, 10)
    sequencer.delivered(P, 10)
    assert sequencer.verdict(P, 10, sequencer.fetch_started()) is Verdict.DUPLICATE


def test_forgetting_a_revoked_partition_leaves_it_unplaced():
    sequencer: Sequencer = Sequencer()
    sequencer.sought(P, 10)
    sequencer.delivered(P, 10)
    sequencer.forget([P])
    assert sequencer.verdict(P, 99, sequencer.fetch_started()) is Verdict.UNPLACED
    assert sequencer.commit_bound(P) is None


def test_rule_7_the_commit_stops_at_the_lowest_delivered_record_not_counted():
    sequencer: Sequencer = Sequencer()
    sequencer.sought(P, 10)
    for offset in (10, 11, 12):
        sequencer.delivered(P, offset)
    assert sequencer.commit_bound(P) == 10
    sequencer.counted(P, 11)
    sequencer.counted(P, 12)
    assert sequencer.commit_bound(P) == 10, "10 was delivered and not counted: 11 and 12 must wait for it"
    sequencer.counted(P, 10)
    assert sequencer.commit_bound(P) == 13


def test_rule_7_a_released_record_holds_the_commit_until_it_is_delivered_again():
    """The fleet test's loss: 10 is released by a rebalance (its ack does not
    count), 11 is counted; Faust committed 12 and 10 was never handled."""
    sequencer: Sequencer = Sequencer()
    sequencer.sought(P, 10)
    sequencer.delivered(P, 10)
    sequencer.delivered(P, 11)
    sequencer.counted(P, 11)
    assert sequencer.commit_bound(P) == 10
    sequencer.sought(P, 10)  # recovery seeks back to the committed offset
    assert sequencer.commit_bound(P) == 10
    sequencer.delivered(P, 10)
    sequencer.counted(P, 10)
    assert sequencer.commit_bound(P) == 11, "11 is delivered again after 10; counted then"


def test_rule_7_a_hole_taken_by_rule_3_is_committed_over():
    sequencer: Sequencer = Sequencer()
    sequencer.sought(P, 10)
    fetched_in = sequencer.fetch_started()
    assert sequencer.verdict(P, 12, fetched_in) is Verdict.DELIVER  # 10 and 11 are markers
    sequencer.delivered(P, 12)
    sequencer.counted(P, 12)
    assert sequencer.commit_bound(P) == 13


def test_a_seek_back_forgets_what_will_be_delivered_again_only():
    sequencer: Sequencer = Sequencer()
    sequencer.sought(P, 10)
    for offset in (10, 11, 12, 13):
        sequencer.delivered(P, offset)
    sequencer.counted(P, 10)
    sequencer.sought(P, 12)
    assert sequencer.outstanding[P] == {11}
    assert sequencer.commit_bound(P) == 11


@dataclass
class Rec:
    partition: int
    offset: int


def test_rule_9_a_batch_commits_one_past_its_last_record_per_partition():
    batch = [Rec(0, 5), Rec(1, 9), Rec(0, 7), Rec(0, 6)]
    assert commit_positions(batch) == {0: 8, 1: 10}
    assert commit_positions([]) == {}


def test_rule_8_lanes_follow_the_active_jobs_changelog_partitions_only():
    actives = [("app-jobs-changelog", 0), ("app-jobs-changelog", 3), ("app-assets-changelog", 1), ("assets", 2)]
    assert lane_partitions(actives, "app-jobs-changelog") == {0, 3}
