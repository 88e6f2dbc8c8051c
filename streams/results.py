"""Following completion events: for the demo, `regen import --follow`, tests."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.events import ImageFailed, ImageGenerated
from streams.codec import decode
from streams.exceptions import PoisonEvent
from streams.settings import Settings
from streams.topics import IMAGES_RESULTS, topic_name

Completion = ImageGenerated | ImageFailed


async def follow_completions(settings: Settings, bootstrap: str, *, from_beginning: bool = True,
                             idle_timeout: float = 120.0) -> AsyncIterator[Completion]:
    """Yield completions as they arrive; stop after ``idle_timeout`` s of silence.

    No consumer group: a reader must never take partitions from the workers'
    groups or commit offsets anyone else depends on.
    """
    name = topic_name(settings, IMAGES_RESULTS)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(name) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # fresh topics: metadata may lag
            partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        last = time.monotonic()
        while time.monotonic() - last < idle_timeout:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batches.values():
                for record in records:
                    last = time.monotonic()
                    try:
                        event, _ = decode(record.value, record.headers, IMAGES_RESULTS.event_types)
                    except PoisonEvent:
                        continue
                    yield event  # type: ignore[misc]
    finally:
        await consumer.stop()


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
