"""The SQL read model without Kafka: row mapping, tracking records, the jobs filter."""

from __future__ import annotations

import orjson
import pytest

from regen.projections.sql_compare import differences, sql_tables
from regen.projections.sql_jobs import JobFilter, JobFilterError, parse_since, select_jobs, where_clause
from regen.projections.sql_rows import (
    Append,
    Delete,
    Malformed,
    TargetScope,
    Upsert,
    changelog_ops,
    job_state,
    result_ops,
)
from regen.projections.sql_store import SqlReadModelError, SqlStore, TrackedRecord, sql_url
from regen.projections.state import AssetState, JobState
from regen.schemas.events import ImageFailed, ImageGenerated, Target
from regen.settings import Settings
from regen.streams.codec import encode
from regen.streams.exceptions import ConfigError


def job(job_id: str = "thumbnail:a1:h400.jpg:r1", status: str = "completed", updated: str = "2026-01-01T10:00:00.000Z",
        **changes) -> JobState:
    kind, target, variant, _ = job_id.split(":")
    values = dict(job_id=job_id, target_kind=kind, target_id=target, variant=variant, revision=1,
                  lane="background", status=status, created_at="2026-01-01T09:59:00.000Z", updated_at=updated,
                  attempts=1, request_ids=("r1",))
    if status == "completed":
        values["output"] = {"uri": "ab/cd.jpg", "sha256": "a" * 64, "width": 400, "height": 300, "bytes": 1234}
        values["render_ms"] = 12
    if status == "failed":
        values.update(error="truncated", error_code="corrupt", reason="permanent")
    return JobState(**{**values, **changes})


def asset(asset_id: str = "a1", batch: str | None = "b1") -> AssetState:
    return AssetState(asset_id=asset_id, uri=f"{asset_id}.jpg", media_type="image", sha256="b" * 64, size_bytes=10,
                      imported_at="2026-01-01T09:58:00.000Z", batch_id=batch)


def changelog(table: str, key: str, value: dict | None, offset: int, partition: int = 0) -> TrackedRecord:
    topic = f"regen-{table}-changelog"
    body = None if value is None else orjson.dumps(value)
    return TrackedRecord(topic, partition, offset, changelog_ops(table, key.encode(), body))


@pytest.fixture(autouse=True)
def own_malformed_row_log(monkeypatch):
    """The forged rows here are logged on a throttle of their own, so the
    once-a-minute warning other tests look for is still theirs to see."""
    import logging

    from regen.projections import state
    from regen.projections.throttled_log import ThrottledLog

    monkeypatch.setattr(state, "_malformed_rows", ThrottledLog(logging.getLogger(state.__name__)))


@pytest.fixture
def store(tmp_path):
    s = SqlStore.open(f"sqlite://{tmp_path}/read.sqlite3")
    s.create_schema()
    yield s
    s.close()


# --- mapping -------------------------------------------------------------------------

def test_a_job_row_reads_back_as_the_job_the_table_holds():
    for state in (job(), job(status="failed"), job(status="running", started_at="2026-01-01T10:00:01.000Z")):
        ops = changelog_ops("jobs", state.job_id.encode(), orjson.dumps(state.to_dict()))
        assert isinstance(ops, list) and len(ops) == 1 and isinstance(ops[0], Upsert)
        assert job_state(ops[0].row) == state.to_dict()


def test_a_target_row_carries_its_scope_and_tells_its_jobs():
    ops = changelog_ops("assets", b"a1", orjson.dumps(asset().to_dict()))
    assert isinstance(ops, list)
    upsert, scope = ops
    assert isinstance(upsert, Upsert) and upsert.row["batch_id"] == "b1" and upsert.row["kind"] == "thumbnail"
    assert scope == TargetScope("assets", "a1", "b1", None, None)


