"""Telling an operator when a partition this worker reads stops progressing.

Every few seconds a timer reads, for every partition the worker reads, the
committed offset, the end offset and whether the reader holds it on purpose,
from Faust's consumer (source events, completions, retries, ...) and from
each consumer of regen's own (the render lanes, requests, generation:
agents/lanes.py), and hands them to projections/stalls.py, which decides.
A stall is logged once as a WARNING that says what to do (at a bounded
rate, should one come and go), its end as INFO; the number of stalled
partitions is the gauge ``regen_stalled_partitions{reader}`` and their
names are in ``/health`` (``stalled_partitions``). A stall does not make
/health unhealthy: the worker still serves and its other partitions still
progress, and an orchestrator restarting it on a health check would hide
the evidence; the gauge is what an alert rule watches.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiokafka import TopicPartition

from regen.agents.context import WorkerContext
from regen.agents.timers import guarded_timer
from regen.projections.stalls import PartitionKey, Reading, StallDetector, describe_recovery, describe_stall
from regen.projections.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

# The reader name of the partitions Faust's consumer reads (the lanes are
# named after their lane: interactive, background, generation, request-intake).
FAUST_READER = "faust"


class StallWatch:
    """The detector and what the worker reports from it."""

    def __init__(self, ctx: WorkerContext, interval_s: float) -> None:
        self.ctx, self.interval_s = ctx, interval_s
        self.detector = StallDetector(after_s=ctx.settings.stall_after)
        self.readers: dict[PartitionKey, str] = {}  # which reader each partition was last read by
        self._last_observed: float | None = None
        # A partition that stalls, recovers and stalls again is told at most once a minute.
        self._told = ThrottledLog(log)

    def names(self) -> list[str]:
        """For /health: "render.background[3]", ..."""
        return [str(stall.key) for stall in self.detector.stalled()]

    async def tick(self) -> None:
        now = time.monotonic()
        if not self._readers_can_progress():
            return
        if self._last_observed is not None and now - self._last_observed > 2.5 * self.interval_s:
            # Ticks were skipped (a rebalance, recovery, the broker away: the
            # guarded timer skips during an outage): rule 6 of projections/stalls.py.
            self.detector.excuse(now)
        readings: dict[PartitionKey, Reading] = {}
        readers: dict[PartitionKey, str] = {}
        async for reader, key, reading in self._read_all():
            readings[key], readers[key] = reading, reader
        if not self._readers_can_progress():  # a rebalance began while reading: these may be half old
            return
        self._last_observed = now
        changes = self.detector.observe(now, readings)
        for stall in changes.began:
            self._told.log(f"began {stall.key}", logging.WARNING, "%s",
                           describe_stall(stall, f"the {readers[stall.key]} consumer of this worker", now))
        for stall in changes.ended:
            self._told.log(f"ended {stall.key}", logging.INFO, "%s", describe_recovery(stall, now))
        self.readers = readers  # a stalled partition is always among the latest readings (rule 5)
        self._set_gauge()

    def _readers_can_progress(self) -> bool:
        app = self.ctx.app
        return not app.rebalancing and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]

    def _set_gauge(self) -> None:
        counts = dict.fromkeys(self._reader_names(), 0)
        for stall in self.detector.stalled():
            reader = self.readers.get(stall.key, FAUST_READER)
            counts[reader] = counts.get(reader, 0) + 1
        for reader, count in counts.items():
            self.ctx.metrics.stalled_partitions.labels(reader).set(count)

    def _reader_names(self) -> list[str]:
        return [FAUST_READER, *(follower.name for follower in self.ctx.followers)]

    async def _read_all(self) -> Any:
        for key, reading in await faust_readings(self.ctx):
            yield FAUST_READER, key, reading
        for follower in self.ctx.followers:
            for key, reading in await follower_readings(self.ctx, follower):
                yield follower.name, key, reading


def shown_topic(ctx: WorkerContext, topic: str) -> str:
    """regen's name of a topic (its suffix): topic names carry a configured
    prefix, and /health, which anyone may read, shows no settings."""
    prefix = f"{ctx.settings.topic_prefix}."
    return topic[len(prefix):] if topic.startswith(prefix) else topic


async def faust_readings(ctx: WorkerContext) -> list[tuple[PartitionKey, Reading]]:
    """The acked (non-changelog) partitions of Faust's assignment."""
    consumer: Any = ctx.app.consumer
    sequencer = getattr(consumer, "sequencer", None)  # CommitOnlyProcessedConsumer's rules 1-7
    if sequencer is None:
        return []
    # The aiokafka consumer under Faust's, which lives in a thread of its own.
    kafka_consumer = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    readings = []
    for tp in _acked_partitions(ctx, consumer):
        with contextlib.suppress(Exception):  # unassigned or stopping meanwhile: left out of this tick
            end = consumer.highwater(tp)
            if end is None:  # no fetch answered yet
                continue
            next_offset = sequencer.next_offset.get(tp)
            bound = sequencer.commit_bound(tp)
            # Faust keeps None for a partition committed at 0 or never: the
            # offset it may commit is then where its progress shows.
            committed = consumer._committed_offset.get(tp)
            if committed is None:
                committed = bound
            if committed is None:  # unplaced (rule 1): nothing delivered yet, its commit unknown
                continue
            # In hand: records delivered and not yet counted, or counted and
            # not yet committed (rule 7's bound is ahead). Only with neither
            # may rule 2 of projections/stalls.py take what is left for
            # transaction markers; an unplaced partition counts as in hand.
            in_hand = next_offset is None or bool(sequencer.outstanding.get(tp)) or bound != committed
            readings.append((PartitionKey(shown_topic(ctx, tp.topic), tp.partition),
                             Reading(committed=committed, end=end, in_hand=in_hand,
                                     fetched_to=fetch_position_now(kafka_consumer, tp))))
    return readings


