"""The consumer commits only messages the streams really processed.

These tests drive the real Faust consumer object of a real app (not
started: acks and commits offsets are bookkeeping, no broker is needed).
"""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from regen.settings import Settings
from regen.streams.app import create_app
from regen.streams.consumer import CommitOnlyProcessedConsumer

TOPIC = "regen-test.assets.imported"
PARTITION = TP(TOPIC, 0)


@pytest.fixture
def app(tmp_path):
    settings = Settings.from_env({"REGEN_STATE_DIR": str(tmp_path)})
    app = create_app(settings, "localhost:9092")
    app.topics._acking_topics.add(TOPIC)
    app.consumer_generation_id = 7
    app.flow_control.resume()
    yield app


class _Rec:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def message(app, offset: int, generation_id: int):
    record = ConsumerRecord(
        topic=TOPIC, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=b"asset-1", value=b"{}", checksum=None, serialized_key_size=7,
        serialized_value_size=2, headers=[],
    )
    msg = app.consumer._to_message(PARTITION, record)
    msg.generation_id = generation_id
    return msg


def delivered(app, offsets, generation_id: int = 7, placed_at: int | None = None):
    """Messages as _drain_messages hands them over: placed, then delivered in order."""
    sequencer = app.consumer.sequencer
    offsets = list(offsets)
    if PARTITION not in sequencer.next_offset:
        sequencer.sought(PARTITION, offsets[0] if placed_at is None else placed_at)
    messages = []
    for offset in offsets:
        sequencer.delivered(PARTITION, offset)
        messages.append(message(app, offset, generation_id))
    return messages


def test_the_app_uses_the_fixed_consumer(app):
    assert isinstance(app.consumer, CommitOnlyProcessedConsumer)


def test_messages_processed_in_the_current_generation_are_committed(app):
    consumer = app.consumer
    consumer._committed_offset[PARTITION] = 20
    for msg in delivered(app, range(20, 25)):
        assert consumer.ack(msg)
    assert consumer._new_offset(PARTITION) == 25
    assert not consumer._acked[PARTITION], "Faust's list of acks is emptied below the commit"


def test_messages_from_an_older_generation_are_released_but_not_committed(app):
    consumer = app.consumer
    stale = delivered(app, range(20, 34), generation_id=6)
    for msg in stale:
        consumer._unacked_messages.add(msg)
        assert consumer.ack(msg) is False
        assert msg.acked
    # Nothing to commit: the offsets will be fetched again after the seek.
    consumer._committed_offset[PARTITION] = 20
    assert consumer._new_offset(PARTITION) == 20, "no further than the first released record"
    assert not consumer._unacked_messages
    # Their refetched copies in the current generation count as usual.
    consumer.sequencer.sought(PARTITION, 20)
    for msg in delivered(app, range(20, 34)):
        assert consumer.ack(msg)
    assert consumer._new_offset(PARTITION) == 34


def test_a_released_record_is_not_committed_over_by_the_one_after_it(app):
    """The fleet test's loss: 10 was delivered in generation 6 and released
    when the group rebalanced; 11 was then processed in generation 7. Faust
    committed 12 (its run of acks may start one past the committed offset),
    and 10 was never handled."""
    consumer = app.consumer
    consumer._committed_offset[PARTITION] = 10
    [released] = delivered(app, [10], generation_id=6)
    assert consumer.ack(released) is False
    [after] = delivered(app, [11])
    assert consumer.ack(after)
    assert consumer._new_offset(PARTITION) == 10


def test_an_unplaced_partition_commits_nothing(app):
    consumer = app.consumer
    msg = message(app, 3, generation_id=7)
    consumer.ack(msg)
    assert consumer._new_offset(PARTITION) is None


def test_acks_while_flow_control_is_suspended_do_not_count(app):
    consumer = app.consumer
    consumer._committed_offset[PARTITION] = 5
    [msg] = delivered(app, [5])
    app.flow_control.suspend()
    assert consumer.ack(msg) is False
    app.flow_control.resume()
    assert consumer._new_offset(PARTITION) == 5
    assert not consumer._should_commit(PARTITION, 5), "nothing new to commit"


async def test_a_fetch_that_straddles_a_rebalance_is_discarded(app):
    consumer = app.consumer
    consumer.resume_flow()
    consumer._active_partitions = {PARTITION}
    fetched = {PARTITION: [_Rec(3)]}

    async def fetch_during_which_the_group_rebalances(active_partitions, timeout):
        app.consumer_generation_id += 1
        return fetched

    consumer._getmany = fetch_during_which_the_group_rebalances
    records, _ = await consumer._wait_next_records(0.1)
    assert not records

    async def fetch_within_one_generation(active_partitions, timeout):
        return fetched

    consumer._getmany = fetch_within_one_generation
    records, _ = await consumer._wait_next_records(0.1)
    assert records == fetched



async def test_a_record_fetched_before_a_seek_sends_its_partition_back(app):
    consumer = app.consumer
    seeks = []

    async def seek_in_the_fetcher(tp, offset):
        seeks.append((tp, offset))

    consumer._seek = seek_in_the_fetcher
    fetched_in = consumer.sequencer.fetch_started()
    await consumer.seek(PARTITION, 24)  # as recovery does, to the committed offset, during the fetch
    assert consumer.sequencer.verdict(PARTITION, 35, fetched_in).value == "stale"
    await consumer._fetch_again({PARTITION: [_Rec(35)]})
    assert seeks[-1] == (PARTITION, 24), "fetched again from the next offset"


async def test_a_fetch_that_straddles_a_rebalance_sends_its_partitions_back(app):
    consumer = app.consumer
    seeks = []

    async def seek_in_the_fetcher(tp, offset):
        seeks.append((tp, offset))

    consumer._seek = seek_in_the_fetcher
    consumer.sequencer.delivered(PARTITION, 40)
    consumer.resume_flow()
    consumer._active_partitions = {PARTITION}

    async def fetch_during_which_the_group_rebalances(active_partitions, timeout):
        app.consumer_generation_id += 1
        return {PARTITION: [_Rec(41), _Rec(42)]}

    consumer._getmany = fetch_during_which_the_group_rebalances
    records, _ = await consumer._wait_next_records(0.1)
    assert not records
    assert seeks == [(PARTITION, 41)], "the next fetch starts at the first record not delivered"
