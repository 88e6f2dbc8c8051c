"""Pure folds: ``(state, event) -> state``.

No Kafka, no clock, no I/O: the agents pass the time in. Every fold is
idempotent (the same event twice leaves the same state) because delivery is
at-least-once; revisions decide what is current, so an old event arriving
late never overwrites a newer result.
"""

from __future__ import annotations

from typing import Literal

from regen.projections.state import AnnotationState, AssetState, JobState, VideoState
from regen.projections.variant_folds import output_of
from regen.schemas.events import AssetImported, BoundaryChanged, ImageFailed, ImageGenerated
from regen.schemas.jobs import DirtyFlag, RenderJob

# --- assets ---------------------------------------------------------------

def asset_imported(state: AssetState | None, event: AssetImported) -> AssetState:
    """A new asset starts at revision 1; new content under the same id bumps
    the revision (old renders become stale); the same content is a no-op."""
    if state is not None and state.sha256 == event.sha256:
        if state.uri == event.uri and state.batch_id == event.batch_id and state.group_id == event.group_id:
            return state
        return state.evolve(uri=event.uri, batch_id=event.batch_id or state.batch_id,
                            group_id=event.group_id or state.group_id)
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
        group_id=event.group_id,
    )








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


def job_retrying(state: JobState | None, job: RenderJob, code: str, error: str, at: str) -> JobState:
    """A retriable failure: the job waits in the retry topic for attempt ``job.attempt``."""
    base = state if state is not None else job_queued(None, job, at)
    if base.terminal:
        return base
    return base.evolve(status="retrying", attempts=max(base.attempts, job.attempt - 1), error=error,
                       error_code=code, updated_at=at)


def job_generated(state: JobState | None, event: ImageGenerated) -> JobState:
    base = state or _job_from_completion(event, event.generated_at)
    if base.status == "completed" and base.output is not None and base.output.get("sha256") == event.sha256:
        if event.cache_hit:
            return base  # an answer from the store: nothing about the job changed (and no changelog write)
        merged = _merge_ids(base.request_ids, event.request_ids)
        return base if merged == base.request_ids else base.evolve(request_ids=merged)
    return base.evolve(
        status="completed", attempts=max(base.attempts, event.attempts), finished_at=event.generated_at,
        updated_at=event.generated_at, output=output_of(event), render_ms=event.render_ms,
        cache_hit=event.cache_hit, error=None, error_code=None, reason=None,
        request_ids=_merge_ids(base.request_ids, event.request_ids),
    )


def job_failed(state: JobState | None, event: ImageFailed) -> JobState:
    base = state or _job_from_completion(event, event.failed_at)
    if base.status == "completed":
        return base  # a duplicate failure of an attempt that later succeeded
    # An operator's cancel (projections/control.py) ends the job without an image, under a status of its own.
    return base.evolve(
        status="cancelled" if event.reason == "cancelled" else "failed",
        attempts=max(base.attempts, event.attempts), finished_at=event.failed_at,
        updated_at=event.failed_at, error=event.error, error_code=event.error_code, reason=event.reason,
        request_ids=_merge_ids(base.request_ids, event.request_ids),
    )


def _job_from_completion(event: ImageGenerated | ImageFailed, at: str) -> JobState:
    return JobState(job_id=event.job_id, target_kind=event.target.kind, target_id=event.target.id,
                    variant=event.variant, revision=event.revision, lane="unknown", status="pending",
                    created_at=at, updated_at=at)




# Request ids a job remembers: the latest ones (a popular target's job would
# otherwise grow without end).
MAX_REQUEST_IDS = 32


def _merge_ids(existing: tuple[str, ...], new) -> tuple[str, ...]:
    merged = list(existing)
    for rid in new or ():
        if rid not in merged:
            merged.append(rid)
    return tuple(merged[-MAX_REQUEST_IDS:])


# --- annotations and videos ------------------------------------------------

