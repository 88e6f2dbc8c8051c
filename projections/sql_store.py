"""The SQL read model's database: SQLite (default, a file in the state dir)
or PostgreSQL (REGEN_SQL_URL=postgresql://...).

The one subtle part is ``apply``: a batch of records and the tracking
records saying how far each topic partition has been applied are written in
one transaction (pyeventsourcing's tracking records), so a crash, a
re-delivered batch or a second projector never applies a record twice:

1. Begin, locking out other appliers of the same partitions. SQLite: BEGIN
   IMMEDIATE (one writer at a time). PostgreSQL: a transaction-scoped
   advisory lock per partition *number*, taken in order (no deadlock).
   Per number, not per topic: the changelogs are co-partitioned with the
   source topics, so a job's row and its target's row are only ever written
   from the same partition number, and no two transactions touch one row.
2. Read each partition's stored next offset (the truth, not Kafka's
   committed offsets).
3. Apply, in order, only the records at or past it; skip the rest (already
   applied, by this projector before a crash or by another one).
4. Move each stored position past the last record of the batch (only ever
   forward), and commit. Rows and positions are durable together or not at all.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regen.projections.sql_rows import (
    JOB_SCOPE_COLUMNS,
    KEYS,
    Append,
    Delete,
    Malformed,
    Op,
    Upsert,
)
from regen.projections.sql_schema import SCHEMA_VERSION, statements
from regen.settings import Settings
from regen.streams.exceptions import RegenError

# The name tracking rows are kept under: one read model per database.
PROJECTION = "sql-read-model"
# A transaction PostgreSQL aborted for a conflict (deadlock, serialization)
# is tried again this many times: nothing of it was applied.
CONFLICT_RETRIES = 5


class SqlReadModelError(RegenError):
    """The read model's database is missing, unreachable or of another version."""


@dataclass(frozen=True)
class TrackedRecord:
    """A Kafka record's coordinates and what it becomes in SQL."""

    topic: str
    partition: int
    offset: int
    ops: list[Op] | Malformed


@dataclass
class Applied:
    applied: int = 0  # records applied by this transaction
    skipped: int = 0  # records already applied before (a replay, a restart, another projector)
    malformed: list[str] = field(default_factory=list)  # reasons, of the applied ones that were malformed
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per partition, as stored


def sql_url(settings: Settings) -> str:
    """REGEN_SQL_URL, or the default: a SQLite file in the state dir, one per app id."""
    if settings.sql_url:
        return settings.sql_url
    path = (settings.state_dir / "sql" / f"{settings.app_id}.sqlite3").absolute()
    return f"sqlite://{urllib.parse.quote(str(path))}"


