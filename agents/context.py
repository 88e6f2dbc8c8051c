"""What every agent shares: settings, topics, tables, the render pool, and one
way to emit an event."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import faust
from aiokafka.errors import KafkaError

from agents.render_pool import RenderPool
from projections.tables import Tables
from schemas.events import Event
from streams.codec import encode
from streams.settings import Settings
from streams.topics import TopicSpec, topic_name


log = logging.getLogger(__name__)

# aiokafka already retries a send for its request timeout; these pace the
# retries after that, while a broker is down or being restarted.
SEND_RETRY_FIRST_S, SEND_RETRY_CAP_S = 0.5, 5.0


@dataclass
class WorkerContext:
    app: faust.App
    settings: Settings
    tables: Tables
    pool: RenderPool
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    source: str = "regen/worker"
    # annotation_id -> (wanted revision, monotonic time of its last edit)
    idle_candidates: dict[str, tuple[int, float]] = field(default_factory=dict)
    candidates_loaded: bool = False
    resent: dict[str, float] = field(default_factory=dict)  # job_id -> when the sweeper sent it again
    warned_videos: set[str] = field(default_factory=set)
    _pool_started: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pool_running: bool = False

    async def ensure_pool(self) -> None:
        """Both render lanes share one pool; the first to start starts it."""
        async with self._pool_started:
            if not self._pool_running:
                await self.pool.start()
                self._pool_running = True

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
        committed after what it produced is durable."""
        envelope = encode(event, self.source)
        await self.send_durably(topic_name(self.settings, spec), envelope.key, envelope.value, envelope.headers)

    async def send_durably(self, topic: str, key: bytes | None, value: bytes | None, headers) -> None:
        """Retry until the broker acknowledges. Giving up would let the
        caller's offsets be committed past an event whose result was never
        written; waiting holds them back until the broker is reachable."""
        delay = SEND_RETRY_FIRST_S
        while True:
            try:
                await self.app.producer.send_and_wait(topic, key, value, partition=None, timestamp=None,
                                                      headers=headers)
                return
            except KafkaError as e:
                log.warning("sending to %s failed (%s); retrying in %.1f s", topic, e, delay)
                await asyncio.sleep(delay)
                delay = min(SEND_RETRY_CAP_S, delay * 2)
