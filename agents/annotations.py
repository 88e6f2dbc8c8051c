"""Annotations: boundary edits -> dirty state -> one composite once idle.

- ``boundary-intake`` folds BoundaryChanged into the annotations table and
  notes the annotation as a candidate for rendering;
- the ``idle-scheduler`` timer sends a composite job for each dirty
  annotation nobody has edited for ``idle_delay`` seconds: a hundred quick
  edits give one render, of the last revision;
- ``video-pending`` folds dirty-flag flips, re-keyed by video, into the
  per-video set of stale annotations, whose size is the pending count.

Candidates live in memory (a timer cannot write a table: Faust attributes
table writes to the event being processed). After a restart they are
rebuilt from the recovered table, so nothing dirty is forgotten; at worst a
job is sent twice, and the renderer skips one that is already done.
"""

from __future__ import annotations

import logging
import time

from regen.agents.context import WorkerContext
from regen.agents.handling import register_event_agent
from regen.agents.timers import guarded_timer
from regen.projections import folds
from regen.projections.planning import idle_long_enough, plan_composite
from regen.projections.state import AnnotationState, JobState, VideoState
from regen.schemas.events import BoundaryChanged
from regen.schemas.jobs import DirtyFlag
from regen.streams.codec import now_iso
from regen.streams.topics import ANNOTATIONS_DIRTY, BOUNDARIES_CHANGED, RENDER_BACKGROUND

log = logging.getLogger(__name__)


def register_annotations(ctx: WorkerContext) -> None:
    register_event_agent(ctx, BOUNDARIES_CHANGED, "boundary-intake", on_boundary_changed)
    register_event_agent(ctx, ANNOTATIONS_DIRTY, "video-pending", on_dirty_flag)

    # Check often relative to the delay, so a render starts within a quarter
    # of idle_delay after it is due; never more than 4 times a second.
    interval = min(1.0, max(0.25, ctx.settings.idle_delay / 4))

    @guarded_timer(ctx, interval, "idle-scheduler")
    async def idle_scheduler():
        await schedule_idle(ctx)


async def on_boundary_changed(ctx: WorkerContext, event: BoundaryChanged) -> None:
    table = ctx.tables.annotations
    before = AnnotationState.from_dict(table.get(event.annotation_id))
    after = folds.boundary_changed(before, event, now_iso())
    if after is before:
        log.debug("annotation %s revision %d is not newer than %d: ignored", event.annotation_id,
                  event.revision, before.wanted_revision if before else 0)
        return
    table[event.annotation_id] = after.to_dict()
    if after.dirty:
        ctx.idle_candidates[event.annotation_id] = (after.wanted_revision, time.monotonic())
    flag = folds.dirty_flag_changed(before, after)
    if flag is not None:
        await ctx.emit(ANNOTATIONS_DIRTY, flag)


async def on_dirty_flag(ctx: WorkerContext, flag: DirtyFlag) -> None:
    table = ctx.tables.videos
    before = VideoState.from_dict(table.get(flag.video_id))
    after = folds.video_flagged(before, flag, time.time())
    if after is not before:
        table[flag.video_id] = after.to_dict()


async def schedule_idle(ctx: WorkerContext) -> None:
    if not ctx.app.tables.recovery.completed.is_set():
        return
    if not ctx.candidates_loaded:
        _load_candidates(ctx)
    now = time.monotonic()
    due = [a for a, (_, changed) in ctx.idle_candidates.items()
           if idle_long_enough(changed, now, ctx.settings.idle_delay)]
    for annotation_id in due:
        revision, _ = ctx.idle_candidates.pop(annotation_id)
        annotation = AnnotationState.from_dict(ctx.tables.annotations.get(annotation_id))
        if annotation is None or not annotation.dirty or annotation.wanted_revision != revision:
            continue  # rendered meanwhile, or a newer edit restarted its idle clock
        if annotation.failed_revision >= annotation.wanted_revision:
            continue
        job = plan_composite(annotation, ctx.settings.composite_variant, "background", now_iso())
        existing = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
        if existing is not None and existing.status != "superseded":
            continue  # a request got there first: it is queued, rendering or done
        await ctx.emit(RENDER_BACKGROUND, job)
        log.info("annotation %s idle for %.1f s: composite of revision %d queued", annotation_id,
                 ctx.settings.idle_delay, revision)


def _load_candidates(ctx: WorkerContext) -> None:
    """After start or recovery: every dirty annotation this worker holds is due."""
    overdue = time.monotonic() - ctx.settings.idle_delay
    for annotation_id, value in ctx.tables.annotations.items():
        annotation = AnnotationState.from_dict(value)
        if annotation is not None and annotation.dirty and annotation_id not in ctx.idle_candidates:
            ctx.idle_candidates[annotation_id] = (annotation.wanted_revision, overdue)
    ctx.candidates_loaded = True
