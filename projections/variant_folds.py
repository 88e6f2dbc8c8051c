"""The per-variant folds every kind with standing variants shares: a job
queued, an image generated, a render failed, each into the target's
``variants`` map. Pure.

A target state only needs its wanted ``revision``, its ``variants`` map
(variant -> VariantState as a dict), ``variant(name)`` and ``evolve``:
assets, segmentations and generations all have them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from regen.projections.state import VariantState
from regen.schemas.events import ImageFailed, ImageGenerated
from regen.schemas.jobs import RenderJob

# Any record with those four, returned as its own type.
S = TypeVar("S")


def variant_queued(target: S, job: RenderJob, at: str) -> S:
    state: Any = target
    current = state.variant(job.variant)
    if job.revision < state.revision:
        return state
    if current is not None and current.revision == job.revision and current.status == "completed" and not job.force:
        return state
    entry = VariantState(status="pending", job_id=job.job_id, revision=job.revision, updated_at=at,
                         output=current.output if current else None)
    return state.evolve(variants={**state.variants, job.variant: entry.to_dict()})


def variant_generated(target: S, event: ImageGenerated) -> S:
    state: Any = target
    if event.revision < state.revision:
        return state  # a render of a source the target no longer has
    known = state.variant(event.variant)
    if (known is not None and known.status == "completed" and known.revision == event.revision
            and (known.output or {}).get("sha256") == event.sha256):
        return state  # the same image again (a cache hit, a redelivery): nothing to write
    entry = VariantState(status="completed", job_id=event.job_id, revision=event.revision,
                         updated_at=event.generated_at, output=output_of(event))
    return state.evolve(variants={**state.variants, event.variant: entry.to_dict()})


def variant_failed(target: S, event: ImageFailed) -> S:
    state: Any = target
    if event.revision < state.revision:
        return state
    current = state.variant(event.variant)
    if current is not None and current.status == "completed" and current.revision >= event.revision:
        return state  # a late failure never hides a good image
    entry = VariantState(status="failed", job_id=event.job_id, revision=event.revision,
                         updated_at=event.failed_at, error=f"{event.reason}: {event.error}")
    return state.evolve(variants={**state.variants, event.variant: entry.to_dict()})


def output_of(event: ImageGenerated) -> dict:
    return {"uri": event.uri, "sha256": event.sha256, "width": event.width, "height": event.height,
            "bytes": event.bytes}


def held_variant_outputs(target: Any) -> list[tuple[str, str]]:
    """(variant, uri) of every variant entry that still names an output: a
    completed one, and a pending one keeping its last image until the new
    one replaces it (what the store's garbage collection must spare)."""
    held = []
    for variant, entry in sorted(target.variants.items()):
        output = entry.get("output") if isinstance(entry, dict) else None
        uri = output.get("uri") if isinstance(output, dict) else None
        if isinstance(uri, str) and uri:
            held.append((variant, uri))
    return held
