"""Intake: fold source events into projections and decide what to render.

AssetImported -> assets table, background jobs for the pre-generated variants.
ImageRequested -> a cache hit at once, a join onto the job in flight, or an
interactive job.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agents.context import WorkerContext
from agents.handling import register_event_agent
from projections import folds
from projections.planning import cached_output, plan_job
from projections.state import AssetState, JobState
from schemas.events import AssetImported, ImageFailed, ImageGenerated, ImageRequested
from schemas.jobs import RenderJob
from streams.codec import now_iso
from streams.topics import ASSETS_IMPORTED, IMAGES_REQUESTED, IMAGES_RESULTS, RENDER_BACKGROUND, RENDER_INTERACTIVE

log = logging.getLogger(__name__)


def register_intake(ctx: WorkerContext) -> None:
    register_event_agent(ctx, ASSETS_IMPORTED, "asset-intake", on_asset_imported)
    register_event_agent(ctx, IMAGES_REQUESTED, "request-intake", on_image_requested)


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
    assets[event.asset_id] = asset.to_dict()
    for job in to_send:
        await ctx.emit(RENDER_BACKGROUND, job)
    log.info("asset %s (%s) revision %d: %d thumbnail job(s) queued", event.asset_id, event.uri,
             asset.revision, len(to_send))


async def on_image_requested(ctx: WorkerContext, event: ImageRequested) -> None:
    at = now_iso()
    target = event.target

    async def fail(code: str, message: str, revision: int = 0, job_id: str = "") -> None:
        log.info("request %s for %s %s refused: %s", event.request_id, target, event.variant, message)
        await ctx.emit(IMAGES_RESULTS, ImageFailed(
            target=target, variant=event.variant, revision=revision, job_id=job_id, reason="permanent",
            error_code=code, error=message, attempts=0, failed_at=at, request_ids=(event.request_id,)))

    if event.variant not in ctx.settings.variants:
        return await fail("unknown_variant", f"variant {event.variant!r} is not configured "
                                             f"(configured: {', '.join(ctx.settings.variants)})")
    if target.kind != "thumbnail":
        return await fail("unsupported_target", f"{target.kind} images are not supported by this worker")
    asset = AssetState.from_dict(ctx.tables.assets.get(target.id))
    if asset is None:
        return await fail("unknown_target", f"asset {target.id!r} has never been imported")

    job = plan_job(asset, event.variant, "interactive", at, request_ids=(event.request_id,), force=event.force)
    current = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
    if not event.force and current is not None and current.status == "completed":
        output = cached_output(current, Path(ctx.settings.image_store))
        if output is not None:
            await ctx.emit(IMAGES_RESULTS, ImageGenerated(
                target=target, variant=event.variant, revision=current.revision, job_id=current.job_id,
                uri=output["uri"], sha256=output["sha256"], width=output["width"], height=output["height"],
                bytes=output["bytes"], render_ms=0.0, attempts=current.attempts, cache_hit=True,
                generated_at=at, request_ids=(event.request_id,)))
            return
    joins = current is not None and not current.terminal
    ctx.tables.jobs[job.job_id] = folds.job_queued(current, job, at).to_dict()
    if joins and not event.force:
        return  # the job in flight will list this request_id when it completes
    ctx.tables.assets[target.id] = folds.asset_variant_queued(asset, job, at).to_dict()
    await ctx.emit(RENDER_INTERACTIVE, job)