def dialect_of(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise SqlReadModelError(f"{url!r}: a SQL read model URL is sqlite:///PATH or postgresql://...")


def sqlite_path(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class SqlStore:
    """One connection to the read model. Not thread-safe: its owner uses it
    from one thread at a time (the projector's database thread)."""

    def __init__(self, connection: Any, dialect: str, url: str) -> None:
        self.connection, self.dialect, self.url = connection, dialect, url

    # --- opening -------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, read_only: bool = False, timeout_s: float = 30.0) -> SqlStore:
        dialect = dialect_of(url)
        if dialect == "sqlite":
            return cls(_open_sqlite(sqlite_path(url), read_only, timeout_s), dialect, url)
        return cls(_open_postgresql(url, read_only, timeout_s), dialect, url)

    def close(self) -> None:
        self.connection.close()

    def create_schema(self) -> None:
        with self.transaction():
            if self.dialect == "postgresql":
                # CREATE ... IF NOT EXISTS is not safe against itself in
                # PostgreSQL: two projectors starting on one empty database
                # both create a table, and one fails on the catalogue's unique
                # index. One creates the schema at a time (-1: no partition).
                self._execute("SELECT pg_advisory_xact_lock(?, ?)", (_LOCK_SPACE, -1))
            for statement in statements(self.dialect):
                self._execute(statement)
            self._execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                          ("schema_version", str(SCHEMA_VERSION)))
            found = self._fetchall("SELECT value FROM meta WHERE name = ?", ("schema_version",))
        if found and found[0][0] != str(SCHEMA_VERSION):
            raise SqlReadModelError(
                f"the read model at {describe_url(self.url)} has schema version {found[0][0]}, this regen "
                f"writes {SCHEMA_VERSION}: it is a cache of the topics, so drop it (delete the SQLite file, or "
                f"its tables in PostgreSQL) and the projector fills it again from the beginning")

    # --- transactions --------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.dialect == "sqlite":
            self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.rollback()
            raise
        self.connection.commit()

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to apply of every topic partition the read model has tracked."""
        rows = self._fetchall("SELECT topic, kafka_partition, next_offset FROM tracking WHERE projection = ?",
                              (PROJECTION,))
        if self.dialect == "postgresql":
            self.connection.rollback()  # end the read's transaction
        return {(topic, int(partition)): int(offset) for topic, partition, offset in rows}

    def apply(self, records: Sequence[TrackedRecord]) -> Applied:
        """Apply what has not been applied yet of ``records`` (in offset order
        per partition), with the tracking records, in one transaction."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                with self.transaction():
                    return self._apply(records)
            except Exception as e:
                if attempt == CONFLICT_RETRIES or not _is_conflict(e):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _apply(self, records: Sequence[TrackedRecord]) -> Applied:
        partitions = sorted({(r.topic, r.partition) for r in records})
        if self.dialect == "postgresql":  # step 1 (SQLite: BEGIN IMMEDIATE did it)
            for number in sorted({p for _, p in partitions}):
                self._execute("SELECT pg_advisory_xact_lock(?, ?)", (_LOCK_SPACE, number))
        stored = {}
        for topic, partition in partitions:  # step 2
            self._execute("INSERT INTO tracking (projection, topic, kafka_partition, next_offset) "
                          "VALUES (?, ?, ?, 0) ON CONFLICT DO NOTHING", (PROJECTION, topic, partition))
            rows = self._fetchall("SELECT next_offset FROM tracking WHERE projection = ? AND topic = ? AND "
                                  "kafka_partition = ?", (PROJECTION, topic, partition))
            stored[(topic, partition)] = int(rows[0][0])
        result = Applied()
        statements: list[tuple[str, tuple]] = []
        ends = dict(stored)
        for record in records:  # step 3
            tp = (record.topic, record.partition)
            if record.offset < ends[tp]:
                result.skipped += 1
                continue
            ends[tp] = record.offset + 1
            result.applied += 1
            if isinstance(record.ops, Malformed):
                result.malformed.append(record.ops.reason)
                continue
            statements.extend(self._statement(op) for op in record.ops)
        self._execute_runs(statements)
        for (topic, partition), end in ends.items():  # step 4
            if end > stored[(topic, partition)]:
                self._execute("UPDATE tracking SET next_offset = ? WHERE projection = ? AND topic = ? AND "
                              "kafka_partition = ? AND next_offset < ?", (end, PROJECTION, topic, partition, end))
        result.positions = ends
        return result

    def _statement(self, op: Op) -> tuple[str, tuple]:
        if isinstance(op, Upsert):
            return _upsert_sql(op.table, tuple(op.row)), tuple(op.row.values()) + (
                (op.row["target_table"], op.row["target_id"]) * 3 if op.table == "jobs" else ())
        if isinstance(op, Append):
            columns = tuple(op.row)
            return (f"INSERT INTO {op.table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                    f"ON CONFLICT ({', '.join(KEYS[op.table])}) DO NOTHING", tuple(op.row.values()))
        if isinstance(op, Delete):
            where = " AND ".join(f"{c} = ?" for c in op.key)
            return f"DELETE FROM {op.table} WHERE {where}", tuple(op.key.values())
        return ("UPDATE jobs SET batch_id = ?, video_id = ?, group_id = ? WHERE target_table = ? AND target_id = ?",
                (op.batch_id, op.video_id, op.group_id, op.target_table, op.target_id))

    def _execute_runs(self, statements: list[tuple[str, tuple]]) -> None:
        """Runs of one statement go to the driver at once (executemany); the order is kept."""
        i = 0
        while i < len(statements):
            sql = statements[i][0]
            j = i
            while j < len(statements) and statements[j][0] == sql:
                j += 1
            cursor = self.connection.cursor()
            cursor.executemany(self._sql(sql), [params for _, params in statements[i:j]])
            cursor.close()
            i = j

    # --- reading -------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = (), *, max_rows: int | None = None
              ) -> tuple[list[str], list[tuple]]:
        """Column names and rows (at most ``max_rows``, and one more to tell
        there were more)."""
        cursor = self.connection.cursor()
        try:
            if self.dialect == "postgresql":  # no parameters: a "%" in a person's query is just a "%"
                cursor.execute(self._sql(sql) if params else sql, tuple(params) if params else None)
            else:
                cursor.execute(sql, tuple(params))
            columns = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchall() if max_rows is None else cursor.fetchmany(max_rows + 1)
        finally:
            cursor.close()
        if self.dialect == "postgresql":
            self.connection.rollback()  # end the read's transaction (read-only anyway)
        return columns, [tuple(r) for r in rows]

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        columns, rows = self.query(sql, params)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def set_statement_timeout(self, seconds: float) -> None:
        """Queries abort after ``seconds`` (a person's query, not the projector's)."""
        if self.dialect == "postgresql":
            self.connection.execute(f"SET statement_timeout = {int(seconds * 1000)}")
            self.connection.commit()
            return
        deadline = time.monotonic() + seconds
        self.connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)

    # --- driver differences ----------------------------------------------------

    def _sql(self, sql: str) -> str:
        # Written with SQLite's "?" placeholders; psycopg wants "%s" (and no
        # other "%": none of the statements here has one).
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _execute(self, sql: str, params: tuple = ()) -> None:
        self.connection.execute(self._sql(sql), params)

    def _fetchall(self, sql: str, params: tuple = ()) -> list[tuple]:
        return list(self.connection.execute(self._sql(sql), params).fetchall())


