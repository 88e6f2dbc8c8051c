"""Publishing events to regen from Python (the CLI uses it too).

Any language can publish: a JSON body matching ``schemas/json/<Event>.json``
on the event's topic, keyed by its entity id, with CloudEvents headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType

from aiokafka import AIOKafkaProducer

from regen.schemas.events import Event
from regen.settings import Settings
from regen.streams.admin import ensure_topics
from regen.streams.codec import encode
from regen.streams.connection import kafka_security, start_client
from regen.streams.topics import TOPIC_FOR_EVENT, TopicSpec, topic_name


class Publisher:
    """``async with Publisher(settings, bootstrap) as p: await p.publish(event)``"""

    def __init__(self, settings: Settings, bootstrap: str, source: str = "regen/cli", linger_ms: int = 5):
        self.settings = settings
        self.bootstrap = bootstrap
        self.source = source
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Publisher:
        await ensure_topics(self.settings, self.bootstrap)
        # acks=all and idempotence: an event the call returned for is on the
        # broker once, even if a request was retried.
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                    linger_ms=self.linger_ms, **kafka_security(self.settings))
        await start_client(producer, self.settings, self.bootstrap)
        self._producer = producer
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, event: Event, topic: TopicSpec | None = None, ce_id: str | None = None) -> str:
        """Publish and wait for the broker's ack. Returns the event's ce_id."""
        envelope = encode(event, self.source, ce_id)
        await self.send_raw(topic or TOPIC_FOR_EVENT[type(event)], envelope.key, envelope.value, envelope.headers)
        return envelope.ce_id

    async def publish_many(self, events: Sequence[Event]) -> list[str]:
        """Publish a batch: every send is queued at once and acked together,
        instead of one round trip per event."""
        assert self._producer is not None, "use Publisher as an async context manager"
        futures, ids = [], []
        for event in events:
            envelope = encode(event, self.source)
            name = topic_name(self.settings, TOPIC_FOR_EVENT[type(event)])
            futures.append(await self._producer.send(name, envelope.value, key=envelope.key,
                                                     headers=envelope.headers))
            ids.append(envelope.ce_id)
        await asyncio.gather(*futures)
        return ids

    async def send_raw(self, topic: TopicSpec, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        assert self._producer is not None, "use Publisher as an async context manager"
        await self._producer.send_and_wait(topic_name(self.settings, topic), value, key=key, headers=headers or [])
