"""A tripwire on the faust-streaming code regen overrides or depends on.

streams/consumer.py replaces private methods of Faust's consumer, and
agents/lanes.py relies on the order in which Faust revokes, assigns and
recovers (the ``on_partitions_revoked`` signal is sent after streams are
drained; ``app.rebalancing`` stays true until recovery ends). faust-streaming
is pinned to one release for that reason; this test fails when the pin moves
and any of those methods changed, so the upgrade starts by reading them.
"""

from __future__ import annotations

from importlib.metadata import version

import pytest

from tests.helpers import source_digest

PINNED = "0.15.3"

# Upstream method -> the first 16 hex digits of the SHA-256 of its source in PINNED.
WATCHED = {
    "faust.transport.consumer.Consumer.ack": "5fcf41cf45153475",
    "faust.transport.consumer.Consumer._wait_next_records": "6218e1969a636b3f",
    "faust.transport.consumer.Consumer._drain_messages": "44a2500309e83c63",
    "faust.transport.consumer.Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.consumer.Consumer._new_offset": "1d2c7ea89a7ad4f1",
    # Every ack reaches Consumer.ack through the Python stream iterator only.
    "faust.streams.Stream.__aiter__": "e815c0e831f1d2cc",
    "faust.streams.Stream._py_aiter": "3a48ee257a65435b",
    "faust.streams.Stream.ack": "32d7171a89b0931d",
    "faust.types.tuples.Message.ack": "4751b72c4ed84153",
    "faust.types.tuples.ConsumerMessage.on_final_ack": "45d670b6a8ac4bd0",
    "faust.transport.consumer.Consumer._filter_committable_offsets": "dc5e9baf5d994485",
    "faust.transport.consumer.Consumer._should_commit": "5ce941793947ad42",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.seek_to_committed": "775ab0adc4b052ab",
    "faust.transport.consumer.Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.consumer.Consumer.seek": "b86a9fe05f956b30",
    "faust.transport.consumer.Consumer.on_partitions_revoked": "d04b7ae72c6fc206",
    "faust.app.base.App._on_partitions_revoked": "d5c895bbe57dc73a",
    "faust.app.base.App._on_partitions_assigned": "de932b7927db85b3",
    "faust.tables.recovery.Recovery._resume_streams": "d986a6710c1aca98",
    "faust.tables.recovery.Recovery.on_recovery_completed": "6ef567acf072e46d",
}


def test_the_installed_faust_is_the_pinned_release():
    assert version("faust-streaming") == PINNED, (
        "faust-streaming moved: re-read the methods in WATCHED against streams/consumer.py and "
        "agents/lanes.py, then update PINNED, the hashes and pyproject.toml's pin together")


@pytest.mark.parametrize("name", sorted(WATCHED))
def test_a_watched_upstream_method_is_unchanged(name):
    digest = source_digest(name)
    assert digest == WATCHED[name], (
        f"{name} changed upstream: compare it with what streams/consumer.py / agents/lanes.py assume "
        f"(streams/checkpoint.py lists the rules), then record the new digest {digest}")


def test_streams_ack_through_the_consumer():
    """streams/consumer.py turns Faust's compiled stream iterator off: it
    acks behind Consumer.ack's back, and the commit rules never hear of it."""
    import faust.streams

    import regen.streams.consumer  # noqa: F401 - importing it is the switch

    assert faust.streams._CStreamIterator is None
