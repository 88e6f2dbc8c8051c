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
   same offsets "DROPPED". Faust's loop also marks a record as read when
   flow was suspended before it was delivered. Fix: a delivery loop of our
   own (``_drain_messages``) that delivers records of acked topics in
   sequence and seeks back over any hole.

At-least-once, never at-most-once: every handler in regen is idempotent.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING, RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

# A hole in a partition's offsets is fetched again at least this many times,
# over at least this long, before it is taken for real (offsets that a
# transactional producer's markers occupy never arrive).
HOLE_REFETCHES, HOLE_PATIENCE_S = 3, 5.0
# After a seek, records fetched before it may still arrive for a moment.
REFETCH_PAUSE_S = 0.5


class CommitOnlyProcessedConsumer(faust_aiokafka.Consumer):
    """The aiokafka driver's consumer with the fixes above."""

    def ack(self, message: Message) -> bool:
        if not self.ack_counts_towards_commit(message):
            # Released, not committed: it will be fetched and handled again.
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return super().ack(message)

    async def _wait_next_records(self, timeout: float) -> tuple[RecordMap | None, set[TP] | None]:
        generation = self.app.consumer_generation_id
        records, active_partitions = await super()._wait_next_records(timeout)
        if records and self.app.consumer_generation_id != generation:
            self.log.info("discarding a fetch that straddled a rebalance (generation %s -> %s); "
                          "it is fetched again from the committed offsets", generation,
                          self.app.consumer_generation_id)
            return {}, active_partitions
        return records, active_partitions

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's fetch-and-deliver loop, rewritten to deliver in sequence.

        Faust's own loop (1) marks a record as read even when flow was
        suspended and the record was never delivered, (2) counts a hole in
        the offsets as a "gap" that is done, and (3) drops as already seen
        any record below its read offset. Here a record is delivered only if
        it is the next offset of its partition; a record further on means
        the ones in between were lost on the way (fetched before a seek,
        dropped while flow was suspended), so the partition is sought back
        and they are fetched again. Only what was delivered moves the
        position on.
        """
        callback = self.callback
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        acks_enabled_for = self.app.topics.acks_enabled_for
        delivered_since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany can return at once, again and again
                if self.should_stop:
                    break
                # Whole fetches are delivered one record at a time through one
                # loop for every topic: records of the urgent topics (requests,
                # the interactive lane) go first, or a person's request waits
                # behind thousands of background records fetched with it.
                # Sorting is stable, so each partition keeps its order.
                fetched = sorted([item async for item in records], key=self._delivery_rank)
                for tp, message in fetched:
                    delivered_since_yield += 1
                    if delivered_since_yield > 100:
                        await asyncio.sleep(0)
                        delivered_since_yield = 0
                    if acks_enabled_for(message.topic) and not await self._next_in_sequence(tp, message.offset):
                        continue
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    delivery = asyncio.ensure_future(callback(message))
                    await self.wait_first(delivery, self.suspend_flow.wait())
                    if not delivery.done() or delivery.cancelled():
                        break  # flow suspended for a rebalance: the rest is fetched again after it
                    self._read_offset[tp] = message.offset
                    self._next_offsets()[tp] = message.offset + 1
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _delivery_rank(self, item: tuple[TP, Any]) -> int:
        return 0 if item[0].topic in self.app.urgent_topics else 1  # type: ignore[attr-defined]  # RegenApp's

    async def _next_in_sequence(self, tp: TP, offset: int) -> bool:
        """Whether ``offset`` is the next one to deliver for ``tp``; if it
        lies further on, seek back to fetch what is missing. Records still
        arriving from before the seek are skipped for a moment; a hole still
        there after several refetches over several seconds is real (offsets
        a transactional producer's markers take) and is accepted."""
        expected = self._next_offsets().get(tp)
        if expected is None or offset == expected:
            self._holes().pop(tp, None)
            return True
        if offset < expected:
            return False  # delivered already
        now = time.monotonic()
        hole = self._holes().get(tp)
        if hole is None or hole[0] != expected:
            hole = (expected, 0, now, 0.0)
        first_offset, seeks, first_seen, last_seek = hole
        if now - last_seek < REFETCH_PAUSE_S:
            return False  # a record fetched before the last seek: the refetch is on its way
        if seeks >= HOLE_REFETCHES and now - first_seen >= HOLE_PATIENCE_S:
            self.log.warning("%s: offsets %s..%s never arrive; going on from %s", tp, expected, offset - 1, offset)
            self._holes().pop(tp, None)
            return True
        self.log.info("%s: got offset %s while %s was next; fetching from %s again", tp, offset, expected, expected)
        self._holes()[tp] = (first_offset, seeks + 1, first_seen, now)
        await self.seek(tp, expected)
        return False

    async def perform_seek(self) -> None:
        await super().perform_seek()
        # The committed offset is the next one to deliver.
        self._next_offsets().update({tp: offset for tp, offset in self._read_offset.items() if offset is not None})

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._next_offsets()[partition] = offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._next_offsets().pop(tp, None)
            self._holes().pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def _next_offsets(self) -> dict[TP, int]:
        """Per partition, the next offset to deliver (after a seek: where it went)."""
        # Created on first use: Faust builds consumers through a long
        # __init__ chain that this class leaves alone.
        if not hasattr(self, "_regen_next_offsets"):
            self._regen_next_offsets: dict[TP, int] = {}
        return self._regen_next_offsets

    def _holes(self) -> dict[TP, tuple[int, int, float, float]]:
        """Per partition with a hole: (its first offset, refetches, first seen, last refetch)."""
        if not hasattr(self, "_regen_holes"):
            self._regen_holes: dict[TP, tuple[int, int, float, float]] = {}
        return self._regen_holes

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

    #: Topics whose records are delivered before others fetched with them.
    urgent_topics: frozenset[str] = frozenset()

    def _new_transport(self) -> Any:
        return RegenTransport(self.conf.broker_consumer, self)


__all__ = ["CommitOnlyProcessedConsumer", "RegenApp", "RegenTransport"]