# Advisory locks live in one namespace per database: this first key keeps
# ours apart from anyone else's.
_LOCK_SPACE = zlib.crc32(PROJECTION.encode()) & 0x7FFFFFFF


def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    keys = KEYS[table]
    values = ["?"] * len(columns)
    names = list(columns)
    if table == "jobs":  # the target's batch, video and group, whichever of the two rows came first
        for column in JOB_SCOPE_COLUMNS:
            names.append(column)
            values.append(f"(SELECT {column} FROM targets WHERE target_table = ? AND target_id = ?)")
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in keys)
    return (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(values)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")


def _open_sqlite(path: Path, read_only: bool, timeout_s: float) -> sqlite3.Connection:
    if read_only:
        if not path.exists():
            raise SqlReadModelError(f"no read model at {path} yet: it is written by a running worker (unless "
                                    f"REGEN_SQL_PROJECTOR=off) or by `regen sql-projector`")
        connection = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True,
                                     timeout=timeout_s, check_same_thread=False)
        connection.execute("PRAGMA query_only = ON")
        return connection
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE).
    connection = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
    # WAL: readers (regen query, GET /jobs) never block the projector, nor it them.
    connection.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a power cut may lose the last transactions, rows and
    # tracking records together, which the projector then applies again.
    connection.execute("PRAGMA synchronous = NORMAL")
    return connection


def _open_postgresql(url: str, read_only: bool, timeout_s: float) -> Any:
    import psycopg

    try:
        connection = psycopg.connect(url, connect_timeout=max(1, int(timeout_s)), autocommit=False)
    except psycopg.OperationalError as e:
        raise SqlReadModelError(f"cannot connect to the read model at {describe_url(url)}: "
                                f"{str(e).strip()} (check REGEN_SQL_URL)") from e
    if read_only:
        connection.read_only = True  # every transaction: BEGIN READ ONLY
    return connection


def _is_conflict(error: Exception) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        return False
    return isinstance(error, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def rows_of(store: SqlStore, table: str, order_by: str) -> list[dict[str, Any]]:
    """A whole table as dicts (tests and comparisons)."""
    return store.dicts(f"SELECT * FROM {table} ORDER BY {order_by}")
