"""What one Kafka record becomes in the SQL read model: pure, no database.

Two sources (agents/sql_projector.py reads them):

- the changelogs of the Faust tables (jobs, batches, groups and every kind's
  table of targets). A changelog record is the exact current value of one
  key of a projection, so mirroring them (upsert per record, delete on a
  tombstone) makes the SQL rows equal the Faust projections by construction;
- ``images.results``: every ImageGenerated and ImageFailed, kept as history
  (one row per event, keyed by its ``ce_id``), which the tables do not keep:
  a job's row holds only its last attempt's outcome.

Every value is read through its record's typed ``from_dict`` (or the event
codec): a malformed record gives ``Malformed`` with the reason, never an
exception, and is counted and skipped by the projector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from regen.kinds import KINDS
from regen.kinds.base import Kind
from regen.projections.groups import GroupState
from regen.projections.instants import epoch
from regen.projections.progress import BatchState
from regen.projections.state import JobState
from regen.schemas.events import ImageFailed, ImageGenerated
from regen.streams.codec import decode
from regen.streams.exceptions import PoisonEvent
from regen.streams.topics import IMAGES_RESULTS

# A changelog key longer than any id regen makes is forged: never a row.
MAX_KEY_CHARS = 1000
# Faust tables mirrored into SQL besides the kinds' tables of targets.
MIRRORED_TABLES = ("jobs", "batches", "groups")


@dataclass(frozen=True)
class Upsert:
    """Insert the row, or replace every column of the row with the same key."""

    table: str
    row: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    table: str
    key: dict[str, Any]


@dataclass(frozen=True)
class Append:
    """A history row: inserted once, a second copy (same key) is ignored."""

    table: str
    row: dict[str, Any]


@dataclass(frozen=True)
class TargetScope:
    """A target's batch, video and group changed: its jobs' copies follow."""

    target_table: str
    target_id: str
    batch_id: str | None
    video_id: str | None
    group_id: str | None


Op = Upsert | Delete | Append | TargetScope


@dataclass(frozen=True)
class Malformed:
    reason: str


# Primary keys, which upserts conflict on and deletes match.
KEYS: dict[str, tuple[str, ...]] = {
    "jobs": ("job_id",), "targets": ("target_table", "target_id"), "batches": ("batch_id",),
    "groups": ("group_id",), "results": ("ce_id",), "failures": ("ce_id",),
}


def target_tables() -> dict[str, Kind]:
    """Each kind's table of targets, with the (first) kind that names it."""
    tables: dict[str, Kind] = {}
    for kind in KINDS.values():
        tables.setdefault(kind.table, kind)
    return tables


def changelog_ops(table: str, key: bytes | None, value: bytes | None) -> list[Op] | Malformed:
    """One changelog record of Faust table ``table`` as row operations."""
    name = _key(key)
    if isinstance(name, Malformed):
        return name
    if value is None:  # a tombstone: the key left the projection
        return _deleted(table, name)
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        return Malformed(f"{table}/{name[:80]}: not JSON ({e})")
    if table == "jobs":
        job = JobState.from_dict(data)
        if job is None or job.job_id != name:
            return Malformed(f"jobs/{name[:80]}: not a job row of that id")
        return [Upsert("jobs", job_row(job))]
    if table == "batches":
        batch = BatchState.from_dict(data)
        if batch is None or batch.batch_id != name:
            return Malformed(f"batches/{name[:80]}: not a batch row of that id")
        return [Upsert("batches", batch_row(batch))]
    if table == "groups":
        group = GroupState.from_dict(data)
        if group is None or group.group_id != name:
            return Malformed(f"groups/{name[:80]}: not a group row of that id")
        return [Upsert("groups", group_row(group))]
    kind = target_tables().get(table)
    if kind is None:
        return Malformed(f"{table}: not a table the read model mirrors")
    state = kind.read(data)
    if state is None:
        return Malformed(f"{table}/{name[:80]}: not a {kind.noun} row")
    row = target_row(kind, name, state, data)
    return [Upsert("targets", row),
            TargetScope(table, name, row["batch_id"], row["video_id"], row["group_id"])]


def _key(key: bytes | None) -> str | Malformed:
    if not key:
        return Malformed("a changelog record without a key")
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return Malformed("a changelog key that is not UTF-8")
    if text.startswith('"'):  # Faust writes some changelog keys as JSON strings
        try:
            text = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Malformed(f"changelog key {text[:80]!r} is neither raw nor a JSON string")
        if not isinstance(text, str):
            return Malformed("a changelog key that is JSON but not a string")
    if not text or len(text) > MAX_KEY_CHARS:
        return Malformed(f"changelog key of {len(text)} characters (1..{MAX_KEY_CHARS})")
    return text


def _deleted(table: str, name: str) -> list[Op] | Malformed:
    if table in MIRRORED_TABLES:
        return [Delete(table, {KEYS[table][0]: name})]
    if table in target_tables():
        return [Delete("targets", {"target_table": table, "target_id": name}),
                TargetScope(table, name, None, None, None)]
    return Malformed(f"{table}: not a table the read model mirrors")


# --- rows ----------------------------------------------------------------------

