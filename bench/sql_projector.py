"""The SQL read model's projector: lag behind the live pipeline, and replay rate.

Two figures, each with a baseline measured in the same run:

- lag: AssetImported events go through a real `regen worker` (2 render
  processes, its own SQL projector on, SQLite) at the rate of
  bench.thumbnails (8.6 MP photos). For every completion, the time from its
  Kafka timestamp until its row is in the worker's read model (polled every
  20 ms, read-only), against the time until a plain aiokafka consumer in this
  process receives the same record (the floor: no projector can see a
  record before it is fetched). Target: under 1 s.
- replay: topics already filled with synthetic but valid records (job rows
  in three states each, asset rows, completions: what a busy day leaves in
  the changelogs and images.results) applied from the beginning into a
  fresh SQLite file by the projector, against the raw aiokafka read rate of
  the same topics. Target: at least 5,000 events/s.

    python -m bench.sql_projector [--copies 3] [--jobs 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import broker, worker
from bench.thumbnails import make_photos
from regen.agents.sql_projector import SqlProjector
from regen.agents.tables import table_names
from regen.cli.importer import scan
from regen.projections.sql_store import SqlStore, sql_url
from regen.projections.state import AssetState, JobState
from regen.schemas.events import ImageGenerated, Target
from regen.settings import Settings
from regen.streams.admin import ensure_topics
from regen.streams.codec import encode, header
from regen.streams.publisher import Publisher
from regen.streams.results import changelog_topic, end_offsets, topic_partitions
from regen.streams.topics import IMAGES_RESULTS, partition_for, topic_name

POLL_S = 0.02


# --- lag -------------------------------------------------------------------------

def live_lag(paths: list[Path], root: Path, bootstrap: str) -> tuple[list[float], list[float]]:
    """(read model lag, raw consumer lag) per completion, in seconds."""
    state = Path(tempfile.mkdtemp(prefix="regen-bench-state-"))
    with worker(bootstrap, state, root, 2) as settings:
        events = [s.event for s in scan(paths, [root], batch_id=state.name)]
        asyncio.run(_publish(settings, bootstrap, events[:1]))  # warm up: start-up is not timed
        store = _wait_for_store(settings)
        asyncio.run(_wait_rows(store, 1, 120))
        return asyncio.run(_timed_run(settings, bootstrap, store, events[1:]))


def _wait_for_store(settings: Settings) -> SqlStore:
    deadline = time.monotonic() + 120
    while True:
        try:
            return SqlStore.open(sql_url(settings), read_only=True)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def _wait_rows(store: SqlStore, count: int, timeout: float) -> None:
    import sqlite3

    deadline = time.monotonic() + timeout
    while True:
        try:  # the worker's projector may not have created its tables yet
            if len(store.query("SELECT ce_id FROM results")[1]) >= count:
                return
        except sqlite3.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the read model never got the warm-up's row")
        await asyncio.sleep(0.1)


async def _timed_run(settings: Settings, bootstrap: str, store: SqlStore, events: list
                     ) -> tuple[list[float], list[float]]:
    results = topic_name(settings, IMAGES_RESULTS)
    start = await end_offsets(settings, bootstrap, results)
    stamps: dict[str, float] = {}  # ce_id -> Kafka timestamp (s)
    fetched: dict[str, float] = {}  # ce_id -> when the raw consumer had it
    in_sql: dict[str, float] = {}  # ce_id -> when the read model had it
    done = threading.Event()

    def poll_sql() -> None:  # its own thread and connection, so the event loop's timing stays clean
        own = SqlStore.open(store.url, read_only=True)
        last = own.query("SELECT max(rowid) FROM results")[1][0][0] or 0
        while not done.is_set():
            for rowid, ce_id in own.query(f"SELECT rowid, ce_id FROM results WHERE rowid > {last}")[1]:
                in_sql.setdefault(ce_id, time.time())
                last = max(last, rowid)
            time.sleep(POLL_S)
        own.close()

    poller = threading.Thread(target=poll_sql, daemon=True)
    poller.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(results, p) for p in await topic_partitions(consumer, results)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        await _publish(settings, bootstrap, events)
        deadline = time.monotonic() + 600
        while (len(fetched) < len(events) or not fetched.keys() <= in_sql.keys()) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=50)).values():
                now = time.time()
                for record in batch:
                    ce_id = header(record.headers, "ce_id") or ""
                    stamps[ce_id], fetched[ce_id] = record.timestamp / 1000, now
            await asyncio.sleep(0)
    finally:
        done.set()
        await consumer.stop()
        poller.join()
    missing = fetched.keys() - in_sql.keys()
    if missing:
        raise TimeoutError(f"{len(missing)} completion(s) never reached the read model")
    return ([in_sql[c] - stamps[c] for c in fetched], [fetched[c] - stamps[c] for c in fetched])


async def _publish(settings: Settings, bootstrap: str, events: list) -> None:
    async with Publisher(settings, bootstrap, source="bench") as publisher:
        await publisher.publish_many(events)


# --- replay ----------------------------------------------------------------------

async def fill_topics(settings: Settings, bootstrap: str, jobs: int) -> int:
    """Valid records as a busy day leaves them: per job three rows (pending,
    running, completed) in the jobs changelog, its asset's row, its completion."""
    await ensure_topics(settings, bootstrap, tables=table_names())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    sent = 0
    try:
        pending = []
        for i in range(jobs):
            asset_id = f"a{i:07d}"
            partition = partition_for(asset_id, settings.partitions)
            job_id = f"thumbnail:{asset_id}:h400.jpg:r1"
            at = f"2026-01-01T10:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:02d}0Z"
            asset = AssetState(asset_id, f"{asset_id}.jpg", "image", "c" * 64, 1000, at, batch_id=f"b{i // 1000}")
            output = {"uri": f"ab/{asset_id}.jpg", "sha256": "d" * 64, "width": 600, "height": 400, "bytes": 9000}
            base = JobState(job_id, "thumbnail", asset_id, "h400.jpg", 1, "background", "pending", at, at)
            rows = [(changelog_topic(settings, "assets"), asset_id, asset.to_dict()),
                    (changelog_topic(settings, "jobs"), job_id, base.to_dict()),
                    (changelog_topic(settings, "jobs"), job_id, base.evolve(status="running", started_at=at).to_dict()),
                    (changelog_topic(settings, "jobs"), job_id,
                     base.evolve(status="completed", finished_at=at, output=output, render_ms=40.0,
                                 attempts=1).to_dict())]
            for topic, key, value in rows:
                pending.append(await producer.send(topic, orjson.dumps(value), key=key.encode(), partition=partition))
            completion = encode(ImageGenerated(Target("thumbnail", asset_id), "h400.jpg", 1, job_id, output["uri"],
                                               output["sha256"], 600, 400, 9000, 40.0, 1, False, at), "bench")
            pending.append(await producer.send(topic_name(settings, IMAGES_RESULTS), completion.value,
                                               key=completion.key, headers=completion.headers, partition=partition))
            sent += len(rows) + 1
            if len(pending) > 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def raw_read_rate(settings: Settings, bootstrap: str, topics: list[str], total: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=settings.sql_batch_size)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await topic_partitions(consumer, t)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        started, seen = time.perf_counter(), 0
        while seen < total:
            for batch in (await consumer.getmany(timeout_ms=200, max_records=settings.sql_batch_size)).values():
                seen += len(batch)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def projector_rate(settings: Settings, bootstrap: str, total: int) -> float:
    url = f"sqlite://{tempfile.mkdtemp(prefix='regen-bench-sql-')}/replay.sqlite3"
    projector = SqlProjector(settings, bootstrap, url)
    started = time.perf_counter()
    await projector.run(until_end=True)
    elapsed = time.perf_counter() - started
    projector.close()
    if projector.stats.applied != total:
        raise AssertionError(f"applied {projector.stats.applied} of {total} records")
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="copies of each corpus photo for the lag run")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the filled topics (5 records each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("replay", "lag"), help="run one of the two figures")
    args = parser.parse_args()

    with broker(Path(tempfile.mkdtemp(prefix="regen-bench-broker-"))) as bootstrap:
        if args.only != "lag":
            replay_figure(bootstrap, args.jobs, args.repeats)
        if args.only != "replay":
            lag_figure(bootstrap, args.copies, args.repeats)