def test_tombstones_delete_and_malformed_records_are_named_not_raised():
    assert changelog_ops("jobs", b"j1", None) == [Delete("jobs", {"job_id": "j1"})]
    assert changelog_ops("assets", b'"a1"', None)[0] == Delete("targets", {"target_table": "assets",
                                                                           "target_id": "a1"})
    forged = [("jobs", b"j1", b"{not json"), ("jobs", b"other-id", orjson.dumps(job().to_dict())),
              ("jobs", b"j", orjson.dumps({"job_id": "j", "status": "exploded"})), ("jobs", None, b"{}"),
              ("jobs", b"\xff\xfe", b"{}"), ("jobs", b"x" * 5000, b"{}"), ("assets", b"a1", b"[1, 2]"),
              ("nonsense", b"k", b"{}"), ("batches", b"b", orjson.dumps({"batch_id": 5}))]
    for table, key, value in forged:
        assert isinstance(changelog_ops(table, key, value), Malformed), (table, key, value)
    assert isinstance(result_ops(b"\x00garbage", [], "t/0/1"), Malformed)


def completion(ce_id: str | None = "ce-1", failed: bool = False):
    target = Target("thumbnail", "a1")
    event = (ImageFailed(target, "h400.jpg", 1, "thumbnail:a1:h400.jpg:r1", "permanent", "corrupt", "bad", 1,
                         "2026-01-01T10:00:00.000Z") if failed else
             ImageGenerated(target, "h400.jpg", 1, "thumbnail:a1:h400.jpg:r1", "ab/cd.jpg", "a" * 64, 400, 300,
                            1234, 12, 1, False, "2026-01-01T10:00:00.000Z"))
    envelope = encode(event, "tests", ce_id)
    return envelope.value, envelope.headers


def test_completions_become_history_rows_keyed_by_their_ce_id():
    [row] = result_ops(*completion("ce-1"), "t/0/1")
    assert isinstance(row, Append) and row.table == "results" and row.row["ce_id"] == "ce-1"
    [row] = result_ops(*completion("ce-2", failed=True), "t/0/2")
    assert row.table == "failures" and row.row["error_code"] == "corrupt"
    value, headers = completion()
    [row] = result_ops(value, [h for h in headers if h[0] != "ce_id"], "t/0/3")
    assert row.row["ce_id"] == "t/0/3", "without a ce_id the record's coordinates keep it unique"


# --- tracking -------------------------------------------------------------------------

def test_a_replayed_batch_applies_nothing_twice(store):
    batch = [changelog("jobs", "thumbnail:a1:h400.jpg:r1", job(status="running").to_dict(), 0),
             changelog("jobs", "thumbnail:a1:h400.jpg:r1", job().to_dict(), 1),
             TrackedRecord("regen.images.results", 0, 0, result_ops(*completion("ce-1"), "x"))]
    first = store.apply(batch)
    assert (first.applied, first.skipped) == (3, 0)
    assert store.positions() == {("regen-jobs-changelog", 0): 2, ("regen.images.results", 0): 1}
    rows = store.dicts("SELECT * FROM jobs"), store.dicts("SELECT * FROM results")
    again = store.apply(batch)
    assert (again.applied, again.skipped) == (0, 3)
    # A batch overlapping what was applied applies only what is new: an older
    # job row re-delivered would otherwise undo the newer one.
    overlapping = store.apply([batch[0], changelog("jobs", "thumbnail:a1:h400.jpg:r1", job(attempts=2).to_dict(), 2)])
    assert (overlapping.applied, overlapping.skipped) == (1, 1)
    assert store.dicts("SELECT attempts FROM jobs") == [{"attempts": 2}]
    assert store.dicts("SELECT * FROM results") == rows[1]


def test_a_history_row_seen_at_another_offset_is_kept_once(store):
    store.apply([TrackedRecord("r", 0, 0, result_ops(*completion("ce-1"), "x")),
                 TrackedRecord("r", 0, 1, result_ops(*completion("ce-1"), "y"))])
    assert store.dicts("SELECT count(*) AS n FROM results") == [{"n": 1}]


