"""Topics read by aiokafka consumers of regen's own, following Faust's ownership.

Faust delivers every topic's records through one loop: a request used to
wait there behind thousands of source events and background jobs fetched
with it. The two render lanes and the requests topic now each have a
consumer of their own, with its own fetches and its own commits, so nothing
of the background work sits in front of a person's request except the render
processes, which the pool shares by priority.

Ownership still comes from Faust (rules 8-11 of streams/checkpoint.py): the
handlers write table rows, and a table partition must have one writer, so a
worker reads exactly the partitions whose ``jobs`` table partitions it owns.
These consumers join no group of their own: they are assigned those
partitions by hand and keep their offsets under the group ``<app id>.lanes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from regen.agents.context import WorkerContext
from regen.streams.checkpoint import commit_positions, lane_partitions
from regen.streams.connection import kafka_security, start_client
from regen.streams.exceptions import BrokerError
from regen.streams.fetch_pacing import FetchPacer, after_fetch
from regen.streams.topics import TopicSpec, topic_name

log = logging.getLogger(__name__)

# How long one fetch waits for records when a lane is idle: also how soon a
# lane notices a new assignment.
FETCH_WAIT_S = 0.5
# A failed commit is retried this often, backing off to this cap.
COMMIT_RETRY_FIRST_S, COMMIT_RETRY_MAX_S = 0.2, 5.0
# A lane whose consumer failed starts again after a delay doubling up to this.
LANE_RESTART_MAX_S = 30.0


@dataclass(frozen=True)
class LaneMessage:
    """A lane record in the shape Faust's messages have, for the code that
    expects one: table writes (``as_current_event``) and dead letters."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: float  # seconds, as Faust's messages have it

    @property
    def tp(self) -> Any:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class LaneEvent:
    message: LaneMessage
    # Told when the handler is done with this record (its outcome sent), before
    # the batch is: the stall watch takes a long batch whose records keep
    # finishing for progress, though its commit waits for the slowest.
    on_finished: Callable[[], None] | None = field(default=None, compare=False)

    def finished(self) -> None:
        if self.on_finished is not None:
            self.on_finished()


def lane_event(record: Any, on_finished: Callable[[], None] | None = None) -> LaneEvent:
    return LaneEvent(LaneMessage(record.topic, record.partition, record.offset, record.key, record.value,
                                 tuple(record.headers or ()), (record.timestamp or 0) / 1000), on_finished)


