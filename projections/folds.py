"""Pure folds: ``(state, event) -> state``.

No Kafka, no clock, no I/O: the agents pass the time in. Every fold is
idempotent (the same event twice leaves the same state) because delivery is
at-least-once; revisions decide what is current, so an old event arriving
late never overwrites a newer result.
"""

from __future__ import annotations

from schemas.events import AssetImported, ImageFailed, ImageGenerated
from schemas.jobs import RenderJob
from projections.state import AssetState, JobState, VariantState


# --- assets ---------------------------------------------------------------

def asset_imported(state: AssetState | None, event: AssetImported) -> AssetState:
    """A new asset starts at revision 1; new content under the same id bumps
    the revision (old renders become stale); the same content is a no-op."""
    if state is not None and state.sha256 == event.sha256:
        if state.uri == event.uri and state.batch_id == event.batch_id:
            return state
        return state.evolve(uri=event.uri, batch_id=event.batch_id or state.batch_id)
    revision = 1 if state is None else state.revision + 1
    return AssetState(
        asset_id=event.asset_id,
        uri=event.uri,
        media_type=event.media_type,
        sha256=event.sha256,
        size_bytes=event.size_bytes,
        imported_at=event.imported_at,
        revision=revision,
        batch_id=event.batch_id,
        captured_at=event.captured_at,
        variants={},
    )


def asset_variant_queued(state: AssetState, job: RenderJob, at: str) -> AssetState:
    current = state.variant(job.variant)
    if job.revision < state.revision:
        return state
    if current is not None and current.revision == job.revision and current.status == "completed" and not job.force:
        return state
    entry = VariantState(status="pending", job_id=job.job_id, revision=job.revision, updated_at=at,
                         output=current.output if current else None)
    return state.evolve(variants={**state.variants, job.variant: entry.to_dict()})


def asset_variant_running(state: AssetState, job: RenderJob, at: str) -> AssetState:
    return _set_variant_status(state, job.variant, job.job_id, job.revision, "running", at)


def asset_image_generated(state: AssetState, event: ImageGenerated) -> AssetState:
    if event.revision < state.revision:
        return state  # a render of content the asset no longer has
    entry = VariantState(status="completed", job_id=event.job_id, revision=event.revision,
                         updated_at=event.generated_at, output=_output(event))
    return state.evolve(variants={**state.variants, event.variant: entry.to_dict()})


def asset_image_failed(state: AssetState, event: ImageFailed) -> AssetState:
    if event.revision < state.revision:
        return state
    current = state.variant(event.variant)
    if current is not None and current.status == "completed" and current.revision >= event.revision:
        return state  # a late failure never hides a good image
    entry = VariantState(status="failed", job_id=event.job_id, revision=event.revision,
                         updated_at=event.failed_at, error=f"{event.reason}: {event.error}")
    return state.evolve(variants={**state.variants, event.variant: entry.to_dict()})


def _set_variant_status(state: AssetState, variant: str, job_id: str, revision: int, status, at: str) -> AssetState:
    current = state.variant(variant)
    if current is None or current.job_id != job_id or current.status in ("completed", "failed"):
        return state
    return state.evolve(variants={**state.variants, variant: current.evolve(status=status, updated_at=at).to_dict()})


# --- jobs -----------------------------------------------------------------

def job_queued(state: JobState | None, job: RenderJob, at: str) -> JobState:
    """Enqueue, or join the job already there (its requests are merged).
    A finished job is reopened only when forced."""
    if state is None or (state.terminal and job.force):
        return JobState(
            job_id=job.job_id, target_kind=job.target.kind, target_id=job.target.id,
            variant=job.variant, revision=job.revision, lane=job.lane, status="pending",
            created_at=at, updated_at=at, attempts=state.attempts if state else 0,
            request_ids=tuple(job.request_ids),
        )
    merged = _merge_ids(state.request_ids, job.request_ids)
    if merged == state.request_ids:
        return state
    return state.evolve(request_ids=merged, updated_at=at)


def job_started(state: JobState | None, job: RenderJob, at: str) -> JobState:
    base = state if state is not None else job_queued(None, job, at)
    if base.terminal:
        return base
    return base.evolve(status="running", attempts=max(base.attempts, job.attempt), started_at=at, updated_at=at,
                       request_ids=_merge_ids(base.request_ids, job.request_ids))


def job_generated(state: JobState | None, event: ImageGenerated) -> JobState:
    base = state or _job_from_completion(event, event.generated_at)
    if base.status == "completed" and base.output is not None and base.output.get("sha256") == event.sha256:
        merged = _merge_ids(base.request_ids, event.request_ids)
        return base if merged == base.request_ids else base.evolve(request_ids=merged)
    return base.evolve(
        status="completed", attempts=max(base.attempts, event.attempts), finished_at=event.generated_at,
        updated_at=event.generated_at, output=_output(event), render_ms=event.render_ms,
        cache_hit=event.cache_hit, error=None, error_code=None, reason=None,
        request_ids=_merge_ids(base.request_ids, event.request_ids),
    )


def job_failed(state: JobState | None, event: ImageFailed) -> JobState:
    base = state or _job_from_completion(event, event.failed_at)
    if base.status == "completed":
        return base  # a duplicate failure of an attempt that later succeeded
    return base.evolve(
        status="failed", attempts=max(base.attempts, event.attempts), finished_at=event.failed_at,
        updated_at=event.failed_at, error=event.error, error_code=event.error_code, reason=event.reason,
        request_ids=_merge_ids(base.request_ids, event.request_ids),
    )


def _job_from_completion(event: ImageGenerated | ImageFailed, at: str) -> JobState:
    return JobState(job_id=event.job_id, target_kind=event.target.kind, target_id=event.target.id,
                    variant=event.variant, revision=event.revision, lane="unknown", status="pending",
                    created_at=at, updated_at=at)


def _output(event: ImageGenerated) -> dict:
    return {"uri": event.uri, "sha256": event.sha256, "width": event.width, "height": event.height,
            "bytes": event.bytes}


def _merge_ids(existing: tuple[str, ...], new) -> tuple[str, ...]:
    merged = list(existing)
    for rid in new or ():
        if rid not in merged:
            merged.append(rid)
    return tuple(merged)
