"""Faust's Kafka consumer, made to commit only what was really processed.

faust-streaming 0.15 loses messages around a rebalance, which a worker
restart always causes (the new member joins, then the dead one times out):
a stream acks messages it skipped as fetched under an older generation
(streams.py: "we want to ack the filtered out message otherwise the lag
would increase"), and its delivery loop counts a hole in a partition's
offsets as a "gap" that is done, then drops as already seen the records that
fill it. The bounce test lost whole fetch batches to each (upstream issues
#216, #221, #318).

The rules that replace Faust's are numbered in ``streams/checkpoint.py``;
this class applies them to Faust's consumer: rule 6 in :meth:`ack`, rule 4
in :meth:`_wait_next_records`, rules 1-5 in :meth:`_drain_messages`, rule 7
in :meth:`_new_offset`.

These override private methods of faust-streaming, which is pinned to one
release for that reason; ``tests/unit/test_faust_tripwire.py`` fails when
the upstream methods change, so an upgrade re-reads them first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
import faust.streams as faust_streams
from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING, RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from regen.streams.checkpoint import Sequencer, Verdict
from regen.streams.fetch_pacing import FetchPacer, after_fetch
from regen.streams.paced_clients import PacedTransport

# Faust's compiled stream iterator acks an event by writing the consumer's
# bookkeeping itself, never calling Consumer.ack: rules 6 and 7 would not
# hear of any ack from an agent reading one event at a time, and such a
# partition's commit would never move. Streams read this at each iteration,
# so setting it here makes every stream use the Python iterator, whose acks
# go through Consumer.ack.
faust_streams._CStreamIterator = None

# Records handed over before yielding to the event loop once: a large fetch
# must not keep the web server and timers waiting.
DELIVERIES_PER_YIELD = 100
# The fetch wait Faust gives its consumer (drivers/aiokafka.py): an idle
# worker's pace (streams/fetch_pacing.py, rule 1).
FAUST_FETCH_WAIT_MS = 1500


class CommitOnlyProcessedConsumer(faust_aiokafka.Consumer):
    """The aiokafka driver's consumer, applying streams/checkpoint.py's rules."""

    def ack(self, message: Message) -> bool:
        if not self.ack_counts_towards_commit(message):
            # Rule 6. Released, not committed: it will be fetched and handled
            # again, and rule 7 holds the commit below it until then.
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        if not message.acked and self.app.topics.acks_enabled_for(message.topic):
            self.sequencer.counted(message.tp, message.offset)
        return super().ack(message)

    def _new_offset(self, tp: TP) -> int | None:
        """Rule 7, instead of Faust's first run of acked offsets."""
        bound = self.sequencer.commit_bound(tp)
        acked = self._acked[tp]
        if bound is None:
            return None
        done = [offset for offset in acked if offset < bound]
        if done:  # Faust's bookkeeping of acks, kept only above the bound
            acked[:] = [offset for offset in acked if offset >= bound]
            self._acked_index[tp].difference_update(done)
        return bound

    async def _wait_next_records(self, timeout: float) -> tuple[RecordMap | None, set[TP] | None]:
        generation = self.app.consumer_generation_id
        self.sequencer.fetch_started()
        records, active_partitions = await super()._wait_next_records(timeout)
        if records and self.app.consumer_generation_id != generation:
            # Rule 4: records fetched across a rebalance carry the new
            # generation though they were read from the old position.
            self.log.info("discarding a fetch that straddled a rebalance (generation %s -> %s); "
                          "it is fetched again from the committed offsets", generation,
                          self.app.consumer_generation_id)
            await self._fetch_again(records)
            return {}, active_partitions
        return records, active_partitions

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's fetch-and-deliver loop, delivering by rules 1-5."""
        callback = self.callback
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        acks_enabled_for = self.app.topics.acks_enabled_for
        sequencer = self.sequencer
        delivered_since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                fetched_in = sequencer.round + 1  # _wait_next_records starts this round
                await self.sleep(0)  # getmany can return at once, again and again
                if self.should_stop:
                    break
                fetched = [item async for item in records]
                self._pace_fetches(len(fetched))
                sought: set[TP] = set()  # partitions sent back during this fetch's delivery
                for index, (tp, message) in enumerate(fetched):
                    delivered_since_yield += 1
                    if delivered_since_yield > DELIVERIES_PER_YIELD:
                        await asyncio.sleep(0)
                        delivered_since_yield = 0
                    if acks_enabled_for(message.topic):
                        verdict = sequencer.verdict(tp, message.offset, fetched_in)
                        if verdict is Verdict.UNPLACED:
                            continue  # rule 1: recovery's seek (perform_seek) places it and it is fetched again
                        if verdict is Verdict.STALE:
                            if tp not in sought:  # rule 2: once; the rest of this fetch is stale too
                                sought.add(tp)
                                await self._fetch_again({tp: [message]})
                            continue
                        if verdict is Verdict.DUPLICATE:
                            continue
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    # Rule 5, before the hand-over: an agent may handle and
                    # ack the record before the callback returns, and an ack
                    # must find its record delivered (rule 7).
                    sequencer.delivered(tp, message.offset)
                    delivery = asyncio.ensure_future(callback(message))
                    await self.wait_first(delivery, self.suspend_flow.wait())
                    if not delivery.done() or delivery.cancelled():
                        # Flow suspended for a rebalance: rule 4 for the rest,
                        # this record included.
                        sequencer.sought(tp, message.offset)
                        await self._fetch_again(_by_partition(fetched[index:]))
                        break
                    self._read_offset[tp] = message.offset
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

    async def _fetch_again(self, records: Mapping[TP, Any]) -> None:
        """Seek each partition with undelivered records back to its next
        offset (rules 2 and 4), so the next fetch brings them in order. An
        unplaced partition is left to recovery's seek (rule 1)."""
        for tp in records:
            expected = self.sequencer.next_offset.get(tp)
            if expected is None:
                continue
            try:
                await self.seek(tp, expected)
            except IllegalStateError:
                pass  # revoked meanwhile: its next owner starts from the committed offset

    async def perform_seek(self) -> None:
        await super().perform_seek()
        # Recovery sought every partition to its committed offset: the next to
        # deliver. aiokafka seeks only to a committed offset above 0, and
        # leaves a partition committed at 0, or never, wherever its fetcher
        # stands, which may be past records delivered before this seek: seek
        # those (the sources; changelogs are recovery's) to the start here.
        # Offset 0 is the start: where the log begins later (retention),
        # aiokafka resets to its first offset and rule 3 takes the gap.
        acks_enabled_for = self.app.topics.acks_enabled_for
        for tp, offset in list(self._read_offset.items()):
            if offset:
                self.sequencer.sought(tp, offset)
            elif acks_enabled_for(tp.topic):
                try:
                    await self.seek(tp, 0)
                except IllegalStateError:
                    self.sequencer.forget([tp])  # revoked meanwhile

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self.sequencer.sought(partition, offset)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.sequencer.forget(revoked)
        await super().on_partitions_revoked(revoked)

    def _pace_fetches(self, delivered: int) -> None:
        """streams/fetch_pacing.py: a busy worker's fetches wait for a batch.
        The aiokafka consumer runs in Faust's consumer thread; its fetcher
        reads the two values it is given when it builds the next request."""
        if not hasattr(self, "_regen_pacer"):
            self._regen_pacer = FetchPacer(idle_wait_ms=FAUST_FETCH_WAIT_MS)
        consumer = getattr(self._thread, "_consumer", None)  # type: ignore[attr-defined]  # Faust's thread consumers have it
        if consumer is not None:
            after_fetch(self._regen_pacer, consumer, delivered)

    @property
    def sequencer(self) -> Sequencer[TP]:
        """Rules 1-5's bookkeeping, created on first use: Faust builds
        consumers through a long __init__ chain that this class leaves alone."""
        if not hasattr(self, "_regen_sequencer"):
            self._regen_sequencer: Sequencer[TP] = Sequencer()
        return self._regen_sequencer

    def ack_counts_towards_commit(self, message: Message) -> bool:
        app = self.app
        return (
            app.flow_control.is_active()
            and message.generation_id == app.consumer_generation_id
        )


def _by_partition(items: list[tuple[TP, Any]]) -> dict[TP, list[Any]]:
    grouped: dict[TP, list[Any]] = {}
    for tp, message in items:
        grouped.setdefault(tp, []).append(message)
    return grouped


class RegenTransport(PacedTransport):
    Consumer = CommitOnlyProcessedConsumer


class RegenApp(faust.App):
    """A Faust app whose Kafka transport uses :class:`CommitOnlyProcessedConsumer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Awaited first when the app stops, while tables and producer still
        #: work: consumers of regen's own (the render lanes) finish and
        #: commit their batch in flight there.
        self.before_stopping: list[Callable[[], Awaitable[None]]] = []

    async def on_stop(self) -> None:
        for finish in self.before_stopping:
            await finish()
        await super().on_stop()

    def _new_transport(self) -> Any:
        return RegenTransport(self.conf.broker_consumer, self)


__all__ = ["CommitOnlyProcessedConsumer", "RegenApp", "RegenTransport"]
