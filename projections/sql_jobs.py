"""Listing jobs from the SQL read model: one filter for `regen jobs`,
``GET /jobs`` and `regen retry --failed --dry-run`.

    page = select_jobs(store, JobFilter(status=("failed",), since=time.time() - 86400, batch="b1"))
    page.jobs         # newest first (by the time of their last change)
    page.next_cursor  # give it back as JobFilter(cursor=...) for the next page; None: no more

Paging is by key (updated_ts, job_id), not by offset: a page stays right
while jobs keep changing, and each page is one index range scan.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, get_args

import orjson

from regen.kinds import KINDS
from regen.projections.instants import instant
from regen.projections.sql_store import SqlStore
from regen.projections.state import JobStatus
from regen.streams.exceptions import RegenError

STATUSES = get_args(JobStatus)
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
# Ids in filters are compared, never interpreted; past this length they are not ids.
MAX_FILTER_CHARS = 1000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

# What a listed job carries (the jobs table's columns, less the numbers kept for indexes).
JOB_COLUMNS = ("job_id", "kind", "target_id", "variant", "revision", "lane", "status", "attempts", "error",
               "error_code", "reason", "created_at", "started_at", "finished_at", "updated_at", "render_ms",
               "cache_hit", "output_uri", "output_sha256", "output_bytes", "batch_id", "video_id", "group_id",
               "updated_ts")


class JobFilterError(RegenError):
    """A filter value that is not valid (the message says what is)."""


@dataclass(frozen=True)
class JobFilter:
    status: tuple[str, ...] = ()  # any of these; empty: every status
    since: float | None = None  # last changed at or after this time (seconds since the epoch)
    batch: str | None = None
    video: str | None = None
    group: str | None = None
    kind: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None  # from the previous page's next_cursor

    def __post_init__(self) -> None:
        odd = [s for s in self.status if s not in STATUSES]
        if odd:
            raise JobFilterError(f"status {', '.join(map(repr, odd))} is not one of {', '.join(STATUSES)}")
        if self.kind is not None and self.kind not in KINDS:
            raise JobFilterError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise JobFilterError(f"limit {self.limit} must be 1..{MAX_LIMIT}")
        for name in ("batch", "video", "group", "cursor"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_FILTER_CHARS:
                raise JobFilterError(f"{name} is {len(value)} characters long; at most {MAX_FILTER_CHARS}")
        if self.cursor is not None:
            decode_cursor(self.cursor)


@dataclass(frozen=True)
class JobPage:
    jobs: list[dict[str, Any]]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "next_cursor": self.next_cursor}


def parse_since(text: str, now: float) -> float:
    """``24h``, ``90m``, ``7d``, ``30s``, ``2w`` ago, or an ISO 8601 time
    (UTC unless it says otherwise), as seconds since the epoch."""
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _SECONDS[match.group(2)]
    moment = instant(text)
    if moment is None:
        raise JobFilterError(f"since {text!r}: give a duration (30s, 90m, 24h, 7d, 2w) or an ISO 8601 time "
                             "(2026-01-31T12:00:00Z)")
    return moment.timestamp()


def encode_cursor(job: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([job["updated_ts"], job["job_id"]])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        ts, job_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(ts, int | float) and not isinstance(ts, bool) and isinstance(job_id, str):
            return float(ts), job_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        pass
    raise JobFilterError(f"cursor {cursor[:40]!r} is not one this service gave out (pass next_cursor back as is)")


def where_clause(f: JobFilter) -> tuple[str, list[Any]]:
    """The WHERE clause (with "?" placeholders) and its parameters: pure, so tested without a database."""
    conditions: list[str] = []
    params: list[Any] = []
    if f.status:
        conditions.append(f"status IN ({', '.join('?' * len(f.status))})")
        params += f.status
    if f.since is not None:
        conditions.append("updated_ts >= ?")
        params.append(f.since)
    for column, value in (("batch_id", f.batch), ("video_id", f.video), ("group_id", f.group), ("kind", f.kind)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if f.cursor is not None:
        ts, job_id = decode_cursor(f.cursor)
        conditions.append("(updated_ts < ? OR (updated_ts = ? AND job_id < ?))")
        params += [ts, ts, job_id]
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def select_jobs(store: SqlStore, f: JobFilter) -> JobPage:
    """One page of the jobs ``f`` selects, newest change first."""
    where, params = where_clause(f)
    sql = (f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs{where} ORDER BY updated_ts DESC, job_id DESC "
           f"LIMIT {f.limit + 1}")
    jobs = store.dicts(sql, params) if params else store.dicts(sql)
    for job in jobs:
        job["cache_hit"] = bool(job["cache_hit"])
    more = len(jobs) > f.limit
    jobs = jobs[:f.limit]
    return JobPage(jobs, encode_cursor(jobs[-1]) if more else None)