def test_a_malformed_record_moves_the_position_and_writes_nothing(store):
    result = store.apply([TrackedRecord("regen-jobs-changelog", 3, 7, changelog_ops("jobs", b"j", b"{"))])
    assert (result.applied, len(result.malformed)) == (1, 1)
    assert store.positions() == {("regen-jobs-changelog", 3): 8}
    assert store.dicts("SELECT count(*) AS n FROM jobs") == [{"n": 0}]


def test_a_job_gets_its_targets_batch_whichever_row_comes_first(store):
    store.apply([changelog("jobs", "thumbnail:a1:h400.jpg:r1", job().to_dict(), 0),
                 changelog("assets", "a2", asset("a2", "b2").to_dict(), 0)])
    store.apply([changelog("assets", "a1", asset("a1", "b1").to_dict(), 1),
                 changelog("jobs", "thumbnail:a2:h400.jpg:r1", job("thumbnail:a2:h400.jpg:r1").to_dict(), 1)])
    assert {r["job_id"]: r["batch_id"] for r in store.dicts("SELECT job_id, batch_id FROM jobs")} == {
        "thumbnail:a1:h400.jpg:r1": "b1", "thumbnail:a2:h400.jpg:r1": "b2"}
    store.apply([changelog("assets", "a1", None, 2)])
    assert store.dicts("SELECT batch_id FROM jobs WHERE target_id = 'a1'") == [{"batch_id": None}]


def test_the_rows_read_back_equal_the_tables_they_mirror(store):
    tables = {"jobs": {"thumbnail:a1:h400.jpg:r1": job().to_dict()}, "assets": {"a1": asset().to_dict()}}
    store.apply([changelog("jobs", k, v, 0) for k, v in tables["jobs"].items()]
                + [changelog("assets", k, v, 0) for k, v in tables["assets"].items()])
    assert differences(sql_tables(store), tables) == []
    tables["jobs"]["thumbnail:a1:h400.jpg:r1"] = job(attempts=3).to_dict()
    assert len(differences(sql_tables(store), tables)) == 1


# --- the jobs filter ---------------------------------------------------------------------

