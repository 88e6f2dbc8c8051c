"""Intake: fold source events into projections and decide what to render.

AssetImported -> assets table, background jobs for the pre-generated variants.
ImageRequested -> an answer at once from a finished job (its intact image, a
cache hit, or its failure), a join onto the job in flight, or an interactive
job for the target's current revision.
"""

from __future__ import annotations

import asyncio

import logging
from dataclasses import replace
from pathlib import Path

from regen.agents.context import WorkerContext
from regen.agents.handling import register_event_agent
from regen.projections import folds
from regen.projections.planning import cached_output, plan_composite, plan_job, stored_outcome
from regen.projections.state import AnnotationState, AssetState, JobState
from regen.schemas.events import AssetImported, ImageFailed, ImageGenerated, ImageRequested
from regen.schemas.jobs import RenderJob
from regen.streams.codec import now_iso
from regen.streams.topics import ASSETS_IMPORTED, IMAGES_REQUESTED, IMAGES_RESULTS, RENDER_BACKGROUND, RENDER_INTERACTIVE

log = logging.getLogger(__name__)

# Intake handlers are quick table updates; the sends they make are what
# costs, so they are batched (see register_event_agent).
INTAKE_BATCH = 200


def register_intake(ctx: WorkerContext) -> None:
    register_event_agent(ctx, ASSETS_IMPORTED, "asset-intake", on_asset_imported, batch=INTAKE_BATCH)
    register_event_agent(ctx, IMAGES_REQUESTED, "request-intake", on_image_requested, batch=INTAKE_BATCH)


async def on_asset_imported(ctx: WorkerContext, event: AssetImported) -> None:
    at = now_iso()
    assets, jobs = ctx.tables.assets, ctx.tables.jobs
    asset = folds.asset_imported(AssetState.from_dict(assets.get(event.asset_id)), event)
    to_send: list[RenderJob] = []
    for variant in ctx.settings.pregenerate_variants:
        job = plan_job(asset, variant, "background", at)
        current = JobState.from_dict(jobs.get(job.job_id))
        if current is not None and current.terminal:
            continue  # a redelivered import: this revision was rendered already
        # A job still pending is sent again: after a crash between the table
        # write and the send, this redelivery is what gets it to the renderer.
        jobs[job.job_id] = folds.job_queued(current, job, at).to_dict()
        asset = folds.asset_variant_queued(asset, job, at)
        to_send.append(job)
    ctx.put_asset(asset)
    for job in to_send:
        await ctx.emit(RENDER_BACKGROUND, job)
    log.info("asset %s (%s) revision %d: %d thumbnail job(s) queued", event.asset_id, event.uri,
             asset.revision, len(to_send))


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
    job = _plan_requested(ctx, event, at)
    if job is None:
        noun = "asset" if target.kind == "thumbnail" else "annotation"
        verb = "imported" if target.kind == "thumbnail" else "announced by a BoundaryChanged event"
        return await refuse("unknown_target", f"{noun} {target.id!r} has never been {verb}")

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
    if target.kind == "thumbnail":
        asset = AssetState.from_dict(ctx.tables.assets.get(target.id))
        ctx.put_asset(folds.asset_variant_queued(asset, job, at))
    await ctx.emit(RENDER_INTERACTIVE if job.lane == "interactive" else RENDER_BACKGROUND, job)


def _plan_requested(ctx: WorkerContext, event: ImageRequested, at: str) -> RenderJob | None:
    """The job for the target's current revision (a dirty annotation's wanted
    one: a request does not wait for the idle delay), or None if unknown."""
    ids, force, lane = (event.request_id,), event.force, event.priority
    if event.target.kind == "thumbnail":
        asset = AssetState.from_dict(ctx.tables.assets.get(event.target.id))
        return None if asset is None else plan_job(asset, event.variant, lane, at, request_ids=ids, force=force)
    annotation = AnnotationState.from_dict(ctx.tables.annotations.get(event.target.id))
    return None if annotation is None else plan_composite(annotation, event.variant, lane, at,
                                                          request_ids=ids, force=force)


async def _answer_from_store(ctx: WorkerContext, job: JobState, event: ImageRequested, at: str):
    """A finished job answers the request at once: its image if the file is
    intact (read and hashed in a thread: never file I/O on the event loop),
    its failure if it failed. None: render it again."""
    if job.status == "completed":
        if await asyncio.to_thread(cached_output, job, Path(ctx.settings.image_store)) is None:
            log.info("request %s: output of %s is missing or changed; rendering again", event.request_id,
                     job.job_id)
            return None
        return stored_outcome(job, request_ids=(event.request_id,), at=at, cache_hit=True)
    if job.status == "failed":
        return stored_outcome(job, request_ids=(event.request_id,), at=at, cache_hit=False)
    return None  # superseded: cannot happen for the current revision, render to be safe