class PartitionFollower:
    """Reads the partitions of one topic that this worker owns, one batch at
    a time; commits a batch once ``handle`` has returned for it."""

    def __init__(self, ctx: WorkerContext, spec: TopicSpec, bootstrap: str,
                 handle: Callable[[WorkerContext, list[LaneEvent]], Awaitable[None]], *, name: str,
                 batch_size: int, paced: bool = False) -> None:
        self.ctx, self.spec, self.bootstrap, self.handle = ctx, spec, bootstrap, handle
        self.name, self.batch_size = name, batch_size
        # A throughput lane's fetches wait for a batch while it is busy
        # (streams/fetch_pacing.py); a lane a person waits on never does.
        self.pacer = FetchPacer(idle_wait_ms=int(FETCH_WAIT_S * 1000)) if paced else None
        self.topic = topic_name(ctx.settings, spec)
        self.consumer: AIOKafkaConsumer | None = None
        self.assigned: frozenset[int] = frozenset()
        # Bumped whenever Faust revokes: the lane reassigns (and so re-reads
        # from the committed offsets) even if it gets the same partitions back.
        self.rebalances = 0
        self._assigned_at = -1
        self.committed: dict[int, int] = {}  # partition -> committed offset, as far as this lane knows
        # Records the handler finished, a count that only grows, and the
        # partitions of the batch in flight: every one of them waits for the
        # same commit, so each record finished is progress for all of them
        # (rule 5 of projections/stalls.py).
        self.finished = 0
        self.in_batch: frozenset[int] = frozenset()
        self._idle = asyncio.Event()  # no batch in flight
        self._idle.set()
        self._stopping = False
        # True while the lane must take nothing new (background paused by an
        # operator: agents/control.py); its records wait, uncommitted.
        self.held: Callable[[], bool] = lambda: False

    # --- what Faust tells the lane -------------------------------------------

    def owned(self) -> frozenset[int]:
        """Rule 8: the partitions to read now; none while Faust rebalances
        or recovers tables."""
        app = self.ctx.app
        if app.rebalancing or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return frozenset()
        changelog = self.ctx.tables.jobs.changelog_topic.get_topic_name()
        return lane_partitions(((tp.topic, tp.partition) for tp in app.assignor.assigned_actives()), changelog)

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        """The worker is stopping: take no new batch, and give the one in
        flight the time a render may take to finish and be committed (if it
        does not, it is rendered again after the restart)."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.ctx.settings.render_timeout + 5)

    async def on_partitions_revoked(self) -> None:
        """Rule 10: let the batch in flight finish and be committed before
        the revocation returns; read nothing until the next assignment."""
        self.rebalances += 1
        await self._idle.wait()

    # --- the loop ------------------------------------------------------------

    async def run(self) -> None:
        settings, bootstrap = self.ctx.settings, self.bootstrap
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=f"{settings.app_id}.lanes", enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=self.batch_size,
            # How long the broker holds a fetch that finds nothing: a record
            # that arrives meanwhile is answered at once (fetch_min_bytes is
            # 1), so this costs a request no latency; it only sets how often
            # an idle lane asks (each of a worker's four, all day long).
            fetch_max_wait_ms=500, **kafka_security(settings))
        await start_client(consumer, settings, bootstrap)
        self.consumer = consumer
        try:
            while not self._stopping:
                await self._step(consumer)
        finally:
            self.consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        wanted = self.owned()
        if wanted != self.assigned or self._assigned_at != self.rebalances:
            await self._assign(consumer, wanted)
        if not self.assigned or self.held():
            await asyncio.sleep(FETCH_WAIT_S)
            return
        fetched = await consumer.getmany(timeout_ms=int(FETCH_WAIT_S * 1000), max_records=self.batch_size)
        records = [record for batch in fetched.values() for record in batch]
        if self.pacer is not None:
            after_fetch(self.pacer, consumer, len(records))
        if not records or self._stopping:
            return
        if self._assigned_at != self.rebalances or self.owned() != self.assigned:
            return  # a rebalance began during the fetch: rule 11 reads them again
        self._idle.clear()
        try:
            self.in_batch = frozenset(record.partition for record in records)
            await self.handle(self.ctx, [lane_event(record, self._finished_one) for record in records])
            await self._commit(consumer, commit_positions(records))
        finally:
            self.in_batch = frozenset()
            self._idle.set()

    async def _assign(self, consumer: AIOKafkaConsumer, partitions: frozenset[int]) -> None:
        """Rule 11: (re)assign and start every partition at its committed offset."""
        epoch = self.rebalances  # a revocation during the awaits below makes the next step reassign
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        never = [tp for tp, offset in committed.items() if offset is None]
        starts = {**committed, **(await self._where_faust_left_off(never) if never else {})}
        self.committed = {}
        for tp in tps:
            consumer.seek(tp, starts[tp] or 0)
            self.committed[tp.partition] = starts[tp] or 0
        if partitions != self.assigned:
            log.info("%s consumer reads partitions %s", self.name, sorted(partitions) or "none")
        self.assigned, self._assigned_at = partitions, epoch

    async def _where_faust_left_off(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Partitions this group never committed: the worker's Faust group
        read these topics before they had consumers of their own, so start
        where it committed rather than handle everything again (0 where it
        never committed either). One admin request for all of them."""
        faust_group = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                          **kafka_security(self.ctx.settings))
        try:
            await faust_group.start()
            offsets = await faust_group.list_consumer_group_offsets(self.ctx.settings.app_id, partitions=tps)
        except KafkaError:
            offsets = {}
        finally:
            await faust_group.close()
        return {tp: max(0, offsets[tp].offset) if tp in offsets else 0 for tp in tps}

    async def _commit(self, consumer: AIOKafkaConsumer, positions: dict[int, int]) -> None:
        """Rule 9, retried with backoff: the broker may be away for a while,
        and moving on uncommitted would only redo the batch later."""
        offsets = {TopicPartition(self.topic, p): OffsetAndMetadata(o, "") for p, o in positions.items()}
        delay = COMMIT_RETRY_FIRST_S
        while True:
            try:
                await consumer.commit(offsets)
                self.committed.update(positions)
                return
            except KafkaError as e:
                if self._assigned_at != self.rebalances:
                    log.info("%s consumer: commit after a rebalance failed (%s); the batch will be "
                             "handled again from the committed offsets", self.name, e)
                    return
                log.warning("%s consumer: commit failed (%s); retrying in %.1f s", self.name, e, delay)
                await asyncio.sleep(delay)
                delay = min(COMMIT_RETRY_MAX_S, delay * 2)

    def _finished_one(self) -> None:
        self.finished += 1

    # --- what the worker reports ---------------------------------------------

    def busy(self) -> bool:
        """Records fetched and not yet committed are in hand (a batch in
        flight): the stall watch (agents/stall_watch.py) never takes what
        follows the committed offset for transaction markers then."""
        return not self._idle.is_set()

    def lag(self) -> int:
        """Records of this worker's partitions not yet read."""
        consumer = self.consumer
        if consumer is None:
            return 0
        total = 0
        for p, committed in list(self.committed.items()):
            with contextlib.suppress(IllegalStateError):  # reassigned meanwhile
                end = consumer.highwater(TopicPartition(self.topic, p))
                total += max(0, (end or 0) - committed)
        return total


