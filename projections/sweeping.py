"""Pure selection for the sweeper: which jobs look abandoned, which videos
have too much pending."""

from __future__ import annotations

from collections.abc import Iterable

from regen.projections.instants import epoch
from regen.projections.state import JobState, VideoState

UNFINISHED = frozenset({"pending", "running", "retrying"})


def stuck_jobs(jobs: Iterable[JobState], now: float, stuck_after: float) -> list[JobState]:
    """Unfinished jobs with no progress for ``stuck_after`` seconds.

    Running: the worker died mid-render and no redelivery brings the job
    back. Pending or retrying: the lane or retry message is gone — seen in
    the SIGKILL bounce test, where a fresh consumer group committed past two
    lane messages that were never rendered. Sending a job again is always
    safe: the renderer skips a job that is already done.
    """
    stuck = []
    for job in jobs:
        since = epoch(stuck_since(job))
        if job.status in UNFINISHED and since is not None and now - since > stuck_after:
            stuck.append(job)
    return stuck


def stuck_since(job: JobState) -> str | None:
    """When a job last moved: a running job since it started, any other since its last change."""
    return job.updated_at if job.status != "running" else (job.started_at or job.updated_at)


def videos_over(videos: Iterable[VideoState], threshold: int) -> list[VideoState]:
    return [v for v in videos if v.pending > threshold]
