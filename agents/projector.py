"""Projector: folds completions back into the jobs table and their targets' state."""

from __future__ import annotations

import logging

from regen.agents.context import WorkerContext
from regen.agents.groups import announce_finished
from regen.agents.handling import register_event_agent
from regen.agents.lifecycle import announce_references
from regen.kinds import KINDS
from regen.projections import folds
from regen.projections.state import JobState
from regen.schemas.events import ImageFailed, ImageGenerated
from regen.streams.topics import IMAGES_RESULTS, TOPIC_FOR_EVENT

log = logging.getLogger(__name__)


def register_projector(ctx: WorkerContext) -> None:
    register_event_agent(ctx, IMAGES_RESULTS, "projector", on_completion)


async def on_completion(ctx: WorkerContext, event: ImageGenerated | ImageFailed) -> None:
    if not event.job_id:
        _tell_hooks(ctx, event)
        return  # a refused request (unknown target or variant): no job to fold
    jobs = ctx.tables.jobs
    job = JobState.from_dict(jobs.get(event.job_id))
    folded = folds.job_generated(job, event) if isinstance(event, ImageGenerated) else folds.job_failed(job, event)
    if folded != job:  # the render agent has usually folded it already
        jobs[event.job_id] = folded.to_dict()
    await _fold_into_target(ctx, event)
    _note_activity(ctx, event)
    _tell_hooks(ctx, event)
    if isinstance(event, ImageGenerated) and not event.cache_hit:
        log.info("generated %s %s -> %s (%dx%d, %.0f ms)", event.target, event.variant, event.uri,
                 event.width, event.height, event.render_ms)


async def _fold_into_target(ctx: WorkerContext, event: ImageGenerated | ImageFailed) -> None:
    """The completion into its target's state, and what that change announces."""
    kind = KINDS[event.target.kind]
    before = kind.read(ctx.tables.of(kind.table).get(event.target.id))
    if before is None:
        return
    after = kind.completed(before, event)
    if after != before:
        ctx.put_state(kind, event.target.id, after)
        for announcement in kind.announcements(before, after):
            await ctx.emit(TOPIC_FOR_EVENT[type(announcement)], announcement)
    # After the write (nothing may await between reading a state and writing
    # it back), and even when nothing changed: a redelivered completion says
    # its file's reference again, in case a crash lost it.
    await announce_references(ctx, kind, event.target.id, before, after, completion=event)
    # Even when the state did not change (a redelivered completion): the
    # group ignores what it knows, and must not miss a member's finish.
    await announce_finished(ctx, kind, after, event)


def _note_activity(ctx: WorkerContext, event: ImageGenerated | ImageFailed) -> None:
    if isinstance(event, ImageFailed):
        ctx.activity.failed(str(event.target), event.variant, event.reason, event.error, event.failed_at)
    elif not event.cache_hit:
        ctx.activity.generated(str(event.target), event.variant, event.uri, event.width, event.height,
                               event.generated_at)


def _tell_hooks(ctx: WorkerContext, event: ImageGenerated | ImageFailed) -> None:
    """After the fold, so a hook that reads the tables sees the completion."""
    for hook in ctx.completion_hooks:
        try:
            hook(event)
        except Exception:  # noqa: BLE001 - a hook's bug must not dead-letter a completion that folded fine
            log.exception("completion hook %r failed on %s %s", hook, event.target, event.variant)