def start_followers(ctx: WorkerContext, followers: list[PartitionFollower]) -> None:
    """Run each as a task of the app, and hold Faust's revocations until
    their batches in flight are committed."""
    ctx.followers.extend(followers)
    for follower in followers:
        ctx.app.task(_forever(follower))
        ctx.app.before_stopping.append(follower.stop)  # type: ignore[attr-defined]  # RegenApp's

    @ctx.app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust types receivers narrower than it calls them
    async def followers_finish_their_batches(app: Any, revoked: Any, **kwargs: Any) -> None:
        started = time.monotonic()
        await asyncio.gather(*(follower.on_partitions_revoked() for follower in followers))
        waited = time.monotonic() - started
        if waited > 1:
            log.info("rebalance waited %.1f s for %s to finish their batches in flight", waited,
                     ", ".join(f.name for f in followers))


def _forever(lane: PartitionFollower) -> Callable[[], Awaitable[None]]:
    async def lane_task() -> None:
        await lane.ctx.ensure_pool()
        delay = COMMIT_RETRY_FIRST_S
        while not lane.stopping:
            started = time.monotonic()
            try:
                await lane.run()
            except (KafkaError, BrokerError) as e:
                # The broker is away (at start-up, or it went): the lane starts
                # again when it is back; its committed offsets lose nothing.
                log.warning("%s consumer stopped (%s); starting it again in %.0f s", lane.name, e, delay)
            except Exception:  # a bug: visible, and the lane goes on from its committed offsets
                log.exception("%s consumer failed; starting it again in %.0f s", lane.name, delay)
            if lane.stopping:
                return
            if time.monotonic() - started > 60:
                delay = COMMIT_RETRY_FIRST_S
            await asyncio.sleep(delay)
            delay = min(LANE_RESTART_MAX_S, delay * 2)

    lane_task.__name__ = lane_task.__qualname__ = f"{lane.name.replace('-', '_')}_consumer"
    return lane_task