def _acked_partitions(ctx: WorkerContext, consumer: Any) -> Iterator[Any]:
    # Table changelogs are in the assignment too (recovery and standbys read
    # them), but nothing commits them: only topics whose messages are acked.
    acks_enabled_for = ctx.app.topics.acks_enabled_for
    return iter(sorted((tp for tp in consumer.assignment() if acks_enabled_for(tp.topic)),
                       key=lambda tp: (tp.topic, tp.partition)))


async def follower_readings(ctx: WorkerContext, follower: Any) -> list[tuple[PartitionKey, Reading]]:
    """The partitions a lane (agents/lanes.py PartitionFollower) reads."""
    consumer = follower.consumer
    if consumer is None:
        return []
    held, in_hand = follower.held(), follower.busy()
    readings = []
    for partition, committed in list(follower.committed.items()):
        tp = TopicPartition(follower.topic, partition)
        with contextlib.suppress(Exception):  # reassigned or stopping meanwhile: left out of this tick
            end = consumer.highwater(tp)
            if end is None:
                continue
            readings.append((PartitionKey(shown_topic(ctx, follower.topic), partition),
                             Reading(committed=committed, end=end, in_hand=in_hand, held=held,
                                     fetched_to=fetch_position_now(consumer, tp),
                                     finished=follower.finished if partition in follower.in_batch else 0)))
    return readings


def fetch_position_now(kafka_consumer: Any, tp: Any) -> int | None:
    """An aiokafka consumer's fetch position of ``tp`` (it moves past
    transaction markers), or None when it has none now.

    Not ``await consumer.position(tp)``: that waits (up to the request
    timeout) for a position being reset, and through Faust's consumer
    thread a timeout cannot cut that wait short, so one partition could
    hold every tick. The same state, read without waiting (a plain
    attribute, safe to read from another thread)."""
    try:
        state = kafka_consumer._subscription.subscription.assignment.state_value(tp)
        if state is None or not state.has_valid_position:
            return None
        position = state.position
    except Exception:  # noqa: BLE001 - unassigned, stopped, or aiokafka changed: unknown, so rule 2 excuses nothing
        return None
    return position if isinstance(position, int) else None


def register_stall_watch(ctx: WorkerContext) -> StallWatch:
    # Often enough that a stall is told within a few seconds of stall_after.
    interval = max(1.0, min(10.0, ctx.settings.stall_after / 4))
    watch = StallWatch(ctx, interval)

    @guarded_timer(ctx, interval, "stall-watch")
    async def stall_watch() -> None:
        await watch.tick()

    return watch
