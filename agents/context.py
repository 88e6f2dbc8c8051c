"""What every agent shares: settings, topics, tables, the render pool, and one
way to emit an event."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.errors import KafkaError, KafkaTimeoutError

from regen.agents.idle_candidates import IdleCandidates
from regen.agents.metrics import Metrics
from regen.agents.render_pool import RenderPool
from regen.agents.tables import Tables
from regen.kinds.base import Kind
from regen.projections.activity import Activity
from regen.projections.progress import BatchTracker
from regen.schemas.events import Event
from regen.settings import Settings
from regen.streams.backoff import Backoff
from regen.streams.codec import encode
from regen.streams.topics import TopicSpec, topic_name

log = logging.getLogger(__name__)

# aiokafka already retries a send for its request timeout; this paces the
# retries after that, while a broker is down or being restarted. Jitter: the
# sends of every agent failed at the same moment and should not all retry at one.
SEND_RETRY = Backoff(first_s=0.5, cap_s=5.0)

# The sends of the batch being handled, while one is (see emitting_together):
# (topic, key, value, headers, the message whose handling emitted it).
_batch_sends: contextvars.ContextVar[list[tuple] | None] = contextvars.ContextVar("regen_batch_sends", default=None)


@dataclass
class WorkerContext:
    app: faust.App
    settings: Settings
    tables: Tables
    pool: RenderPool
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    source: str = "regen/worker"
    idle: IdleCandidates = field(default_factory=IdleCandidates)  # noted by intake, taken by the idle scheduler
    batches: BatchTracker | None = None  # set by register_progress
    metrics: Metrics = field(default_factory=Metrics)
    activity: Activity = field(default_factory=Activity)
    # What a kind that calls out borrows for gather_input (agents/generation.py); set by register_render.
    services: Any = None
    # Called with every completion once the projector has folded it (images by URL wait on them).
    completion_hooks: list[Callable[[Any], None]] = field(default_factory=list)
    # Every consumer of regen's own (agents/lanes.py PartitionFollower), added as it starts: the stall watch reads them.
    followers: list[Any] = field(default_factory=list)
    # Whether an operator paused background rendering (agents/control.py's watch,
    # set by register_control): the overview carries it to the dashboard.
    background_state: Callable[[], dict] = lambda: {"paused": False, "known": False}
    _pool_started: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pool_running: bool = False

    async def ensure_pool(self) -> None:
        """Both render lanes share one pool; the first to start starts it."""
        async with self._pool_started:
            if not self._pool_running:
                await self.pool.start()
                self._pool_running = True

    def put_state(self, kind: Kind, target_id: str, state: Any) -> None:
        """Write a target's state into its kind's table (under the event being
        handled, so the changelog record lands in the target's partition)
        and let batch progress know."""
        self.tables.of(kind.table)[target_id] = state.to_dict()
        if self.batches is not None:
            self.batches.observe(target_id, state)

    def topic(self, spec: TopicSpec) -> faust.TopicT:
        name = topic_name(self.settings, spec)
        if name not in self.topics:
            # value_serializer raw: agents decode themselves, so a body that
            # does not parse reaches our dead-letter handling instead of
            # crashing inside Faust.
            self.topics[name] = self.app.topic(name, key_type=bytes, value_type=bytes,
                                               key_serializer="raw", value_serializer="raw",
                                               partitions=self.settings.partitions)
        return self.topics[name]

    async def emit(self, spec: TopicSpec, event: Event) -> None:
        """Send and wait for the broker's ack, so a batch's offsets are only
        committed after what it produced is durable. Inside
        :meth:`emitting_together`, the send is queued and its ack awaited
        with the rest of the batch's."""
        envelope = encode(event, self.source)
        topic = topic_name(self.settings, spec)
        batch = _batch_sends.get()
        if batch is not None:
            current = faust.current_event()
            origin = current.message if current is not None else None
            batch.append((topic, envelope.key, envelope.value, envelope.headers, origin))
            return
        await self.send_durably(topic, envelope.key, envelope.value, envelope.headers)

    @contextlib.asynccontextmanager
    async def emitting_together(self) -> AsyncIterator[None]:
        """Handle a batch of events, then send everything they emitted at
        once and wait for all the acks: one round trip instead of one per
        event. The caller acks the batch only after this returns."""
        sends: list[tuple] = []
        token = _batch_sends.set(sends)
        try:
            yield
        finally:
            _batch_sends.reset(token)
            await self._send_all_durably(sends)

    async def _send_all_durably(self, sends: list[tuple]) -> None:
        futures: list[Any] = []  # a send's future, or None if it could not be queued
        for topic, key, value, headers, _ in sends:  # queued in order: per-partition order is kept
            try:
                futures.append(await self.app.producer.send(topic, key, value, partition=None, timestamp=None,
                                                            headers=headers))
            except KafkaError:
                futures.append(None)
        results = await asyncio.gather(*(f for f in futures if f is not None), return_exceptions=True)
        failed = iter(results)
        for (topic, key, value, headers, origin), future in zip(sends, futures, strict=True):
            if future is None or isinstance(next(failed), BaseException):
                try:
                    await self.send_durably(topic, key, value, headers)
                except KafkaError as e:  # can never be sent: the event that emitted it is dead-lettered
                    if origin is None:
                        raise
                    from regen.agents.deadletter import send_to_deadletter  # it imports this module

                    await send_to_deadletter(self, origin, e)

    async def send_durably(self, topic: str, key: bytes | None, value: bytes | None, headers,
                           partition: int | None = None) -> None:
        """Retry until the broker acknowledges. Giving up would let the
        caller's offsets be committed past an event whose result was never
        written; waiting holds them back until the broker is reachable.

        An error no retry can cure (the message is too large, the topic is
        not authorised) is logged and raised: the caller's handler
        dead-letters the message whose handling tried to send it."""
        for attempt in itertools.count(1):
            try:
                await self.app.producer.send_and_wait(topic, key, value, partition=partition, timestamp=None,
                                                      headers=headers)
                return
            except KafkaError as e:
                if not worth_retrying(e):
                    log.error("sending %d bytes to %s failed for good: %s (%s)", len(value or b""), topic,
                              type(e).__name__, e)
                    raise
                delay = SEND_RETRY.delay(attempt)
                log.warning("sending to %s failed (%s); retrying in %.1f s", topic, e, delay)
                await asyncio.sleep(delay)


def worth_retrying(error: KafkaError) -> bool:
    """aiokafka marks the errors a retry can cure ``retriable``. Its own
    KafkaTimeoutError is not marked, but it is what a send gets while the
    broker is away (restarting): waiting for it is the point of retrying."""
    return bool(getattr(error, "retriable", False)) or isinstance(error, KafkaTimeoutError)
