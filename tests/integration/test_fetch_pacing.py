"""Fetch pacing against a real broker (streams/fetch_pacing.py): a reader
that is busy asks the broker far less often for the same records, loses
none and keeps their order, and is idle again once the records stop."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from regen.streams.fetch_pacing import FetchPacer, after_fetch

RECORDS = 600
RATE = 150  # records a second, one at a time: as a busy worker's topics receive them
QUIET_S = 2.0  # after the last record: longer than a pacing window


class Reader:
    """Reads one partition, counting the fetch requests its client sends."""

    def __init__(self, bootstrap: str, tp: TopicPartition, paced: bool) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=500)
        self.tp = tp
        self.pacer = FetchPacer(idle_wait_ms=500) if paced else None
        self.values: list[bytes] = []
        self.fetches = 0
        self.was_busy = False

    async def start(self) -> None:
        await self.consumer.start()
        client = self.consumer._client
        send = client.send

        def counting_send(node_id, request, **kwargs):
            if type(request).__name__.startswith("FetchRequest"):
                self.fetches += 1
            return send(node_id, request, **kwargs)

        client.send = counting_send
        self.consumer.assign([self.tp])
        self.consumer.seek(self.tp, 0)

    async def read_until(self, done: asyncio.Event) -> None:
        while not done.is_set() or len(self.values) < RECORDS:
            fetched = await self.consumer.getmany(timeout_ms=500, max_records=500)
            records = [r for batch in fetched.values() for r in batch]
            self.values += [r.value for r in records]
            if self.pacer is not None:
                after_fetch(self.pacer, self.consumer, len(records))
                self.was_busy |= self.pacer.is_busy


async def _run(bootstrap: str) -> tuple[Reader, Reader]:
    topic = f"test-pacing-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    tp = TopicPartition(topic, 0)
    paced, unpaced = Reader(bootstrap, tp, paced=True), Reader(bootstrap, tp, paced=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    await paced.start()
    await unpaced.start()
    done = asyncio.Event()
    readers = [asyncio.create_task(r.read_until(done)) for r in (paced, unpaced)]
    try:
        for n in range(RECORDS):
            await producer.send_and_wait(topic, f"{n:05d}".encode() * 40)
            await asyncio.sleep(1 / RATE)
        await asyncio.sleep(QUIET_S)
        done.set()
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    finally:
        for task in readers:
            task.cancel()
        await producer.stop()
        await paced.consumer.stop()
        await unpaced.consumer.stop()
    return paced, unpaced


def test_a_busy_reader_fetches_batches_and_loses_nothing(bootstrap):
    paced, unpaced = asyncio.run(_run(bootstrap))
    expected = [f"{n:05d}".encode() * 40 for n in range(RECORDS)]
    assert paced.values == expected  # every record, once, in order
    assert unpaced.values == expected
    assert paced.was_busy
    # The same records in well under half the fetches: the unpaced reader
    # asks about once per record written, the paced one about once per
    # BUSY_WAIT_MS once busy.
    assert paced.fetches < unpaced.fetches / 2, (paced.fetches, unpaced.fetches)
    # The records stopped for longer than a window: idle again, answered at once.
    assert not paced.pacer.is_busy
