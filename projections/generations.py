"""A generated image's state and its pure folds (kinds/generated.py).

Revision rule, as for boundary edits: a GenerationRequested whose revision
is higher than the target's replaces its prompt, parameters, generator and
group, and every output of the older revision stops being current (its
queued jobs are superseded). The same revision again, or a lower one,
changes nothing, even with another prompt: a publisher says "new image" by
raising the revision, so a redelivered or late event can never swap the
prompt behind a finished image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from regen.projections.state import Record, VariantState
from regen.schemas.bounds import Revision, Shape
from regen.schemas.events import GenerationRequested, ImageFailed, ImageGenerated
from regen.schemas.jobs import RenderJob


@dataclass(frozen=True)
class GenerationState(Record):
    target_id: str
    revision: Revision
    generator: str
    prompt: str
    requested_at: str
    parameters: dict = field(default_factory=dict)
    group_id: str | None = None
    variants: dict[str, Annotated[dict, Shape(VariantState)]] = field(default_factory=dict)

    def variant(self, name: str) -> VariantState | None:
        return VariantState.from_dict(self.variants.get(name))


def generation_requested(state: GenerationState | None, event: GenerationRequested, at: str) -> GenerationState:
    if state is not None and event.revision <= state.revision:
        return state
    return GenerationState(target_id=event.target_id, revision=event.revision, generator=event.generator,
                           prompt=event.prompt, parameters=dict(event.parameters), group_id=event.group_id,
                           requested_at=at)


def variant_queued(state: GenerationState, job: RenderJob, at: str) -> GenerationState:
    current = state.variant(job.variant)
    if job.revision < state.revision:
        return state
    if current is not None and current.revision == job.revision and current.status == "completed" and not job.force:
        return state
    entry = VariantState(status="pending", job_id=job.job_id, revision=job.revision, updated_at=at,
                         output=current.output if current else None)
    return state.evolve(variants={**state.variants, job.variant: entry.to_dict()})


def image_generated(state: GenerationState, event: ImageGenerated) -> GenerationState:
    if event.revision < state.revision:
        return state  # an image of a prompt the target no longer has
    known = state.variant(event.variant)
    if (known is not None and known.status == "completed" and known.revision == event.revision
            and (known.output or {}).get("sha256") == event.sha256):
        return state
    entry = VariantState(status="completed", job_id=event.job_id, revision=event.revision,
                         updated_at=event.generated_at, output=_output(event))
    return state.evolve(variants={**state.variants, event.variant: entry.to_dict()})


def image_failed(state: GenerationState, event: ImageFailed) -> GenerationState:
    if event.revision < state.revision:
        return state
    current = state.variant(event.variant)
    if current is not None and current.status == "completed" and current.revision >= event.revision:
        return state  # a late failure never hides a good image
    entry = VariantState(status="failed", job_id=event.job_id, revision=event.revision,
                         updated_at=event.failed_at, error=f"{event.reason}: {event.error}")
    return state.evolve(variants={**state.variants, event.variant: entry.to_dict()})


def _output(event: ImageGenerated) -> dict:
    return {"uri": event.uri, "sha256": event.sha256, "width": event.width, "height": event.height,
            "bytes": event.bytes}
