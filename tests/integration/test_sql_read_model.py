"""The SQL read model against real workers and a real broker, on SQLite and
on PostgreSQL: after imports (some of corrupt files), a forced render,
annotation edits, a worker SIGKILL and restart and a replay, its rows equal
the Faust projections (and what rebuild-projections folds from the topics),
every completion is one history row, and the tracking records stand where
the topics end."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from dataclasses import replace

import orjson
import pytest

from regen.cli.importer import scan
from regen.cli.rebuild import read_events
from regen.projections.rebuild import compare, rebuild
from regen.projections.sql_compare import as_projections, differences, mirrored_tables, sql_tables
from regen.projections.sql_store import PROJECTION, SqlStore, sql_url
from regen.schemas.events import ImageRequested, Target
from regen.settings import Settings
from regen.streams.codec import header
from regen.streams.results import changelog_topic, end_offsets, read_records, read_table, wait_for
from regen.streams.topics import IMAGES_RESULTS, topic_name
from tests.helpers import edit, eventually, free_port, publish_all, run


def regen(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regen.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def faust_tables(settings: Settings, bootstrap: str) -> dict[str, dict]:
    async def read() -> dict[str, dict]:
        names = mirrored_tables()
        return dict(zip(names, await asyncio.gather(*(read_table(settings, bootstrap, n) for n in names)),
                        strict=True))

    return run(read())


def read_model(settings: Settings) -> SqlStore:
    return SqlStore.open(sql_url(settings), read_only=True)


def sql_differences(settings: Settings, bootstrap: str) -> list[str]:
    store = read_model(settings)
    try:
        return differences(sql_tables(store), faust_tables(settings, bootstrap))
    finally:
        store.close()


def topic_ends(settings: Settings, bootstrap: str) -> dict[tuple[str, int], int]:
    topics = [changelog_topic(settings, t) for t in mirrored_tables()] + [topic_name(settings, IMAGES_RESULTS)]
    return {(topic, p): end for topic in topics for p, end in run(end_offsets(settings, bootstrap, topic)).items()}


def assert_read_model_is_exact(settings: Settings, bootstrap: str) -> None:
    """Rows equal to the tables and to the rebuilt projections; history rows
    one per completion event; tracking records at the topics' ends."""
    found = eventually(lambda: not sql_differences(settings, bootstrap), timeout=30)
    assert found, sql_differences(settings, bootstrap)
    store = read_model(settings)
    try:
        tables = sql_tables(store)
        live = faust_tables(settings, bootstrap)
        rebuilt = rebuild(run(read_events(settings, bootstrap)))
        comparison = compare(as_projections(tables, run(read_table(settings, bootstrap, "videos"))), rebuilt)
        assert comparison.equal, [d.describe() for d in comparison.differences]
        assert comparison.compared["jobs"] >= 7 and tables["jobs"].keys() == live["jobs"].keys()

        records = run(read_records(settings, bootstrap, IMAGES_RESULTS, idle_timeout=1.0))
        ce_ids = [header(r.headers, "ce_id") for r in records]
        assert len(set(ce_ids)) == len(ce_ids)
        history = store.dicts("SELECT ce_id FROM results UNION ALL SELECT ce_id FROM failures")
        assert sorted(r["ce_id"] for r in history) == sorted(ce_ids), "each completion applied once, none missed"

        positions = {(r["topic"], r["kafka_partition"]): r["next_offset"]
                     for r in store.dicts("SELECT * FROM tracking WHERE projection = ?", (PROJECTION,))}
        ends = topic_ends(settings, bootstrap)
        assert {tp: positions.get(tp, 0) for tp in ends} == ends
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


