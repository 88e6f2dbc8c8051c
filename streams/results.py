"""Following completion events: for the demo, `regen import --follow`, tests."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas.events import ImageFailed, ImageGenerated
from streams.codec import decode
from streams.exceptions import BrokerError, PoisonEvent
from streams.settings import Settings
from streams.topics import IMAGES_RESULTS, TopicSpec, topic_name

Completion = ImageGenerated | ImageFailed


async def follow_records(settings: Settings, bootstrap: str, spec: TopicSpec, *, from_beginning: bool = True,
                         idle_timeout: float = 120.0) -> AsyncIterator[ConsumerRecord]:
    """Yield a topic's records as they arrive; stop after ``idle_timeout`` s of silence.

    No consumer group: a reader must never take partitions from the workers'
    groups or commit offsets anyone else depends on.
    """
    name = topic_name(settings, spec)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for p in await topic_partitions(consumer, name)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        last = time.monotonic()
        while time.monotonic() - last < idle_timeout:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                for record in records:
                    last = time.monotonic()
                    yield record
    finally:
        await consumer.stop()


async def read_records(settings: Settings, bootstrap: str, spec: TopicSpec, idle_timeout: float = 2.0
                       ) -> list[ConsumerRecord]:
    """Every record now in the topic (read until it has been quiet for ``idle_timeout``)."""
    return [record async for record in follow_records(settings, bootstrap, spec, idle_timeout=idle_timeout)]


async def follow_completions(settings: Settings, bootstrap: str, *, from_beginning: bool = True,
                             idle_timeout: float = 120.0) -> AsyncIterator[Completion]:
    async for record in follow_records(settings, bootstrap, IMAGES_RESULTS, from_beginning=from_beginning,
                                       idle_timeout=idle_timeout):
        try:
            event, _ = decode(record.value, record.headers, IMAGES_RESULTS.event_types)
        except PoisonEvent:
            continue
        yield event  # type: ignore[misc]


async def topic_partitions(consumer: AIOKafkaConsumer, name: str) -> list[int]:
    for _ in range(20):  # metadata of a topic created a moment ago can lag
        partitions = consumer.partitions_for_topic(name)
        if partitions:
            return sorted(partitions)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise BrokerError(f"topic {name} does not exist on the broker")


async def wait_for(settings: Settings, bootstrap: str, want: Callable[[Completion], str | None],
                   expected: set[str], timeout: float, on_progress: Callable[[Completion], None] | None = None
                   ) -> dict[str, Completion]:
    """Collect completions until every key in ``expected`` is seen.

    ``want`` maps a completion to its key (or None to ignore it); the newest
    completion per key wins. Raises TimeoutError listing what is missing.
    """
    seen: dict[str, Completion] = {}

    async def collect() -> None:
        async for completion in follow_completions(settings, bootstrap, idle_timeout=timeout):
            key = want(completion)
            if key is None or key not in expected:
                continue
            first = key not in seen
            seen[key] = completion
            if first and on_progress:
                on_progress(completion)
            if expected <= seen.keys():
                return

    try:
        await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        pass
    missing = expected - seen.keys()
    if missing:
        raise TimeoutError(f"{len(missing)} of {len(expected)} image(s) not completed within {timeout:g} s: "
                           f"{', '.join(sorted(missing)[:5])}{' …' if len(missing) > 5 else ''}")
    return seen