def job_row(job: JobState) -> dict[str, Any]:
    """The jobs row, less the target's batch, video and group (the store
    copies those from the target's row, whichever arrives first)."""
    output = job.output or {}
    kind = KINDS.get(job.target_kind)
    return {
        "job_id": job.job_id, "kind": job.target_kind, "target_id": job.target_id,
        "target_table": kind.table if kind is not None else job.target_kind,
        "variant": job.variant, "revision": job.revision, "lane": job.lane, "status": job.status,
        "attempts": job.attempts, "error": job.error, "error_code": job.error_code, "reason": job.reason,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        # Numbers for filtering and ordering by time; 0 for an unparsable
        # time keeps the paging order total.
        "created_ts": epoch(job.created_at) or 0.0, "updated_ts": epoch(job.updated_at) or 0.0,
        "finished_ts": epoch(job.finished_at),
        "render_ms": job.render_ms, "cache_hit": job.cache_hit,
        "output_uri": output.get("uri"), "output_sha256": output.get("sha256"), "output_bytes": output.get("bytes"),
        "output_width": output.get("width"), "output_height": output.get("height"),
        "request_ids": _json(list(job.request_ids)),
    }


# Columns of a jobs row the store fills from the target's row.
JOB_SCOPE_COLUMNS = ("batch_id", "video_id", "group_id")


def job_state(row: dict[str, Any]) -> dict[str, Any]:
    """A jobs row back as the JobState dict the Faust table holds: how the
    tests and `regen sql-compare` check the read model against the tables."""
    output = None
    if row.get("output_uri") is not None:
        output = {"uri": row["output_uri"], "sha256": row["output_sha256"], "width": row["output_width"],
                  "height": row["output_height"], "bytes": row["output_bytes"]}
    return JobState(
        job_id=row["job_id"], target_kind=row["kind"], target_id=row["target_id"], variant=row["variant"],
        revision=row["revision"], lane=row["lane"], status=row["status"], created_at=row["created_at"],
        updated_at=row["updated_at"], attempts=row["attempts"], started_at=row["started_at"],
        finished_at=row["finished_at"], error=row["error"], error_code=row["error_code"], reason=row["reason"],
        output=output, render_ms=row["render_ms"], cache_hit=bool(row["cache_hit"]),
        request_ids=tuple(orjson.loads(row["request_ids"] or "[]")),
    ).to_dict()


def target_row(kind: Kind, target_id: str, state: Any, data: dict) -> dict[str, Any]:
    scope = kind.scope(state)
    return {"target_table": kind.table, "target_id": target_id, "kind": kind.name,
            "batch_id": scope.get("batch"), "video_id": scope.get("video"),
            "group_id": kind.group(state) or scope.get("group"),
            "revision": kind.revision(state), "state": _json(data)}


def batch_row(batch: BatchState) -> dict[str, Any]:
    shards = batch.shards.values()
    return {"batch_id": batch.batch_id, "total": sum(s["total"] for s in shards),
            "completed": sum(s["completed"] for s in shards), "failed": sum(s["failed"] for s in shards),
            "pending": sum(s["pending"] for s in shards), "first_ts": batch.first_at, "updated_ts": batch.updated_at,
            "state": _json(batch.to_dict())}


def group_row(group: GroupState) -> dict[str, Any]:
    counts = group.counts()
    return {"group_id": group.group_id, "label": group.label, "status": group.status, **counts,
            "started_at": group.started_at, "finished_at": group.finished_at, "updated_at": group.updated_at,
            "updated_ts": epoch(group.updated_at), "state": _json(group.to_dict())}


# --- history from images.results --------------------------------------------------

def result_ops(value: bytes | None, headers: Sequence[tuple[str, bytes]], coordinates: str) -> list[Op] | Malformed:
    """One images.results record as a history row. ``coordinates``
    (topic/partition/offset) stands in for a missing ``ce_id``: still one
    row per record, however often it is read."""
    try:
        event, ce_id = decode(value, headers, IMAGES_RESULTS.event_types, validate=False)
    except PoisonEvent as e:
        return Malformed(f"{coordinates}: {e}")
    ce_id = ce_id if ce_id and len(ce_id) <= MAX_KEY_CHARS else coordinates
    common = {"ce_id": ce_id, "job_id": event.job_id, "kind": event.target.kind,  # type: ignore[attr-defined]
              "target_id": event.target.id, "variant": event.variant,  # type: ignore[attr-defined]
              "revision": event.revision, "attempts": event.attempts,  # type: ignore[attr-defined]
              "request_ids": _json(list(event.request_ids))}  # type: ignore[attr-defined]
    if isinstance(event, ImageGenerated):
        return [Append("results", {**common, "generated_at": event.generated_at,
                                   "generated_ts": epoch(event.generated_at), "render_ms": event.render_ms,
                                   "cache_hit": event.cache_hit, "uri": event.uri, "sha256": event.sha256,
                                   "bytes": event.bytes, "width": event.width, "height": event.height})]
    if isinstance(event, ImageFailed):
        return [Append("failures", {**common, "failed_at": event.failed_at, "failed_ts": epoch(event.failed_at),
                                    "reason": event.reason, "error_code": event.error_code, "error": event.error})]
    return Malformed(f"{coordinates}: {type(event).__name__} is not a completion")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
