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


def test_a_partition_never_sought_delivers_what_comes():
    sequencer: Sequencer = Sequencer()
    assert sequencer.verdict(P, 500, sequencer.fetch_started()) is Verdict.DELIVER


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


def test_forgetting_a_revoked_partition_starts_it_afresh():
    sequencer: Sequencer = Sequencer()
    sequencer.sought(P, 10)
    sequencer.forget([P])
    assert sequencer.verdict(P, 99, sequencer.fetch_started()) is Verdict.DELIVER


@dataclass
class Rec:
    partition: int
    offset: int


def test_rule_8_a_batch_commits_one_past_its_last_record_per_partition():
    batch = [Rec(0, 5), Rec(1, 9), Rec(0, 7), Rec(0, 6)]
    assert commit_positions(batch) == {0: 8, 1: 10}
    assert commit_positions([]) == {}


def test_rule_7_lanes_follow_the_active_jobs_changelog_partitions_only():
    actives = [("app-jobs-changelog", 0), ("app-jobs-changelog", 3), ("app-assets-changelog", 1), ("assets", 2)]
    assert lane_partitions(actives, "app-jobs-changelog") == {0, 3}