def boundary_changed(state: AnnotationState | None, event: BoundaryChanged, at: str) -> AnnotationState:
    """Revisions only grow: an edit older than (or equal to) the wanted one
    changes nothing, whatever order the events arrive in."""
    if state is not None and event.revision <= state.wanted_revision:
        return state
    rendered = state.rendered_revision if state else 0
    return AnnotationState(
        annotation_id=event.annotation_id, video_id=event.video_id, source=event.source,
        start_frame=event.start_frame, end_frame=event.end_frame,
        crop=event.crop, wanted_revision=event.revision,
        last_change_at=at, rendered_revision=rendered, dirty=event.revision > rendered,
        rendered_at=state.rendered_at if state else None, output=state.output if state else None,
        frames_used=state.frames_used if state else None,
        failed_revision=state.failed_revision if state else 0,
        last_error=state.last_error if state else None,
    )


def annotation_rendered(state: AnnotationState, event: ImageGenerated) -> AnnotationState:
    """Completion of revision r clears the dirty flag only if no newer
    revision was wanted meanwhile."""
    if event.revision <= state.rendered_revision:
        return state
    return state.evolve(
        rendered_revision=event.revision, dirty=state.wanted_revision > event.revision,
        rendered_at=event.generated_at, output=output_of(event),
        frames_used=tuple(event.frames_used) if event.frames_used else None, last_error=None,
    )


def annotation_failed(state: AnnotationState, event: ImageFailed) -> AnnotationState:
    if event.revision <= max(state.rendered_revision, state.failed_revision):
        return state
    return state.evolve(failed_revision=event.revision, last_error=f"{event.reason}: {event.error}")


def annotation_status(state: AnnotationState) -> Literal["dirty", "failed", "current"]:
    if not state.dirty:
        return "current"
    return "failed" if state.failed_revision >= state.wanted_revision else "dirty"


def dirty_flag_changed(before: AnnotationState | None, after: AnnotationState) -> DirtyFlag | None:
    """The flag to send to the video's partition when the annotation's status
    (dirty, failed, current) changes, or it moves to another video."""
    status = annotation_status(after)
    if before is not None and annotation_status(before) == status and before.video_id == after.video_id:
        return None
    revision = after.wanted_revision if after.dirty else after.rendered_revision
    return DirtyFlag(video_id=after.video_id, annotation_id=after.annotation_id, revision=revision,
                     dirty=after.dirty, at=after.last_change_at if after.dirty else (after.rendered_at or ""),
                     status=status, error=after.last_error if status == "failed" else None)


# At one revision an annotation goes dirty -> failed or dirty -> current, never back.
_STATUS_RANK = {"dirty": 0, "failed": 1, "current": 2}


def video_flagged(state: VideoState | None, flag: DirtyFlag, now: float | None = None) -> VideoState:
    """Idempotent and order-tolerant: a clean flag removes an annotation only
    if no newer revision made it dirty again; an annotation's status only
    moves on to a newer revision, or forward at the same one. ``now`` (wall
    time) adds a sample for the rate when the count of settled ones changes."""
    video = state or VideoState(video_id=flag.video_id)
    dirty = dict(video.dirty)
    current = dirty.get(flag.annotation_id)
    if flag.dirty:
        if current is None or current < flag.revision:
            dirty[flag.annotation_id] = flag.revision
    elif current is not None and current <= flag.revision:
        del dirty[flag.annotation_id]
    status = flag.status or ("dirty" if flag.dirty else "current")
    known = video.annotations.get(flag.annotation_id)
    annotations = video.annotations
    if known is None or (flag.revision, _STATUS_RANK[status]) > (known["revision"], _STATUS_RANK[known["status"]]):
        annotations = {**annotations, flag.annotation_id: {"status": status, "revision": flag.revision,
                                                           "error": flag.error}}
    if dirty == video.dirty and annotations is video.annotations:
        return video
    samples = video.samples
    settled = sum(a["status"] != "dirty" for a in annotations.values())
    if now is not None and (not samples or samples[-1][1] != settled):
        samples = (*samples, (now, settled))[-120:]
    return video.evolve(dirty=dirty, annotations=annotations, samples=samples)

