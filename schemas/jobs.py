"""The internal render job record that travels on the render lanes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from schemas.events import Event, Target

Lane = Literal["interactive", "background"]


def job_id_for(target: Target, variant: str, revision: int) -> str:
    """Deterministic: the same work always has the same id, so a duplicate
    event folds into the existing job instead of creating another."""
    return f"{target.kind}:{target.id}:{variant}:r{revision}"


@dataclass(frozen=True)
class RenderJob(Event):
    ce_type: ClassVar[str] = "dev.regen.RenderJob.v1"
    job_id: str
    target: Target
    variant: str
    revision: int
    lane: Lane
    source_uri: str
    source_sha256: str
    media_type: str
    enqueued_at: str
    attempt: int = 1
    force: bool = False
    request_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.target.key
