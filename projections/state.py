"""Projection state records: what the tables hold, as frozen dataclasses.

Tables store them as JSON dicts (``to_dict``/``from_dict``) so a changelog can
be read by anything, and recovery needs no pickles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

JobStatus = Literal["pending", "running", "retrying", "completed", "failed", "superseded"]
TERMINAL = frozenset({"completed", "failed", "superseded"})


class Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None):
        if data is None:
            return None
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        values = {k: v for k, v in data.items() if k in names}
        for k, v in values.items():
            if isinstance(v, list):
                values[k] = tuple(v)
        return cls(**values)

    def evolve(self, **changes):
        return replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class Output(Record):
    uri: str
    sha256: str
    width: int
    height: int
    bytes: int


@dataclass(frozen=True)
class JobState(Record):
    job_id: str
    target_kind: str
    target_id: str
    variant: str
    revision: int
    lane: str
    status: JobStatus
    created_at: str
    updated_at: str
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    error_code: str | None = None
    reason: str | None = None
    output: dict | None = None
    render_ms: float | None = None
    cache_hit: bool = False
    request_ids: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class VariantState(Record):
    status: JobStatus
    job_id: str
    revision: int
    updated_at: str
    output: dict | None = None
    error: str | None = None


@dataclass(frozen=True)
class AssetState(Record):
    asset_id: str
    uri: str
    media_type: str
    sha256: str
    size_bytes: int
    imported_at: str
    revision: int = 1
    batch_id: str | None = None
    captured_at: str | None = None
    variants: dict[str, dict] = field(default_factory=dict)
    # The Kafka partition its events live in (batch progress is reported per partition).
    partition: int = -1

    def variant(self, name: str) -> VariantState | None:
        return VariantState.from_dict(self.variants.get(name))


@dataclass(frozen=True)
class AnnotationState(Record):
    """Dirty state of one annotation's combined image."""

    annotation_id: str
    video_id: str
    source: str
    start_frame: int  # the span of the wanted revision
    end_frame: int
    wanted_revision: int
    last_change_at: str
    crop: tuple[int, int, int, int] | None = None
    rendered_revision: int = 0
    dirty: bool = True
    rendered_at: str | None = None
    output: dict | None = None
    frames_used: tuple[int, ...] | None = None
    failed_revision: int = 0  # a permanent failure: not scheduled again until a new edit
    last_error: str | None = None


@dataclass(frozen=True)
class VideoState(Record):
    """A video's stale annotations: annotation_id -> the revision that made it dirty.
    A set, not a counter, so a replayed flag cannot count twice."""

    video_id: str
    dirty: dict[str, int] = field(default_factory=dict)
    # annotation_id -> {"status": dirty|failed|current, "revision": r, "error": ...}
    annotations: dict[str, dict] = field(default_factory=dict)
    samples: tuple = ()  # (time, annotations current or failed), for the rate

    @property
    def pending(self) -> int:
        return len(self.dirty)
