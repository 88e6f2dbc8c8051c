"""The generation lane: up to REGEN_GENERATION_CONCURRENCY jobs in flight.

A generation job spends up to a minute waiting on its model, and the other
lanes' follower (agents/lanes.py) waits for a whole batch before it fetches
again. Here each record is handled on its own task and the next record is
fetched as soon as one finishes, so one hung call (abandoned at its
timeout) holds one slot, not the lane. Offsets follow rule 12 of
streams/checkpoint.py: committed only past an unbroken run of finished
records. Ownership, assignment and commits are the lanes' own (rules 8-11).

The follower also tells the generators' call windows how many of the
lane's partitions this worker reads: its share of each rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer

from regen.agents.context import WorkerContext
from regen.agents.lanes import FETCH_WAIT_S, LaneEvent, PartitionFollower, lane_event
from regen.streams.checkpoint import InFlight
from regen.streams.topics import TopicSpec

log = logging.getLogger(__name__)

# While jobs are in flight, a fetch waits this long at most, so a finished
# job's offset is committed (and its slot refilled) without delay.
BUSY_FETCH_WAIT_S = 0.05


class GenerationFollower(PartitionFollower):
    def __init__(self, ctx: WorkerContext, spec: TopicSpec, bootstrap: str,
                 handle: Callable[[WorkerContext, list[LaneEvent]], Awaitable[None]], *, name: str,
                 concurrency: int, on_share: Callable[[int, int], None]) -> None:
        super().__init__(ctx, spec, bootstrap, handle, name=name, batch_size=concurrency)
        self.concurrency = concurrency
        self.on_share = on_share
        self.in_flight = InFlight()
        self._tasks: dict[asyncio.Future[None], tuple[int, int]] = {}  # task -> (partition, offset)
        self._failure: BaseException | None = None
        self._cancelling = False  # this lane is cancelling its own jobs: not a failure
        self.longest_job_s = max((g.timeout_s for g in ctx.settings.generators), default=0.0) + \
            ctx.settings.render_timeout

    async def stop(self) -> None:
        """As the lanes' stop, with the time a model call and its render may take."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.longest_job_s + 5)

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        if self._failure is not None:
            await self._abandon()
        wanted = self.owned()
        if wanted != self.assigned or self._assigned_at != self.rebalances:
            if self._tasks:  # rules 10 and 11: finish and commit what is in flight first
                await self._settle(consumer, wait=True)
                return
            await self._assign(consumer, wanted)
            if self._steady():  # not the "nothing" read while a rebalance runs: that would zero the share
                self.on_share(len(self.assigned), self.ctx.settings.partitions)
        if not self.assigned:
            await asyncio.sleep(FETCH_WAIT_S)
            return
        if self._stopping:  # take nothing new; finish and commit what is in flight (stop() waits for it)
            while self._tasks:
                await self._settle(consumer, wait=True)
            return
        room = self.concurrency - len(self._tasks)
        if room <= 0:
            await self._settle(consumer, wait=True)
            return
        wait_s = BUSY_FETCH_WAIT_S if self._tasks else FETCH_WAIT_S
        fetched = await consumer.getmany(timeout_ms=int(wait_s * 1000), max_records=room)
        records = [record for batch in fetched.values() for record in batch]
        if records and not self._stopping and self._assigned_at == self.rebalances and self.owned() == self.assigned:
            self._idle.clear()
            for record in records:
                self.in_flight.started(record.partition, record.offset)
                task = asyncio.ensure_future(self.handle(self.ctx, [lane_event(record)]))
                self._tasks[task] = (record.partition, record.offset)
                task.add_done_callback(self._finished)
        # (records fetched as a rebalance began are read again from the committed offsets: rule 11)
        await self._settle(consumer, wait=False)

    def _steady(self) -> bool:
        app = self.ctx.app
        return not app.rebalancing and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]

    def _finished(self, task: asyncio.Future[None]) -> None:
        if self._failure is not None or self._cancelling:
            return
        if task.cancelled():  # not by this lane (it cancels only while giving up): its offset would never commit
            self._failure = RuntimeError("a generation job was cancelled; reading again from the committed offsets")
        elif task.exception() is not None:
            self._failure = task.exception()

    async def _settle(self, consumer: AIOKafkaConsumer, *, wait: bool) -> None:
        """Commit past every unbroken run of finished jobs; with ``wait``,
        first wait until at least one job finishes."""
        if wait and self._tasks:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in [t for t in self._tasks if t.done()]:
            partition, offset = self._tasks.pop(task)
            if not task.cancelled() and task.exception() is None:
                self.in_flight.done(partition, offset)
        positions = self.in_flight.committable()
        if positions:
            await self._commit(consumer, positions)
        if not self._tasks:
            self._idle.set()
        if self._failure is not None:
            await self._abandon()

    async def _abandon(self) -> None:
        """A handler raised (a bug: handlers dead-letter what they cannot
        do): stop the others and let the lane start again from its
        committed offsets, which never passed the failed record."""
        failure = self._failure
        await self._cancel_all()
        self._failure = None
        assert failure is not None
        raise failure

    async def _cancel_all(self) -> None:
        self._cancelling = True
        try:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._cancelling = False
        self._tasks.clear()
        self.in_flight.clear()
        self._idle.set()

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await self._cancel_all()  # the consumer is gone: what is in flight is read again
            self._failure = None
