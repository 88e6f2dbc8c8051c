"""Several topics read to their current end through one consumer: the
snapshot a replay takes of the source topics and the tables' changelogs.

One consumer for all of them, rather than one per topic: starting a client,
finding the offsets and the first fetch are round trips and waits that cost
the same for ten records as for ten thousand, and a replay that finds
everything intact is made of little else. No consumer group, as in
streams/results.py: a reader never takes partitions from the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from regen.settings import Settings
from regen.streams.connection import kafka_security, start_client
from regen.streams.results import topic_partitions

# Records per getmany: large, since the whole snapshot is wanted at once.
MAX_RECORDS = 20_000


async def read_topics_to_end(settings: Settings, bootstrap: str, topics: Mapping[str, int | None], *,
                             on_record: Callable[[ConsumerRecord], None] | None = None
                             ) -> dict[str, list[ConsumerRecord]]:
    """Every record of each topic from its beginning (or, where the mapping
    gives epoch milliseconds, from the first record at or after that time) up
    to the end offsets as they are *now*; in offset order per partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", **kafka_security(settings))
    await start_client(consumer, settings, bootstrap)
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in await topic_partitions(consumer, topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        since = {tp: topics[tp.topic] for tp in tps if topics[tp.topic] is not None}
        if since:
            found = await consumer.offsets_for_times(since)  # type: ignore[arg-type]
            for tp in since:
                starts[tp] = found[tp].offset if found[tp] is not None else ends[tp]
        for tp in tps:
            consumer.seek(tp, starts[tp])  # explicit offsets: no reset lookup per partition
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        # Partitions with nothing to read are not fetched at all (a busy
        # topic's new records would only be thrown away).
        consumer.pause(*(set(tps) - remaining))
        records: dict[str, list[ConsumerRecord]] = {topic: [] for topic in topics}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=MAX_RECORDS)
            for tp, batch in batches.items():
                kept = records[tp.topic]
                for record in batch:
                    if record.offset < ends[tp]:
                        kept.append(record)
                        if on_record is not None:
                            on_record(record)
                # The position, not the last record's offset: compaction and
                # transaction markers leave gaps before the end.
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
        return records
    finally:
        await consumer.stop()
