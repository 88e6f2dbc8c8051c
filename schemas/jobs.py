"""The internal render job record that travels on the render lanes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from regen.schemas.bounds import (
    INT32_MAX,
    Coordinate,
    Count,
    ErrorText,
    FrameNumber,
    Id,
    Length,
    Range,
    Revision,
    ShortText,
    SourcePath,
    StorePath,
    Timestamp,
    TimestampOrEmpty,
    Variant,
)
from regen.schemas.events import Event, Target

Lane = Literal["interactive", "background"]


def job_id_for(target: Target, variant: str, revision: int) -> str:
    """Deterministic: the same work always has the same id, so a duplicate
    event folds into the existing job instead of creating another."""
    return f"{target.kind}:{target.id}:{variant}:r{revision}"


@dataclass(frozen=True)
class RenderJob(Event):
    ce_type: ClassVar[str] = "dev.regen.RenderJob.v1"
    job_id: ShortText
    target: Target
    variant: Variant
    revision: Revision
    lane: Lane
    source_uri: SourcePath
    source_sha256: ShortText  # "" for composites (a span of a video has no one hash)
    media_type: Literal["image", "video"]
    enqueued_at: Timestamp
    attempt: Count = 1
    force: bool = False
    request_ids: tuple[Id, ...] = field(default_factory=tuple)
    # composites only: the span (inclusive) and optional crop box x, y, w, h
    start_frame: FrameNumber | None = None
    end_frame: FrameNumber | None = None
    crop: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = None
    # What else a kind's render needs, as its plan wrote it and its
    # render_call reads it (an overlay's polygons, a generation's prompt):
    # one open field, so a new kind changes no record but its own.
    detail: dict | None = None
    # retries: not to be rendered before this time (seconds since the epoch), and why
    not_before: float | None = None
    last_error: ErrorText | None = None

    @property
    def key(self) -> str:
        return self.target.key


@dataclass(frozen=True)
class DirtyFlag(Event):
    """An annotation's composite became stale (dirty) or current again.

    Re-keyed by video so one partition holds a video's whole pending set:
    the annotation and its video are usually in different partitions."""

    ce_type: ClassVar[str] = "dev.regen.DirtyFlag.v1"
    video_id: Id
    annotation_id: Id
    revision: Revision
    dirty: bool
    at: TimestampOrEmpty  # "" if a current annotation has no render time
    # "dirty", "failed" (its last render failed for good) or "current"; ""
    # in flags written before statuses existed (read as dirty/current).
    status: Literal["", "dirty", "failed", "current"] = ""
    error: ErrorText | None = None

    @property
    def key(self) -> str:
        return self.video_id


@dataclass(frozen=True)
class BatchShard(Event):
    """One partition's share of an import batch, as its worker sees it now.

    Keyed by batch id so the batch's shards meet in one table partition; a
    newer shard of the same partition replaces the older one."""

    ce_type: ClassVar[str] = "dev.regen.BatchShard.v1"
    batch_id: Annotated[str, Length(200)]
    partition: Annotated[int, Range(0, INT32_MAX)]
    total: Count
    completed: Count
    failed: Count
    pending: Count
    at: float  # seconds since the epoch, on the reporting worker
    # {"asset_id", "variant", "error"} objects; each read back with .get or as shown
    failures: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.batch_id


@dataclass(frozen=True)
class GroupMemberChanged(Event):
    """One member (a target's standing variant) of a group became pending
    or finished. Re-keyed by group, like DirtyFlag by video: the members
    live in many partitions, their group's row in one."""

    ce_type: ClassVar[str] = "dev.regen.GroupMemberChanged.v1"
    group_id: Id
    target: Target
    variant: Variant
    revision: Revision
    status: Literal["pending", "completed", "failed"]
    at: Timestamp
    uri: StorePath | None = None  # the output's store path, when completed
    error: ErrorText | None = None

    @property
    def key(self) -> str:
        return self.group_id

    @property
    def member(self) -> str:
        return f"{self.target}/{self.variant}"
