"""Intake: fold source events into projections and decide what to render.

A source event (AssetImported, BoundaryChanged, ...) -> the state of every
target it changes, in its kind's table; for kinds rendered "at once", jobs
for their standing variants; for kinds rendered "when idle", a note for the
idle scheduler (agents/idle.py). ImageRequested -> an answer at once from a
finished job (its intact image, a cache hit, or its failure), a join onto
the job in flight, or an interactive job for the target's current revision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from regen.agents.context import WorkerContext
from regen.agents.groups import announce_members
from regen.agents.handling import as_current_event, handle_message, register_event_agent
from regen.agents.job_lanes import lane_topic
from regen.agents.lanes import LaneEvent, PartitionFollower, start_followers
from regen.agents.lifecycle import announce_references
from regen.imaging.store import output_problem
from regen.imaging.variants import from_another_definition
from regen.kinds import KINDS, kinds_following
from regen.kinds.base import Kind
from regen.projections import folds
from regen.projections.planning import cached_output, stored_outcome
from regen.projections.state import JobState
from regen.schemas.events import Event, ImageFailed, ImageGenerated, ImageRequested
from regen.schemas.jobs import RenderJob
from regen.streams.codec import now_iso
from regen.streams.topics import (
    IMAGES_REQUESTED,
    IMAGES_RESULTS,
    TOPIC_FOR_EVENT,
)

log = logging.getLogger(__name__)

# Intake handlers are quick table updates; the sends they make are what
# costs, so they are batched (see register_event_agent).
INTAKE_BATCH = 200


def register_intake(ctx: WorkerContext, bootstrap: str) -> None:
    source_topics = {TOPIC_FOR_EVENT[event_type] for kind in KINDS.values() for event_type in kind.source_events}
    for spec in sorted(source_topics, key=lambda s: s.suffix):
        register_event_agent(ctx, spec, f"{spec.suffix.split('.')[0]}-intake", on_source_event,
                             batch=INTAKE_BATCH)
    # Requests have a consumer of their own (agents/lanes.py): a person's
    # request never waits in Faust's loop behind a burst of imports.
    start_followers(ctx, [PartitionFollower(ctx, IMAGES_REQUESTED, bootstrap, take_requests, name="request-intake",
                                            batch_size=INTAKE_BATCH)])


async def take_requests(ctx: WorkerContext, events: list[LaneEvent]) -> None:
    """A batch of requests, each handled under its own record (table rows
    land in its partition), their answers and jobs sent together."""
    async with ctx.emitting_together():
        for event in events:
            with as_current_event(event):
                await handle_message(ctx, event.message, IMAGES_REQUESTED.event_types, on_image_requested)


async def on_source_event(ctx: WorkerContext, event: Event) -> None:
    for kind in kinds_following(event):
        await _fold_source(ctx, kind, event)


async def _fold_source(ctx: WorkerContext, kind: Kind, event: Event) -> None:
    at = now_iso()
    target_id = kind.source_key(event)
    before = kind.read(ctx.tables.of(kind.table).get(target_id))
    after = kind.fold_source(before, event, at)
    if kind.schedule == "when idle":
        if after is before:
            log.debug("%s %s: %s changes nothing (not newer)", kind.noun, target_id, type(event).__name__)
            return
        ctx.put_state(kind, target_id, after)
        if kind.needs_render(after, ctx.settings):
            ctx.idle.note(kind.name, target_id, kind.revision(after), time.monotonic())
    else:
        # Even an unchanged state (a redelivered event) goes through the
        # jobs: one still pending is sent again, since a crash between the
        # table write and the send is what this redelivery recovers from.
        after, jobs = _queue_standing(ctx, kind, after, at)
        ctx.put_state(kind, target_id, after)
        for job in jobs:
            await ctx.emit(lane_topic(job), job)
        log.info("%s %s revision %d: %d %s job(s) queued", kind.noun, target_id, kind.revision(after),
                 len(jobs), kind.name)
    for announcement in kind.announcements(before, after):
        await ctx.emit(TOPIC_FOR_EVENT[type(announcement)], announcement)
    await announce_members(ctx, kind, target_id, before, after)
    await announce_references(ctx, kind, target_id, before, after, repeat_unchanged=True)


def _queue_standing(ctx: WorkerContext, kind: Kind, state, at: str) -> tuple[object, list[RenderJob]]:
    jobs: list[RenderJob] = []
    for variant in kind.standing_variants(ctx.settings):
        job = kind.plan(state, variant, "background", at)
        current = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
        if current is not None and current.terminal:
            continue  # a redelivered event: this revision was rendered already
        ctx.tables.jobs[job.job_id] = folds.job_queued(current, job, at).to_dict()
        state = kind.queued(state, job, at)
        jobs.append(job)
    return state, jobs


async def on_image_requested(ctx: WorkerContext, event: ImageRequested, rechecks: int = 2) -> None:
    at = now_iso()
    target = event.target

    async def refuse(code: str, message: str) -> None:
        log.info("request %s for %s %s refused: %s", event.request_id, target, event.variant, message)
        await ctx.emit(IMAGES_RESULTS, ImageFailed(
            target=target, variant=event.variant, revision=0, job_id="", reason="permanent",
            error_code=code, error=message, attempts=0, failed_at=at, request_ids=(event.request_id,)))

    if event.variant not in ctx.settings.variants:
        return await refuse("unknown_variant", f"variant {event.variant!r} is not configured "
                                               f"(configured: {', '.join(ctx.settings.variants)})")
    kind = KINDS.get(target.kind)
    state = kind.read(ctx.tables.of(kind.table).get(target.id)) if kind is not None else None
    if kind is None or state is None:
        what = f"{kind.noun} {target.id!r} {kind.never_known}" if kind is not None else \
            f"no kind of image is named {target.kind!r} (known: {', '.join(KINDS)})"
        return await refuse("unknown_target", what)
    # The current revision (a dirty annotation's wanted one: a request does
    # not wait for the idle delay).
    job = kind.plan(state, event.variant, event.priority, at, request_ids=(event.request_id,), force=event.force)

    current = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
    if not event.force and current is not None and current.terminal:
        answer = await _answer_from_store(ctx, current, event, at)
        # The file was checked off the event loop: if the job moved meanwhile
        # (a render finished or began), decide again from where it is now.
        if JobState.from_dict(ctx.tables.jobs.get(job.job_id)) != current and rechecks > 0:
            return await on_image_requested(ctx, event, rechecks - 1)
        if answer is not None:
            ctx.metrics.requests_answered.labels("cache_hit" if isinstance(answer, ImageGenerated) else "failed").inc()
            await ctx.emit(IMAGES_RESULTS, answer)
            return
        job = replace(job, force=True)  # the file is gone or changed: render it again
    joins = current is not None and not current.terminal
    ctx.tables.jobs[job.job_id] = folds.job_queued(current, job, at).to_dict()
    if joins and not event.force:
        log.info("request %s joins job %s (%s)", event.request_id, job.job_id, current.status)
        return  # the job in flight names this request_id when it completes
    ctx.put_state(kind, target.id, kind.queued(state, job, at))
    await ctx.emit(lane_topic(job), job)


async def _answer_from_store(ctx: WorkerContext, job: JobState, event: ImageRequested, at: str):
    """A finished job answers the request at once: its image if the file is
    intact (read and hashed in a thread: never file I/O on the event loop),
    its failure if it failed. None: render it again."""
    if job.status == "completed":
        if job.output and from_another_definition(job.output["uri"], ctx.settings.variant(job.variant)):
            log.info("request %s: %s was rendered from an earlier definition of preset %s; rendering again",
                     event.request_id, job.job_id, job.variant)
            return None
        check = partial(output_problem, Path(ctx.settings.image_store))
        if await asyncio.to_thread(cached_output, job, check) is None:
            log.info("request %s: output of %s is missing or changed; rendering again", event.request_id,
                     job.job_id)
            return None
        return stored_outcome(job, request_ids=(event.request_id,), at=at, cache_hit=True)
    if job.status == "failed":
        return stored_outcome(job, request_ids=(event.request_id,), at=at, cache_hit=False)
    return None  # superseded: cannot happen for the current revision, render to be safe