def test_the_filter_pages_by_key_newest_first(store):
    states = [job(f"thumbnail:a{i}:h400.jpg:r1", status="failed" if i % 2 else "completed",
                  updated=f"2026-01-01T10:00:{i:02d}.000Z") for i in range(7)]
    store.apply([changelog("jobs", s.job_id, s.to_dict(), i) for i, s in enumerate(states)]
                + [changelog("assets", "a1", asset("a1", "b1").to_dict(), 0)])
    seen, cursor = [], None
    while True:
        page = select_jobs(store, JobFilter(limit=3, cursor=cursor))
        seen += [j["job_id"] for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [s.job_id for s in reversed(states)]
    failed = select_jobs(store, JobFilter(status=("failed",)))
    assert [j["target_id"] for j in failed.jobs] == ["a5", "a3", "a1"] and failed.next_cursor is None
    since = parse_since("2026-01-01T10:00:04Z", 0)
    assert [j["target_id"] for j in select_jobs(store, JobFilter(since=since)).jobs] == ["a6", "a5", "a4"]
    assert [j["job_id"] for j in select_jobs(store, JobFilter(batch="b1", kind="thumbnail")).jobs] == [
        "thumbnail:a1:h400.jpg:r1"]


def test_filter_values_are_checked_and_become_parameters_never_sql():
    for bad in (dict(status=("broken",)), dict(kind="poster"), dict(limit=0), dict(limit=5000),
                dict(cursor="not-a-cursor"), dict(batch="x" * 2000)):
        with pytest.raises(JobFilterError):
            JobFilter(**bad)
    where, params = where_clause(JobFilter(status=("failed", "retrying"), batch="b'; DROP TABLE jobs; --"))
    assert "DROP" not in where and params == ["failed", "retrying", "b'; DROP TABLE jobs; --"]
    assert parse_since("24h", 100_000) == 100_000 - 86400 and parse_since("90m", 6000) == 600
    with pytest.raises(JobFilterError):
        parse_since("yesterday", 0)


def test_settings_name_the_read_model(tmp_path):
    settings = Settings.from_env({"REGEN_STATE_DIR": str(tmp_path), "REGEN_APP_ID": "app"})
    assert sql_url(settings) == f"sqlite://{tmp_path}/sql/app.sqlite3"
    with pytest.raises(ConfigError, match="REGEN_SQL_URL"):
        Settings.from_env({"REGEN_SQL_URL": "mysql://x/y"})
    with pytest.raises(ConfigError, match="REGEN_SQL_BATCH_SIZE"):
        Settings.from_env({"REGEN_SQL_BATCH_SIZE": "0"})


def test_a_read_only_connection_refuses_writes(store, tmp_path):
    from regen.cli.sql import format_query, run_query

    settings = Settings.from_env({"REGEN_SQL_URL": f"sqlite://{tmp_path}/read.sqlite3"})
    result = run_query(settings, "SELECT name, value FROM meta", 10, 5)
    assert result.rows == [("schema_version", "1")] and "1 row" in format_query(result)
    with pytest.raises(SqlReadModelError, match="readonly"):
        run_query(settings, "DELETE FROM meta", 10, 5)


def test_a_jobs_query_string_becomes_a_filter():
    from regen.agents.sql_views import job_filter

    f = job_filter({"status": ["failed,retrying", "pending"], "since": ["2h"], "batch": ["b1"], "limit": ["10"]},
                   now=10_000.0)
    assert f == JobFilter(status=("failed", "retrying", "pending"), since=10_000.0 - 7200, batch="b1", limit=10)
    for bad in ({"limit": ["ten"]}, {"since": ["soon"]}, {"status": ["exploded"]}, {"kind": ["poster"]}):
        with pytest.raises(JobFilterError):
            job_filter(bad, now=0.0)


def test_two_appliers_of_one_database_apply_each_record_once(store, tmp_path):
    import threading

    batches = [[TrackedRecord("r", p, o, result_ops(*completion(f"ce-{p}-{o}"), "x")) for o in range(b * 5, b * 5 + 5)
                for p in (0, 1)] for b in range(20)]
    other = SqlStore.open(f"sqlite://{tmp_path}/read.sqlite3")
    applied = [0, 0]

    def apply_all(s: SqlStore, i: int) -> None:
        for batch in batches:
            applied[i] += s.apply(batch).applied

    threads = [threading.Thread(target=apply_all, args=(s, i)) for i, s in enumerate((store, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert sum(applied) == 200, "every record applied by exactly one of them"
    assert store.positions() == {("r", 0): 100, ("r", 1): 100}
    assert store.dicts("SELECT count(*) AS n FROM results") == [{"n": 200}]


def test_regen_jobs_prints_a_page_and_where_the_next_begins(store, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from regen.cli.main import cli

    states = [job(f"thumbnail:a{i}:h400.jpg:r1", status="failed", updated=f"2026-01-01T10:00:0{i}.000Z")
              for i in range(3)]
    store.apply([changelog("jobs", s.job_id, s.to_dict(), i) for i, s in enumerate(states)])
    monkeypatch.setenv("REGEN_SQL_URL", f"sqlite://{tmp_path}/read.sqlite3")
    result = CliRunner().invoke(cli, ["jobs", "--status", "failed", "--limit", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["updated", "status", "kind", "target", "variant", "rev", "tries", "output", "/",
                                "error"]
    assert "a2" in lines[2] and "corrupt: truncated" in lines[2] and "a1" in lines[3]
    cursor = lines[-1].split("--cursor ")[1].rstrip(")")
    rest = CliRunner().invoke(cli, ["jobs", "--status", "failed", "--cursor", cursor, "--json"])
    assert [j["target_id"] for j in orjson.loads(rest.output)["jobs"]] == ["a0"]
