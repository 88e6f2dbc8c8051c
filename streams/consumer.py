"""Faust's Kafka consumer, made to commit only what was really processed.

faust-streaming 0.15 loses messages around a rebalance, which a worker
restart always causes (the new member joins, then the dead one times out):

1. A stream that receives a message fetched under an older consumer
   generation, or while flow control is suspended for the rebalance, drops
   it as "skipped" and *acks* it (streams.py: "we want to ack the filtered
   out message otherwise the lag would increase"). The acked offsets then
   count towards the next commit. Recovery seeks back to the committed
   offsets and the same offsets are fetched again, but the commit has
   already moved past them: a worker killed before it reprocesses them
   loses a whole fetch batch per partition. The bounce test saw exactly
   that (a batch of ~14 imports on every partition, never processed).
   Upstream: faust-streaming issues #216, #221, #318.

   Fix: an ack only counts while the message's generation is the
   consumer's current one and flow control is active — the same condition
   under which the stream would have processed it. Anything else is
   released (so shutdown does not wait for it) but not committed; it is
   fetched again after the rebalance and processed then.

2. Records a fetch returns after a rebalance, but fetched before it (from
   the old position), are tagged with the *new* generation: ``getmany``
   reads the generation only after the fetch returns. Recovery has just
   sought back to the committed offset (say 47) and recorded it as the
   read offset; a stale record at 61 then makes Faust mark 48..61 as a
   "gap" (offsets it believes will never arrive, which count as acked) and
   move the read offset to 61, so when 48..60 do arrive they are dropped as
   already seen. The bounce test saw this too: lane messages at offsets
   47-48 never processed, the group's offsets far past them.
   Fix: a fetch during which the generation changed is discarded whole.
   Every rebalance ends with a seek to the committed offsets before flow
   resumes, so those records are fetched again from the right position.

3. Even within one generation, right after recovery seeks a partition back
   to its committed offset (say 24), the first record delivered can be a
   later one (35: records fetched before the seek). Faust then marks 25..35
   as a gap — offsets it believes will never arrive, counted as acked, so
   the commit moves past them — and when 24..34 do arrive they are below
   its read offset and dropped. Seen with logging in the bounce test: gaps
   of one fetch batch on every partition right after a restart, then the
   same offsets "DROPPED". Fix: records of acked topics reach Faust in
   sequence, or not at all (see ``_in_sequence``).

At-least-once, never at-most-once: every handler in regen is idempotent.
"""

from __future__ import annotations

from typing import Any, Optional, Set, Tuple

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.consumer import RecordMap
from faust.types import TP, Message


class CommitOnlyProcessedConsumer(faust_aiokafka.Consumer):
    """The aiokafka driver's consumer with the fix above."""

    def ack(self, message: Message) -> bool:
        if not self.ack_counts_towards_commit(message):
            # Released, not committed: it will be fetched and handled again.
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return super().ack(message)

    async def _wait_next_records(self, timeout: float) -> Tuple[Optional[RecordMap], Optional[Set[TP]]]:
        generation = self.app.consumer_generation_id
        records, active_partitions = await super()._wait_next_records(timeout)
        if records and self.app.consumer_generation_id != generation:
            self.log.info("discarding a fetch that straddled a rebalance (generation %s -> %s); "
                          "it is fetched again from the committed offsets", generation,
                          self.app.consumer_generation_id)
            return {}, active_partitions
        if records:
            records = {tp: await self._in_sequence(tp, batch) for tp, batch in records.items()}
        return records, active_partitions

    async def _in_sequence(self, tp: TP, batch: list) -> list:
        """Fix 3: deliver an acked topic's records without holes.

        A record beyond the next expected offset means the ones in between
        were not delivered: seek back and fetch them, instead of letting
        Faust count the hole as done. A hole that is still there after the
        seek is real (offsets a transactional producer's markers took) and
        is accepted. Records below the expected offset were delivered
        already and are dropped here rather than reprocessed.
        """
        expected = self._next_expected().get(tp)
        if not batch or not self.app.topics.acks_enabled_for(tp.topic):
            return batch
        if expected is not None:
            batch = [record for record in batch if record.offset >= expected]
            if batch and batch[0].offset > expected and self._holes_seen().get(tp) != batch[0].offset:
                self._holes_seen()[tp] = batch[0].offset
                self.log.info("%s: fetched offset %s while %s was expected; fetching %s.. again",
                              tp, batch[0].offset, expected, expected)
                await self.seek(tp, expected)
                return []
        if batch:
            self._holes_seen().pop(tp, None)
            self._next_expected()[tp] = batch[-1].offset + 1
        return batch

    async def perform_seek(self) -> None:
        await super().perform_seek()
        # The committed offset is the next one to process.
        self._next_expected().update({tp: offset for tp, offset in self._read_offset.items() if offset is not None})

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._next_expected()[partition] = offset

    async def on_partitions_revoked(self, revoked: Set[TP]) -> None:
        for tp in revoked:
            self._next_expected().pop(tp, None)
            self._holes_seen().pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def _next_expected(self) -> dict[TP, int]:
        # Created on first use: Faust builds consumers through a long
        # __init__ chain that this class leaves alone.
        if not hasattr(self, "_regen_next_expected"):
            self._regen_next_expected: dict[TP, int] = {}
        return self._regen_next_expected

    def _holes_seen(self) -> dict[TP, int]:
        if not hasattr(self, "_regen_holes_seen"):
            self._regen_holes_seen: dict[TP, int] = {}
        return self._regen_holes_seen

    def ack_counts_towards_commit(self, message: Message) -> bool:
        app = self.app
        return (
            app.flow_control.is_active()
            and message.generation_id == app.consumer_generation_id
        )


class RegenTransport(faust_aiokafka.Transport):
    Consumer = CommitOnlyProcessedConsumer


class RegenApp(faust.App):
    """A Faust app whose Kafka transport uses :class:`CommitOnlyProcessedConsumer`."""

    def _new_transport(self) -> Any:
        return RegenTransport(self.conf.broker_consumer, self)


__all__ = ["CommitOnlyProcessedConsumer", "RegenApp", "RegenTransport"]
