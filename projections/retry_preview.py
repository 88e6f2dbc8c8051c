"""What `regen retry --failed --dry-run` lists: the failed jobs a RetryFailed
command would pick, read from the SQL read model (projections/sql_jobs.py).

The workers decide from their own tables (projections/control.py
``retry_matches``); this reads the read model, which mirrors those tables'
changelogs, so the two agree up to the read model's lag (well under a
second behind a live worker). The same rules, on rows:

1. status ``failed`` and the filters the read model indexes (batch, video,
   group, kind) — ``select_jobs``, page by page;
2. the job is of its target's current revision (a failure of a revision
   since replaced is not retried: the new revision has a job of its own);
3. ``--since``: it finished (failed) at or after that time;
4. oldest failure first, at most ``--limit`` (the workers split a limit over
   the partitions, so they may retry fewer when failures are unevenly spread).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from regen.projections.instants import instant
from regen.projections.sql_jobs import MAX_LIMIT, JobFilter, select_jobs
from regen.projections.sql_store import SqlStore
from regen.schemas.events import RetryFailed


def failed_jobs(store: SqlStore, command: RetryFailed) -> Iterator[dict[str, Any]]:
    """Step 1: every failed job the indexed filters select, all pages."""
    cursor = None
    while True:
        page = select_jobs(store, JobFilter(status=("failed",), batch=command.batch_id, video=command.video_id,
                                            group=command.group_id, kind=command.kind, limit=MAX_LIMIT,
                                            cursor=cursor))
        yield from page.jobs
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def current_revisions(store: SqlStore, jobs: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """(kind, target id) -> the target's current revision, for these jobs' targets."""
    wanted = {(job["kind"], job["target_id"]) for job in jobs}
    revisions: dict[tuple[str, str], int] = {}
    for kind in sorted({k for k, _ in wanted}):
        for row in store.dicts("SELECT target_id, revision FROM targets WHERE kind = ?", [kind]):
            if (kind, row["target_id"]) in wanted:
                revisions[(kind, row["target_id"])] = int(row["revision"])
    return revisions


def select_for_retry(jobs: list[dict[str, Any]], revisions: dict[tuple[str, str], int],
                     command: RetryFailed) -> list[dict[str, Any]]:
    """Steps 2-4, pure."""
    since = instant(command.since) if command.since is not None else None
    picked = []
    for job in jobs:
        if revisions.get((job["kind"], job["target_id"])) != job["revision"]:
            continue
        finished = instant(job.get("finished_at"))
        if since is not None and (finished is None or finished < since):
            continue
        picked.append(job)
    latest = datetime.max.replace(tzinfo=UTC)
    picked.sort(key=lambda j: (instant(j.get("finished_at")) or latest, j["job_id"]))
    return picked if command.limit is None else picked[:command.limit]


def retry_preview(store: SqlStore, command: RetryFailed) -> list[dict[str, Any]]:
    jobs = list(failed_jobs(store, command))
    return select_for_retry(jobs, current_revisions(store, jobs), command)