def replay_figure(bootstrap: str, jobs: int, repeats: int) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env({"REGEN_APP_ID": f"bench-sql-{run}", "REGEN_TOPIC_PREFIX": f"bench-sql-{run}"})
    total = asyncio.run(fill_topics(settings, bootstrap, jobs))
    topics = [changelog_topic(settings, "assets"), changelog_topic(settings, "jobs"),
              topic_name(settings, IMAGES_RESULTS)]
    raw = statistics.median(asyncio.run(raw_read_rate(settings, bootstrap, topics, total))
                            for _ in range(repeats))
    replay = statistics.median(asyncio.run(projector_rate(settings, bootstrap, total))
                               for _ in range(repeats))
    print(f"replay of {total} records (median of {repeats})", flush=True)
    print(f"raw aiokafka read          {raw:9.0f} records/s", flush=True)
    print(f"SQL projector into SQLite  {replay:9.0f} records/s   {replay / raw:5.2f} x raw read", flush=True)


def lag_figure(bootstrap: str, copies: int, repeats: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="regen-bench-media-"))
    paths = make_photos(root, copies)
    sql_lags, raw_lags = [], []
    for _ in range(repeats):
        sql, fetched = live_lag(paths, root, bootstrap)
        sql_lags += sql
        raw_lags += fetched
    print(f"live lag over {len(sql_lags)} completions of 8.6 MP thumbnails ({repeats} runs)", flush=True)
    print(f"raw aiokafka consumer      median {statistics.median(raw_lags):6.3f} s   max {max(raw_lags):6.3f} s",
          flush=True)
    print(f"SQL read model (worker's)  median {statistics.median(sql_lags):6.3f} s   max {max(sql_lags):6.3f} s"
          f"   {statistics.median(sql_lags) / max(statistics.median(raw_lags), 1e-6):5.2f} x raw (medians)",
          flush=True)


if __name__ == "__main__":
    main()
