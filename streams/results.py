"""Reading topics without a consumer group: following completions (the demo,
`regen get`, tests) and snapshots of whole topics (replay, repair, rebuild)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from regen.schemas.events import ImageFailed, ImageGenerated
from regen.settings import Settings
from regen.streams.codec import decode
from regen.streams.connection import kafka_security, start_client
from regen.streams.exceptions import BrokerError, PoisonEvent
from regen.streams.topics import IMAGES_RESULTS, TopicSpec, topic_name

Completion = ImageGenerated | ImageFailed


async def follow_records(settings: Settings, bootstrap: str, spec: TopicSpec, *, from_beginning: bool = True,
                         idle_timeout: float = 120.0, start_offsets: dict[int, int] | None = None
                         ) -> AsyncIterator[ConsumerRecord]:
    """Yield a topic's records as they arrive; stop after ``idle_timeout`` s of silence.

    No consumer group: a reader must never take partitions from the workers'
    groups or commit offsets anyone else depends on.
    """
    name = topic_name(settings, spec)
    # The reset policy matches the seek below: aiokafka resolves a freshly
    # assigned partition's position with it, and that lookup can land after
    # an explicit seek_to_beginning and undo it.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                **kafka_security(settings))
    await start_client(consumer, settings, bootstrap)
    try:
        tps = [TopicPartition(name, p) for p in await topic_partitions(consumer, name)]
        consumer.assign(tps)
        if start_offsets is not None:
            for tp in tps:
                consumer.seek(tp, start_offsets.get(tp.partition, 0))
        elif from_beginning:
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
                             idle_timeout: float = 120.0, start_offsets: dict[int, int] | None = None
                             ) -> AsyncIterator[Completion]:
    async for record in follow_records(settings, bootstrap, IMAGES_RESULTS, from_beginning=from_beginning,
                                       idle_timeout=idle_timeout, start_offsets=start_offsets):
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
    except TimeoutError:
        pass
    missing = expected - seen.keys()
    if missing:
        raise TimeoutError(f"{len(missing)} of {len(expected)} image(s) not completed within {timeout:g} s: "
                           f"{', '.join(sorted(missing)[:5])}{' …' if len(missing) > 5 else ''}")
    return seen


async def read_to_end(settings: Settings, bootstrap: str, topic: str, *, since_ms: int | None = None,
                      on_record: Callable[[ConsumerRecord], None] | None = None) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning (or from the first record
    at or after ``since_ms``) up to the end offsets as they are *now*: a
    snapshot that ends, however busy the topic is. No consumer group."""
    # "earliest", as the seek below: see follow_records.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", **kafka_security(settings))
    await start_client(consumer, settings, bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if since_ms is None:
            await consumer.seek_to_beginning(*tps)
        else:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                consumer.seek(tp, found[tp].offset if found[tp] is not None else ends[tp])
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        records: list[ConsumerRecord] = []
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            for tp, batch in batches.items():
                for record in batch:
                    if record.offset < ends[tp]:
                        records.append(record)
                        if on_record is not None:
                            on_record(record)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog: ``<app id>-<table>-changelog``."""
    return f"{settings.app_id}-{table}-changelog"


async def read_table(settings: Settings, bootstrap: str, table: str) -> dict[str, dict]:
    """A table as the workers hold it: the latest value of every key in its
    changelog (a deleted key's tombstone removes it)."""
    return table_rows(await read_to_end(settings, bootstrap, changelog_topic(settings, table)))


def table_rows(records: list[ConsumerRecord]) -> dict[str, dict]:
    """A changelog's records, in order, folded into the table's rows."""
    import orjson

    rows: dict[str, dict] = {}
    for record in records:
        key = record.key.decode() if record.key is not None else ""
        if key.startswith('"'):
            key = orjson.loads(key)  # Faust writes changelog keys as JSON strings
        if record.value is None:
            rows.pop(key, None)
        else:
            rows[key] = orjson.loads(record.value)
    return rows


async def end_offsets(settings: Settings, bootstrap: str, topic: str) -> dict[int, int]:
    """Where each partition of ``topic`` ends now: follow from here to see
    only what is published after this call."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **kafka_security(settings))
    await start_client(consumer, settings, bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
