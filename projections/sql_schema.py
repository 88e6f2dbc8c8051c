"""The SQL read model's tables and indexes, for SQLite and PostgreSQL.

README.md ("SQL read model") documents them for people writing queries.
``{int}``, ``{real}`` and ``{bool}`` are the dialect's types; times are kept
both as the ISO text the projections hold and as seconds since the epoch
(``*_ts``), which is what filters and indexes use.
"""

from __future__ import annotations

# Bumped when a table changes incompatibly: a store of another version is
# refused with what to do (it is a cache of the topics: delete and replay).
SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- pyeventsourcing's tracking records: per projection and topic partition,
-- the offset of the next record to apply, written in the same transaction
-- as the rows that record produced.
CREATE TABLE IF NOT EXISTS tracking (
    projection TEXT NOT NULL,
    topic TEXT NOT NULL,
    kafka_partition {int} NOT NULL,
    next_offset {int} NOT NULL,
    PRIMARY KEY (projection, topic, kafka_partition)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_table TEXT NOT NULL,
    variant TEXT NOT NULL,
    revision {int} NOT NULL,
    lane TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts {int} NOT NULL,
    error TEXT,
    error_code TEXT,
    reason TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL,
    created_ts {real} NOT NULL,
    updated_ts {real} NOT NULL,
    finished_ts {real},
    render_ms {real},
    cache_hit {bool} NOT NULL,
    output_uri TEXT,
    output_sha256 TEXT,
    output_bytes {int},
    output_width {int},
    output_height {int},
    request_ids TEXT NOT NULL,
    batch_id TEXT,
    video_id TEXT,
    group_id TEXT
);
CREATE TABLE IF NOT EXISTS targets (
    target_table TEXT NOT NULL,
    target_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    batch_id TEXT,
    video_id TEXT,
    group_id TEXT,
    revision {int} NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (target_table, target_id)
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    total {int} NOT NULL,
    completed {int} NOT NULL,
    failed {int} NOT NULL,
    pending {int} NOT NULL,
    first_ts {real},
    updated_ts {real},
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    label TEXT,
    status TEXT NOT NULL,
    total {int} NOT NULL,
    completed {int} NOT NULL,
    failed {int} NOT NULL,
    pending {int} NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT,
    updated_ts {real},
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    ce_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    revision {int} NOT NULL,
    attempts {int} NOT NULL,
    generated_at TEXT NOT NULL,
    generated_ts {real},
    render_ms {real} NOT NULL,
    cache_hit {bool} NOT NULL,
    uri TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes {int} NOT NULL,
    width {int} NOT NULL,
    height {int} NOT NULL,
    request_ids TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    ce_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    revision {int} NOT NULL,
    attempts {int} NOT NULL,
    failed_at TEXT NOT NULL,
    failed_ts {real},
    reason TEXT NOT NULL,
    error_code TEXT NOT NULL,
    error TEXT NOT NULL,
    request_ids TEXT NOT NULL
);
"""

# What `regen jobs`, GET /jobs and the history queries filter and order by.
INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_status_time ON jobs (status, updated_ts, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (updated_ts, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_target ON jobs (target_table, target_id);
CREATE INDEX IF NOT EXISTS jobs_by_kind_time ON jobs (kind, updated_ts);
CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs (batch_id, updated_ts);
CREATE INDEX IF NOT EXISTS jobs_by_video ON jobs (video_id, updated_ts);
CREATE INDEX IF NOT EXISTS jobs_by_group ON jobs (group_id, updated_ts);
CREATE INDEX IF NOT EXISTS targets_by_batch ON targets (batch_id);
CREATE INDEX IF NOT EXISTS targets_by_video ON targets (video_id);
CREATE INDEX IF NOT EXISTS targets_by_group ON targets (group_id);
CREATE INDEX IF NOT EXISTS results_by_target ON results (kind, target_id, generated_ts);
CREATE INDEX IF NOT EXISTS results_by_time ON results (generated_ts);
CREATE INDEX IF NOT EXISTS failures_by_target ON failures (kind, target_id, failed_ts);
CREATE INDEX IF NOT EXISTS failures_by_time ON failures (failed_ts);
CREATE INDEX IF NOT EXISTS failures_by_code ON failures (error_code, failed_ts);
"""

TYPES = {
    "sqlite": {"int": "INTEGER", "real": "REAL", "bool": "INTEGER"},
    "postgresql": {"int": "BIGINT", "real": "DOUBLE PRECISION", "bool": "BOOLEAN"},
}


def statements(dialect: str) -> list[str]:
    """Every CREATE statement, in order, for ``dialect``."""
    text = (TABLES + INDEXES).format(**TYPES[dialect])
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
