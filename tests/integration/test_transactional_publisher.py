"""A publisher writing in Kafka transactions costs the worker no stall.

Each committed transaction leaves a marker at the offset after its records;
no record lives there. A consumer that takes that gap for records lost in
transit and waits for them to arrive (rule 3 of streams/checkpoint.py says
why it need not) holds the whole partition back on every transaction.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace

from aiokafka import AIOKafkaProducer

from regen.cli.importer import scan
from regen.streams.codec import encode
from regen.streams.connection import kafka_security
from regen.streams.results import wait_for
from regen.streams.topics import ASSETS_IMPORTED, partition_for, topic_name
from tests.helpers import make_photos, run, variant_key

TRANSACTIONS = 6
# An idle worker makes one photo's thumbnails in well under a second; a
# partition held back by a transaction marker used to wait at least 5 s.
PATIENCE_S = 3.0


def test_imports_published_in_transactions_complete_without_waiting_on_markers(start_worker, corpus, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, TRANSACTIONS)
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    # Every import in one partition, so each lands right after the previous one's marker.
    events = [s.event for s in scan(photos, [media], "transactions")]
    same_partition = _ids_in_one_partition(len(events), settings.partitions)
    events = [replace(e, asset_id=asset_id) for e, asset_id in zip(events, same_partition, strict=True)]

    async def publish_one_per_transaction() -> list[float]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"publisher-{uuid.uuid4().hex}",
                                    enable_idempotence=True, **kafka_security(settings))
        await producer.start()
        latencies = []
        try:
            for event in events:
                envelope = encode(event, "tests.transactions")
                async with producer.transaction():
                    await producer.send(topic_name(settings, ASSETS_IMPORTED), envelope.value, key=envelope.key,
                                        headers=envelope.headers)
                committed = time.monotonic()
                await wait_for(settings, bootstrap, variant_key, {f"{event.asset_id}/h400.jpg"}, timeout=30)
                latencies.append(time.monotonic() - committed)
        finally:
            await producer.stop()
        return latencies

    latencies = run(publish_one_per_transaction())
    print(f"transactional imports: completion after commit, s: {[round(x, 2) for x in latencies]}")
    assert len(latencies) == TRANSACTIONS
    assert statistics.median(latencies) < PATIENCE_S, latencies
    assert max(latencies[1:]) < 2 * PATIENCE_S, "no import waits behind its predecessor's marker"


def _ids_in_one_partition(count: int, partitions: int) -> list[str]:
    ids, n = [], 0
    while len(ids) < count:
        candidate = f"tx-asset-{n}"
        if partition_for(candidate, partitions) == 0:
            ids.append(candidate)
        n += 1
    return ids
