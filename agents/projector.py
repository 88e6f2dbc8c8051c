"""Projector: folds completions back into the jobs and assets tables."""

from __future__ import annotations

import logging

from regen.agents.context import WorkerContext
from regen.agents.handling import register_event_agent
from regen.projections import folds
from regen.projections.state import AnnotationState, AssetState, JobState
from regen.schemas.events import ImageFailed, ImageGenerated
from regen.streams.topics import ANNOTATIONS_DIRTY, IMAGES_RESULTS

log = logging.getLogger(__name__)


def register_projector(ctx: WorkerContext) -> None:
    register_event_agent(ctx, IMAGES_RESULTS, "projector", on_completion)


async def on_completion(ctx: WorkerContext, event: ImageGenerated | ImageFailed) -> None:
    if not event.job_id:
        return  # a refused request (unknown target or variant): no job to fold
    jobs, assets = ctx.tables.jobs, ctx.tables.assets
    job = JobState.from_dict(jobs.get(event.job_id))
    if event.target.kind == "composite":
        await _fold_composite(ctx, event)
    asset = AssetState.from_dict(assets.get(event.target.id)) if event.target.kind == "thumbnail" else None
    folded = (folds.job_generated if isinstance(event, ImageGenerated) else folds.job_failed)(job, event)
    if folded != job:  # the render agent has usually folded it already
        jobs[event.job_id] = folded.to_dict()
    if asset is not None:
        fold_asset = folds.asset_image_generated if isinstance(event, ImageGenerated) else folds.asset_image_failed
        after = fold_asset(asset, event)
        if after != asset:
            ctx.put_asset(after)
    _note_activity(ctx, event)
    if isinstance(event, ImageGenerated) and not event.cache_hit:
        log.info("generated %s %s -> %s (%dx%d, %.0f ms)", event.target, event.variant, event.uri,
                 event.width, event.height, event.render_ms)


def _note_activity(ctx: WorkerContext, event: ImageGenerated | ImageFailed) -> None:
    if isinstance(event, ImageFailed):
        ctx.activity.failed(str(event.target), event.variant, event.reason, event.error, event.failed_at)
    elif not event.cache_hit:
        ctx.activity.generated(str(event.target), event.variant, event.uri, event.width, event.height,
                               event.generated_at)


async def _fold_composite(ctx: WorkerContext, event: ImageGenerated | ImageFailed) -> None:
    table = ctx.tables.annotations
    before = AnnotationState.from_dict(table.get(event.target.id))
    if before is None:
        return
    if isinstance(event, ImageGenerated):
        after = folds.annotation_rendered(before, event)
    else:
        after = folds.annotation_failed(before, event)
    if after is before:
        return
    table[event.target.id] = after.to_dict()
    flag = folds.dirty_flag_changed(before, after)
    if flag is not None:
        await ctx.emit(ANNOTATIONS_DIRTY, flag)
    if isinstance(event, ImageGenerated) and not after.dirty:
        log.info("annotation %s composite current at revision %d (%s)", event.target.id, event.revision, event.uri)
