"""Pure decisions intake makes: whether the image already in the store can
answer a request, and what a finished job answers. (Which job a target
needs is its kind's: regen.kinds.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regen.projections.repair import Checker
from regen.projections.state import JobState
from regen.schemas.events import ImageFailed, ImageGenerated, Target
from regen.schemas.jobs import RenderJob


def idle_long_enough(last_change: float, now: float, idle_delay: float) -> bool:
    return now - last_change >= idle_delay


def cached_output(job: JobState, check: Checker) -> dict | None:
    """The completed job's output, if ``check`` (uri, bytes, sha256) finds
    its file still there with the size and sha256 recorded when it was
    rendered: a request is never answered with a file that was truncated or
    replaced."""
    output = job.output
    if not output:
        return None
    return output if check(output["uri"], output["bytes"], output["sha256"]) is None else None


def stored_outcome(job: JobState, *, request_ids: tuple[str, ...], at: str,
                   cache_hit: bool) -> ImageGenerated | ImageFailed:
    """The completion a finished job already had, told again: to a request
    answered from the cache, or after a redelivery of a job that completed
    just before a crash."""
    target = Target(job.target_kind, job.target_id)
    if job.status == "completed" and job.output:
        out = job.output
        return ImageGenerated(
            target=target, variant=job.variant, revision=job.revision, job_id=job.job_id, uri=out["uri"],
            sha256=out["sha256"], width=out["width"], height=out["height"], bytes=out["bytes"],
            render_ms=0.0 if cache_hit else (job.render_ms or 0.0), attempts=job.attempts, cache_hit=cache_hit,
            generated_at=at, request_ids=request_ids)
    return ImageFailed(
        target=target, variant=job.variant, revision=job.revision, job_id=job.job_id,
        reason=job.reason or "permanent", error_code=job.error_code or "failed", error=job.error or "",
        attempts=job.attempts, failed_at=at, request_ids=request_ids)


def generated_event(job: RenderJob, outcome: Any, image_store: Path, attempt: int, at: str) -> ImageGenerated:
    """The ImageGenerated a finished render (a RenderOutcome) tells."""
    return ImageGenerated(
        target=job.target, variant=job.variant, revision=job.revision, job_id=job.job_id,
        uri=outcome.path.relative_to(image_store).as_posix(), sha256=outcome.sha256,
        width=outcome.width, height=outcome.height, bytes=outcome.bytes, render_ms=round(outcome.render_ms, 2),
        attempts=attempt, cache_hit=outcome.cache_hit, generated_at=at,
        frames_used=tuple(frames) if (frames := getattr(outcome, "frames", None)) else None,
    )
