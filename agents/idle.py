"""The idle scheduler: one render once a target has been left alone.

Kinds rendered "when idle" (composites: a drag sends dozens of boundary
edits a second, and only the last one matters) are noted by intake as
candidates with the time of their last change; this timer sends a
background job for each candidate nobody has changed for ``idle_delay``
seconds, for the kind's standing variants: a hundred quick edits give one
render, of the last revision.

Candidates live in memory (a timer cannot write a table: Faust attributes
table writes to the event being processed). After a restart they are
rebuilt from the recovered tables, so nothing waiting is forgotten; at worst
a job is sent twice, and the renderer skips one that is already done.
"""

from __future__ import annotations

import logging
import time

from regen.agents.context import WorkerContext
from regen.agents.job_lanes import lane_topic
from regen.agents.timers import guarded_timer
from regen.kinds import KINDS
from regen.projections.state import JobState
from regen.streams.codec import now_iso

log = logging.getLogger(__name__)


def register_idle_scheduler(ctx: WorkerContext) -> None:
    # Check often relative to the delay, so a render starts within a quarter
    # of idle_delay after it is due; never more than 4 times a second.
    interval = min(1.0, max(0.25, ctx.settings.idle_delay / 4))

    @guarded_timer(ctx, interval, "idle-scheduler")
    async def idle_scheduler():
        await schedule_idle(ctx)


async def schedule_idle(ctx: WorkerContext) -> None:
    if not ctx.app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        return
    if not ctx.idle.loaded:
        _load_candidates(ctx)
    for kind_name, target_id, revision in ctx.idle.take_due(time.monotonic(), ctx.settings.idle_delay):
        kind = KINDS[kind_name]
        state = kind.read(ctx.tables.of(kind.table).get(target_id))
        if state is None or not kind.needs_render(state, ctx.settings) or kind.revision(state) != revision:
            continue  # rendered meanwhile, or a newer change restarted its idle clock
        for variant in kind.standing_variants(ctx.settings):
            job = kind.plan(state, variant, "background", now_iso())
            existing = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
            if existing is not None and existing.status != "superseded":
                continue  # a request got there first: it is queued, rendering or done
            await ctx.emit(lane_topic(job), job)
            log.info("%s %s idle for %.1f s: %s of revision %d queued", kind.noun, target_id,
                     ctx.settings.idle_delay, kind.name, revision)


def _load_candidates(ctx: WorkerContext) -> None:
    """After start or recovery: every target this worker holds that waits
    for a render is due."""
    overdue = time.monotonic() - ctx.settings.idle_delay
    for kind in KINDS.values():
        if kind.schedule != "when idle":
            continue
        for target_id, value in ctx.tables.of(kind.table).items():
            state = kind.read(value)
            if state is not None and kind.needs_render(state, ctx.settings):
                ctx.idle.note_unless_known(kind.name, target_id, kind.revision(state), overdue)
    ctx.idle.loaded = True
