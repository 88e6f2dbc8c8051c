"""Pure decisions intake makes: which job a target needs, whether the image
already in the store can answer a request."""

from __future__ import annotations

from pathlib import Path

from projections.state import AnnotationState, AssetState, JobState
from schemas.events import Target
from schemas.jobs import Lane, RenderJob, job_id_for


def plan_job(asset: AssetState, variant: str, lane: Lane, at: str, *,
             request_ids: tuple[str, ...] = (), force: bool = False) -> RenderJob:
    target = Target("thumbnail", asset.asset_id)
    return RenderJob(
        job_id=job_id_for(target, variant, asset.revision), target=target, variant=variant,
        revision=asset.revision, lane=lane, source_uri=asset.uri, source_sha256=asset.sha256,
        media_type=asset.media_type, enqueued_at=at, force=force, request_ids=request_ids,
    )


def plan_composite(annotation: AnnotationState, variant: str, lane: Lane, at: str, *,
                   request_ids: tuple[str, ...] = (), force: bool = False) -> RenderJob:
    """The job for the annotation's wanted revision, carrying that revision's span."""
    target = Target("composite", annotation.annotation_id)
    return RenderJob(
        job_id=job_id_for(target, variant, annotation.wanted_revision), target=target, variant=variant,
        revision=annotation.wanted_revision, lane=lane, source_uri=annotation.source, source_sha256="",
        media_type="video", enqueued_at=at, force=force, request_ids=request_ids,
        start_frame=annotation.start_frame, end_frame=annotation.end_frame, crop=annotation.crop,
    )


def idle_long_enough(last_change: float, now: float, idle_delay: float) -> bool:
    return now - last_change >= idle_delay


def cached_output(job: JobState, image_store: Path) -> dict | None:
    """The completed job's output, if its file is still there with its size.
    (A full hash check is what `regen repair` does; a request must be fast.)"""
    output = job.output
    if not output:
        return None
    try:
        size = (image_store / output["uri"]).stat().st_size
    except OSError:
        return None
    return output if size == output["bytes"] else None
