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
from regen.schemas.events import GenerationRequested


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

