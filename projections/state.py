"""Projection state records: what the tables hold, as frozen dataclasses.

Tables store them as JSON dicts (``to_dict``/``from_dict``) so a changelog can
be read by anything, and recovery needs no pickles.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal

from regen.projections.throttled_log import ThrottledLog
from regen.schemas.bounds import (
    Coordinate,
    Count,
    ErrorText,
    FrameNumber,
    Milliseconds,
    Pixels,
    Revision,
    Sha256,
    Shape,
    SourcePath,
    StorePath,
)
from regen.schemas.events import TargetKind
from regen.schemas.exceptions import SchemaError
from regen.schemas.typed import read_record

log = logging.getLogger(__name__)
_malformed_rows = ThrottledLog(log)

# Row timestamps stay plain strings: whatever reads one (the sweeper's clock)
# copes with one it cannot parse, and events' timestamps were checked already.
# cancelled: an operator cancelled it before it rendered (agents/control.py); done, never rendered.
JobStatus = Literal["pending", "running", "retrying", "completed", "failed", "superseded", "cancelled"]
TERMINAL = frozenset({"completed", "failed", "superseded", "cancelled"})


class Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Any):
        """The row, typed field by field; None if there is none, or if it is malformed.

        Rows come back from changelog topics, which anyone with write access
        to them can forge. A malformed row is treated as no row (with a
        warning, at most one a minute per record type): every caller already
        handles a missing row, mostly by folding the next event into a fresh
        one, which replaces the forged row. Raising instead would need a
        handler at each of the dozens of reads, in timers and agents alike.
        """
        if data is None:
            return None
        try:
            return read_record(cls, data)
        except SchemaError as e:
            _malformed_rows.log(cls.__name__, logging.WARNING, "malformed %s row ignored (read as no row): %s",
                                cls.__name__, e)
            return None

    def evolve(self, **changes):
        return replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class Output(Record):
    uri: StorePath
    sha256: Sha256
    width: Pixels
    height: Pixels
    bytes: Count


# A finished render's output as rows hold it: a dict, checked to read as Output.
OutputDict = Annotated[dict, Shape(Output)]


@dataclass(frozen=True)
class JobState(Record):
    job_id: str
    target_kind: TargetKind
    target_id: str
    variant: str
    revision: Revision
    lane: str
    status: JobStatus
    created_at: str
    updated_at: str
    attempts: Count = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: ErrorText | None = None
    error_code: str | None = None
    reason: Literal["permanent", "exhausted", "timeout", "cancelled"] | None = None
    output: OutputDict | None = None
    render_ms: Milliseconds | None = None
    cache_hit: bool = False
    request_ids: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class VariantState(Record):
    status: JobStatus
    job_id: str
    revision: Revision
    updated_at: str
    output: OutputDict | None = None
    error: ErrorText | None = None


@dataclass(frozen=True)
class AssetState(Record):
    asset_id: str
    uri: SourcePath
    media_type: Literal["image", "video"]
    sha256: str
    size_bytes: Count
    imported_at: str
    revision: Revision = 1
    batch_id: str | None = None
    captured_at: str | None = None
    variants: dict[str, Annotated[dict, Shape(VariantState)]] = field(default_factory=dict)
    group_id: str | None = None

    def variant(self, name: str) -> VariantState | None:
        return VariantState.from_dict(self.variants.get(name))


@dataclass(frozen=True)
class AnnotationState(Record):
    """Dirty state of one annotation's combined image."""

    annotation_id: str
    video_id: str
    source: SourcePath
    start_frame: FrameNumber  # the span of the wanted revision
    end_frame: FrameNumber
    wanted_revision: Revision
    last_change_at: str
    crop: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = None
    rendered_revision: Revision = 0
    dirty: bool = True
    rendered_at: str | None = None
    output: OutputDict | None = None
    frames_used: tuple[FrameNumber, ...] | None = None
    failed_revision: Revision = 0  # a permanent failure: not scheduled again until a new edit
    last_error: ErrorText | None = None


@dataclass(frozen=True)
class AnnotationStatus(Record):
    """One entry of VideoState.annotations (kept there as a dict)."""

    status: Literal["dirty", "failed", "current"]
    revision: Revision
    error: ErrorText | None = None


@dataclass(frozen=True)
class VideoState(Record):
    """A video's stale annotations: annotation_id -> the revision that made it dirty.
    A set, not a counter, so a replayed flag cannot count twice."""

    video_id: str
    dirty: dict[str, Revision] = field(default_factory=dict)
    # annotation_id -> {"status": dirty|failed|current, "revision": r, "error": ...}
    annotations: dict[str, Annotated[dict, Shape(AnnotationStatus)]] = field(default_factory=dict)
    samples: tuple[tuple[float, Count], ...] = ()  # (time, annotations current or failed), for the rate

    @property
    def pending(self) -> int:
        return len(self.dirty)
