"""The sweeper: re-sends jobs that made no progress for ``stuck_after`` (left
running by a worker that died, or whose lane message was lost), tells each
such episode as a Stuck event on ``alerts`` and counts them in the
``regen_stuck_jobs`` gauge (an operator's alert rule needs a number, not a
log line), and warns about videos with too much pending work.

Every worker sweeps the table partitions it holds. (A leader-only timer, as
first designed, would see only the leader's partitions: tables are sharded.)
The sweeper cannot write tables from a timer; it sends the job again and the
render agent records the new attempt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from regen.agents.context import WorkerContext
from regen.agents.job_lanes import lane_topic
from regen.agents.timers import guarded_timer
from regen.kinds import KINDS
from regen.projections.instants import epoch
from regen.projections.state import JobState, VideoState
from regen.projections.sweeping import stuck_jobs, stuck_since, videos_over
from regen.schemas.events import Stuck
from regen.schemas.jobs import Lane
from regen.streams.codec import now_iso
from regen.streams.topics import ALERTS

log = logging.getLogger(__name__)


@dataclass
class SweeperMemory:
    """What the sweeper remembers between rounds (its own, in memory)."""

    resent: dict[str, float] = field(default_factory=dict)  # job_id -> when it was sent again
    told: dict[str, str | None] = field(default_factory=dict)  # job_id -> the time it is stuck since, told
    warned_videos: set[str] = field(default_factory=set)  # over the pending threshold, already said


def register_sweeper(ctx: WorkerContext) -> None:
    # Often enough to notice a stuck job soon after stuck_after, rarely
    # enough that scanning the tables costs nothing.
    interval = max(1.0, min(30.0, ctx.settings.stuck_after / 4))
    memory = SweeperMemory()

    @guarded_timer(ctx, interval, "sweeper")
    async def sweeper():
        if ctx.app.tables.recovery.completed.is_set():
            await sweep(ctx, memory)


async def sweep(ctx: WorkerContext, memory: SweeperMemory) -> None:
    now = time.time()
    # from_dict reads a malformed (forged) row as None: skipped
    jobs = (job for job in (JobState.from_dict(v) for v in ctx.tables.jobs.values()) if job is not None)
    stuck = stuck_jobs(jobs, now, ctx.settings.stuck_after)
    ctx.metrics.stuck_jobs.set(len(stuck))
    await _tell_stuck(ctx, memory, stuck, now)
    for job in stuck:
        last = memory.resent.get(job.job_id)
        if last is not None and now - last < ctx.settings.stuck_after:
            continue
        again = _rebuild(ctx, job)
        if again is None:
            continue
        memory.resent[job.job_id] = now
        log.warning("job %s has been %s since %s: sending it again", job.job_id, job.status,
                    job.started_at if job.status == "running" else job.updated_at)
        await ctx.emit(lane_topic(again), again)
    videos = (video for video in (VideoState.from_dict(v) for v in ctx.tables.videos.values()) if video is not None)
    over = {v.video_id: v.pending for v in videos_over(videos, ctx.settings.pending_warn_threshold)}
    for video_id, pending in over.items():
        if video_id not in memory.warned_videos:
            log.warning("video %s has %d annotations pending (threshold %d)", video_id, pending,
                        ctx.settings.pending_warn_threshold)
    memory.warned_videos = set(over)


async def _tell_stuck(ctx: WorkerContext, memory: SweeperMemory, stuck: list[JobState], now: float) -> None:
    """One Stuck event per episode: a job stuck since the same moment is
    told once; once it moves and sticks again, it is told again."""
    told = {}
    for job in stuck:
        since = stuck_since(job)
        told[job.job_id] = since
        if memory.told.get(job.job_id, "") == since:
            continue
        stuck_for = now - (epoch(since) or now)
        await ctx.emit(ALERTS, Stuck(subject="job", id=job.job_id, status=job.status, since=since,
                                     stuck_for_s=round(stuck_for, 1), at=now_iso()))
    memory.told = told


def _rebuild(ctx: WorkerContext, job: JobState):
    """The same job (same id, revision and lane) from the current projections."""
    kind = KINDS.get(job.target_kind)
    if kind is None:
        return None
    state = kind.read(ctx.tables.of(kind.table).get(job.target_id))
    if state is None or kind.revision(state) != job.revision:
        return None
    lane: Lane = "interactive" if job.lane == "interactive" else "background"
    return kind.plan(state, job.variant, lane, now_iso(), request_ids=job.request_ids)