def test_the_read_model_equals_the_projections_through_failures_a_kill_and_a_replay(
        backend, request, start_worker, corpus, media, tmp_path):
    extra = {"REGEN_SQL_URL": request.getfixturevalue("postgres").new_database()} if backend == "postgresql" else {}
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="0.5",
                          REGEN_RETRY_FIRST_DELAY="0.2", REGEN_PREGENERATE_VARIANTS="h400.jpg",
                          REGEN_SQL_BATCH_SIZE="7", **extra)  # small batches: many transactions
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    photos = [corpus / "photos" / f"Landscape_{i}.jpg" for i in (1, 2, 3)]
    corrupt = [corpus / "bad" / "broken.png", corpus / "bad" / "truncated_jpeg.jpg"]
    imports = [s.event for s in scan(photos + corrupt, [corpus], "sqlmix")]
    asset = imports[0].asset_id
    run(publish_all(settings, bootstrap, [*imports, edit("n1", 1, start=2, end=8), edit("n1", 2, start=2, end=9)]))
    run(wait_for(settings, bootstrap, lambda c: f"{c.target.id}/{c.revision}",
                 {f"{e.asset_id}/1" for e in imports} | {"n1/2"}, 90))
    run(publish_all(settings, bootstrap, [ImageRequested(Target("thumbnail", asset), "h400.jpg", "forced",
                                                         force=True)]))
    run(wait_for(settings, bootstrap, lambda c: c.request_ids[0] if c.request_ids else None, {"forced"}, 60))
    failed = {e.asset_id for e in imports[3:]}

    worker.stop(signal.SIGKILL)  # mid-stream: the projector's transaction is all or nothing
    worker = start_worker(**{k: v for k, v in worker.env.items() if k.startswith("REGEN_")})
    reimport = replace(next(scan([corpus / "photos" / "Portrait_2.jpg"], [corpus], "sqlmix")).event, asset_id=asset)
    run(publish_all(settings, bootstrap, [reimport, edit("n1", 3, start=1, end=9)]))
    run(wait_for(settings, bootstrap, lambda c: f"{c.target.id}/{c.revision}", {f"{asset}/2", "n1/3"}, 90))
    replayed = regen(worker.env, "replay", "--from-beginning", "--json")
    assert replayed.returncode == 0, replayed.stderr[-3000:]

    assert_read_model_is_exact(settings, bootstrap)

    listed = regen(worker.env, "jobs", "--status", "failed", "--batch", "sqlmix", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {j["target_id"] for j in orjson.loads(listed.stdout)["jobs"]} == failed
    code, page = worker.get("/jobs?status=failed&since=1h&kind=thumbnail")
    assert code == 200 and {j["target_id"] for j in page["jobs"]} == failed, page
    assert worker.get("/jobs?status=exploded")[0] == 400
    counted = regen(worker.env, "query", "--json", "SELECT count(*) AS n FROM failures WHERE error_code = 'corrupt'")
    assert counted.returncode == 0, counted.stderr
    assert orjson.loads(counted.stdout)["n"] >= len(failed) * 2, "the import's failures and the replay's"
    refused = regen(worker.env, "query", "DELETE FROM jobs")
    assert refused.returncode == 1 and "read" in refused.stderr.lower()

    # The read model rebuilt from scratch by standalone projectors equals the
    # worker's. On PostgreSQL two of them at once: none applies a record twice.
    fresh = {**worker.env, "REGEN_SQL_URL": (request.getfixturevalue("postgres").new_database()
                                             if backend == "postgresql" else f"sqlite://{tmp_path}/fresh.sqlite3")}
    projectors = [subprocess.Popen([sys.executable, "-m", "regen.cli.main", "sql-projector", "--until-caught-up"],
                                   env=fresh, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(2 if backend == "postgresql" else 1)]
    for projector in projectors:
        _, err = projector.communicate(timeout=120)
        assert projector.returncode == 0, err[-3000:]
    fresh_settings = Settings.from_env(fresh)
    assert not sql_differences(fresh_settings, bootstrap)
    assert_read_model_is_exact(fresh_settings, bootstrap)
    again = regen(fresh, "sql-projector", "--until-caught-up")
    assert "applied 0 record(s)" in again.stderr, again.stderr


def test_each_worker_of_a_fleet_holds_the_whole_fleets_jobs(start_worker, corpus, tmp_path):
    workers = [start_worker(REGEN_STATE_DIR=str(tmp_path / f"state{i}"), REGEN_PREGENERATE_VARIANTS="h400.jpg",
                            REGEN_WEB_PORT=str(free_port())) for i in range(2)]
    settings, bootstrap = workers[0].settings, workers[0].env["KAFKA_BOOTSTRAP_SERVERS"]
    photos = sorted((corpus / "photos").glob("*.jpg"))[:8]
    imports = [s.event for s in scan(photos, [corpus], "fleet")]
    run(publish_all(settings, bootstrap, imports))
    run(wait_for(settings, bootstrap, lambda c: c.target.id, {e.asset_id for e in imports}, 120))
    wanted = {f"thumbnail:{e.asset_id}:h400.jpg:r1" for e in imports}
    for worker in workers:
        def listed(worker=worker) -> set[str]:
            code, page = worker.get("/jobs?batch=fleet&status=completed&limit=1000")
            return {j["job_id"] for j in page["jobs"]} if code == 200 else set()

        assert eventually(lambda listed=listed: listed() == wanted, timeout=30), (worker.settings.state_dir, listed())
    # Both took part: each rendered some of the batch (its partitions), and its read model has the others' too.
    for worker in workers:
        assert (worker.settings.state_dir / "sql").is_dir(), "each worker has its own SQLite read model"
        assert "consumer reads partitions [" in worker.log.read_text(errors="replace"), "a member with partitions"
