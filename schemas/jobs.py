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
    # composites only: the span (inclusive) and optional crop box x, y, w, h
    start_frame: int | None = None
    end_frame: int | None = None
    crop: tuple[int, int, int, int] | None = None
    # retries: not to be rendered before this time (seconds since the epoch), and why
    not_before: float | None = None
    last_error: str | None = None

    @property
    def key(self) -> str:
        return self.target.key


@dataclass(frozen=True)
class DirtyFlag(Event):
    """An annotation's composite became stale (dirty) or current again.

    Re-keyed by video so one partition holds a video's whole pending set:
    the annotation and its video are usually in different partitions."""

    ce_type: ClassVar[str] = "dev.regen.DirtyFlag.v1"
    video_id: str
    annotation_id: str
    revision: int
    dirty: bool
    at: str
    # "dirty", "failed" (its last render failed for good) or "current"; ""
    # in flags written before statuses existed (read as dirty/current).
    status: str = ""
    error: str | None = None

    @property
    def key(self) -> str:
        return self.video_id


@dataclass(frozen=True)
class BatchShard(Event):
    """One partition's share of an import batch, as its worker sees it now.

    Keyed by batch id so the batch's shards meet in one table partition; a
    newer shard of the same partition replaces the older one."""

    ce_type: ClassVar[str] = "dev.regen.BatchShard.v1"
    batch_id: str
    partition: int
    total: int
    completed: int
    failed: int
    pending: int
    at: float  # seconds since the epoch, on the reporting worker
    failures: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.batch_id
