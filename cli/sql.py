"""`regen query`, `regen jobs` and `regen sql-projector`: the SQL read model
from the command line. Pure ``format_*`` functions; the rest opens the
database (read-only for the two queries) and calls the library."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

import orjson

from regen.cli.format import format_table
from regen.projections.sql_jobs import JobFilter, JobPage, select_jobs
from regen.projections.sql_store import SqlReadModelError, SqlStore, describe_url, sql_url
from regen.settings import Settings

# A cell of a printed table is cut here (errors, JSON state): a line stays readable.
MAX_CELL_CHARS = 60


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool  # more rows than max_rows: only the first max_rows are here


def run_query(settings: Settings, sql: str, max_rows: int, timeout_s: float) -> QueryResult:
    """``sql`` on a read-only connection, aborted after ``timeout_s``."""
    store = SqlStore.open(sql_url(settings), read_only=True, timeout_s=timeout_s)
    try:
        store.set_statement_timeout(timeout_s)
        columns, rows = store.query(sql, max_rows=max_rows)
    except Exception as e:  # the database's own message says what is wrong with the query
        if not _is_database_error(e):
            raise
        raise SqlReadModelError(f"the query failed: {type(e).__name__}: {str(e).strip()} (the connection is "
                                "read-only; tables are listed in README.md, \"SQL read model\")") from e
    finally:
        with contextlib.suppress(Exception):
            store.close()
    return QueryResult(columns, rows[:max_rows], len(rows) > max_rows)


def _is_database_error(error: Exception) -> bool:
    import sqlite3

    import psycopg

    return isinstance(error, sqlite3.Error | psycopg.Error)


def list_jobs(settings: Settings, f: JobFilter) -> JobPage:
    store = SqlStore.open(sql_url(settings), read_only=True)
    try:
        return select_jobs(store, f)
    finally:
        with contextlib.suppress(Exception):
            store.close()


def preview_retry(settings: Settings, command: Any) -> list[dict[str, Any]]:
    """The failed jobs a RetryFailed command would pick, from the read model
    (projections/retry_preview.py: the workers' rules, on its rows)."""
    from regen.projections.retry_preview import retry_preview

    store = SqlStore.open(sql_url(settings), read_only=True)
    try:
        return retry_preview(store, command)
    finally:
        with contextlib.suppress(Exception):
            store.close()


def format_retry_preview(jobs: list[dict[str, Any]], command: Any) -> str:
    if not jobs:
        return "no failed job matches: nothing would be retried (--dry-run: nothing published)"
    rows = [(j["finished_at"] or "", j["kind"], j["target_id"], j["variant"], f"r{j['revision']}",
             _cell(f"{j['error_code']}: {j['error']}" if j["error"] else j["reason"] or "")) for j in jobs]
    text = format_table(rows, ("failed at", "kind", "target", "variant", "rev", "error"))
    return (f"{text}\n{len(jobs)} failed job(s) would be asked for again by {type(command).__name__}"
            f" (from the SQL read model; --dry-run: nothing published)")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"


def format_query(result: QueryResult) -> str:
    if not result.columns:
        return "(no result set)"
    table = format_table([tuple(_cell(v) for v in row) for row in result.rows], tuple(result.columns))
    count = f"{len(result.rows)} row{'' if len(result.rows) == 1 else 's'}"
    more = " (more rows not shown: raise --max-rows or narrow the query)" if result.truncated else ""
    return f"{table}\n({count}{more})"


def query_json_lines(result: QueryResult) -> list[str]:
    return [orjson.dumps(dict(zip(result.columns, row, strict=True)), default=str).decode() for row in result.rows]


def format_jobs(page: JobPage) -> str:
    if not page.jobs:
        return "no jobs match"
    rows = [(j["updated_at"], j["status"], j["kind"], j["target_id"], j["variant"], f"r{j['revision']}",
             str(j["attempts"]), _cell(f"{j['error_code']}: {j['error']}" if j["error"] else j["output_uri"] or ""))
            for j in page.jobs]
    text = format_table(rows, ("updated", "status", "kind", "target", "variant", "rev", "tries", "output / error"))
    if page.next_cursor:
        text += f"\n(more: --cursor {page.next_cursor})"
    return text


def run_projector(settings: Settings, until_caught_up: bool, progress) -> None:
    """`regen sql-projector`: fill the read model until SIGINT/SIGTERM (or caught up)."""
    from regen.agents.sql_projector import SqlProjector, run_forever
    from regen.streams.connection import bootstrap_servers

    logging.getLogger("regen").setLevel(logging.getLevelName(settings.log_level.upper()))
    projector = SqlProjector(settings, bootstrap_servers(settings))
    progress(f"SQL read model: {describe_url(projector.url)}")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, projector.stop)
        started = time.monotonic()
        try:
            if until_caught_up:
                await projector.run(until_end=True)
            else:
                await run_forever(projector)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, projector.close)
        stats = projector.stats
        progress(f"applied {stats.applied} record(s) ({stats.skipped} already applied, {stats.malformed} "
                 f"malformed, skipped) in {time.monotonic() - started:.1f} s")

    asyncio.run(main())
