"""The projector that fills the SQL read model from Kafka.

It reads every partition of the Faust tables' changelogs (jobs, batches,
groups, each kind's targets) and of ``images.results``, so each read model
holds the whole fleet's rows, whichever worker runs it. No consumer group:
partitions are assigned by hand and each starts at the position stored in
the database's tracking records, written in the same transaction as the
rows (projections/sql_store.py says how). Kafka's committed offsets play no
part, so a crash between the database commit and anything else loses or
repeats nothing.

Runs inside each worker as a task on its event loop (REGEN_SQL_PROJECTOR,
on by default) or alone as `regen sql-projector`. The database work, and the
decoding of records into rows, happen on one thread of its own: never on
the event loop that Faust's agents share.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from regen.projections.sql_rows import MIRRORED_TABLES, Malformed, Op, changelog_ops, result_ops, target_tables
from regen.projections.sql_store import Applied, SqlReadModelError, SqlStore, TrackedRecord, describe_url, sql_url
from regen.projections.throttled_log import ThrottledLog
from regen.settings import Settings
from regen.streams.connection import kafka_security, start_client
from regen.streams.exceptions import BrokerError
from regen.streams.fetch_pacing import FetchPacer, after_fetch
from regen.streams.results import changelog_topic, topic_partitions
from regen.streams.topics import IMAGES_RESULTS, topic_name

log = logging.getLogger(__name__)
_malformed_log = ThrottledLog(log)
T = TypeVar("T")

# A projector that failed (broker or database away) starts again after a
# delay doubling up to this; its tracking records lose nothing meanwhile.
RESTART_MAX_S = 30.0
# Lag samples kept for the bench and the log (one per applied batch).
LAG_SAMPLES = 10_000
# A changelog is created when its worker first starts: a projector started
# before any worker waits this long for each of its topics, then retries.
TOPIC_WAIT_S = 2.0
# How long an idle projector's fetch waits for records (aiokafka's default).
SQL_FETCH_WAIT_MS = 500


@dataclass
class ProjectorStats:
    applied: int = 0
    skipped: int = 0
    malformed: int = 0
    batches: int = 0
    # (when the batch was committed, seconds from its oldest record's Kafka
    # timestamp to that commit): how far behind the live pipeline the rows are.
    lags: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LAG_SAMPLES))

    def add(self, result: Applied, oldest_ms: int | None, committed_at: float) -> None:
        self.applied += result.applied
        self.skipped += result.skipped
        self.malformed += len(result.malformed)
        self.batches += 1
        if oldest_ms and result.applied:
            self.lags.append((committed_at, max(0.0, committed_at - oldest_ms / 1000)))


class SqlProjector:
    def __init__(self, settings: Settings, bootstrap: str, url: str | None = None) -> None:
        self.settings, self.bootstrap = settings, bootstrap
        self.url = url or sql_url(settings)
        # topic -> the Faust table whose changelog it is (None: images.results)
        self.sources: dict[str, str | None] = {
            changelog_topic(settings, table): table for table in (*MIRRORED_TABLES, *target_tables())}
        self.sources[topic_name(settings, IMAGES_RESULTS)] = None
        self.stats = ProjectorStats()
        self.consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sql-projector")
        self._store: SqlStore | None = None
        self._stopping = False
        # Busy, its fetches wait for a batch (streams/fetch_pacing.py): fewer,
        # larger transactions too. aiokafka's own fetch wait when idle.
        self._pacer = FetchPacer(idle_wait_ms=SQL_FETCH_WAIT_MS)

    # --- the database thread ---------------------------------------------------

    async def _in_thread(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def _open(self) -> dict[tuple[str, int], int]:
        if self._store is None:
            store = SqlStore.open(self.url)
            try:
                store.create_schema()
            except BaseException:
                store.close()
                raise
            self._store = store
        return self._store.positions()

    def _map_and_apply(self, records: list[Any]) -> Applied:
        tracked = [TrackedRecord(r.topic, r.partition, r.offset, self._ops(r)) for r in records]
        assert self._store is not None
        return self._store.apply(tracked)

    def _ops(self, record: Any) -> list[Op] | Malformed:
        table = self.sources.get(record.topic)
        try:
            if table is None:
                return result_ops(record.value, record.headers or (),
                                  f"{record.topic}/{record.partition}/{record.offset}")
            return changelog_ops(table, record.key, record.value)
        except Exception as e:  # a bug that hostile input found: that record is skipped, the rest goes on
            log.exception("mapping %s/%d/%d into SQL rows failed", record.topic, record.partition, record.offset)
            return Malformed(f"{type(e).__name__}: {e}")

    def close(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None

    # --- the loop ------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self, until_end: bool = False) -> None:
        """Apply records as they come; with ``until_end``, return once every
        partition has been applied up to where it ended at the start."""
        stored = await self._in_thread(self._open)
        log.info("SQL read model at %s: applying from its tracking records", describe_url(self.url))
        settings = self.settings
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_poll_records=settings.sql_batch_size,
                                    fetch_max_wait_ms=SQL_FETCH_WAIT_MS, **kafka_security(settings))
        await start_client(consumer, settings, self.bootstrap)
        self.consumer = consumer
        try:
            tps = await self._assign(consumer, stored)
            ends = await consumer.end_offsets(tps) if until_end else {}
            while not self._stopping:
                if until_end and all(self._positions[tp] >= end for tp, end in ends.items()):
                    return
                await self._step(consumer)
        finally:
            self.consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer, stored: dict[tuple[str, int], int]) -> list[TopicPartition]:
        tps = []
        for topic in self.sources:
            tps += [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        consumer.assign(tps)
        for tp in tps:  # the database, not Kafka, says where each partition goes on
            self._positions[tp] = stored.get((tp.topic, tp.partition), 0)
            consumer.seek(tp, self._positions[tp])
        return tps

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        fetched = await consumer.getmany(timeout_ms=int(self.settings.sql_batch_interval * 1000),
                                         max_records=self.settings.sql_batch_size)
        records = [record for batch in fetched.values() for record in batch]
        after_fetch(self._pacer, consumer, len(records))
        if not records:
            return
        result = await self._in_thread(lambda: self._map_and_apply(records))
        self.stats.add(result, min((r.timestamp for r in records if r.timestamp), default=None), time.time())
        for reason in result.malformed:
            _malformed_log.log("malformed", logging.WARNING, "SQL read model: record skipped: %s", reason)
        for tp, batch in fetched.items():
            self._positions[tp] = batch[-1].offset + 1
        for (topic, partition), position in result.positions.items():
            tp = TopicPartition(topic, partition)
            if position > self._positions.get(tp, 0):  # another projector got further: skip what it applied
                consumer.seek(tp, position)
                self._positions[tp] = position

    def behind(self) -> int:
        """Records of the read model's topics not yet applied (as far as the consumer knows)."""
        consumer = self.consumer
        if consumer is None:
            return 0
        total = 0
        for tp, position in list(self._positions.items()):
            with contextlib.suppress(Exception):
                total += max(0, (consumer.highwater(tp) or 0) - position)
        return total


async def run_forever(projector: SqlProjector) -> None:
    """Run ``projector`` until it is stopped, starting it again after a failure."""
    delay = 0.5
    try:
        while not projector.stopping:
            started = time.monotonic()
            try:
                await projector.run()
            except (KafkaError, BrokerError) as e:
                log.warning("SQL projector stopped (%s); starting it again in %.0f s", e, delay)
            except SqlReadModelError as e:
                log.error("SQL projector stopped: %s; trying again in %.0f s", e, delay)
            except Exception:  # a database error or a bug: visible; the tracking records lose nothing
                log.exception("SQL projector failed; starting it again in %.0f s", delay)
                await projector._in_thread(projector.close)  # a connection in an unknown state is not reused
            if projector.stopping:
                return
            if time.monotonic() - started > 60:
                delay = 0.5
            await asyncio.sleep(delay)
            delay = min(RESTART_MAX_S, delay * 2)
    finally:
        await projector._in_thread(projector.close)
