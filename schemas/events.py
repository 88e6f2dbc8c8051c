"""The five public events, as frozen records.

The JSON Schema files in ``schemas/json`` are the contract for publishers in
any language; these records mirror them field for field (a unit test checks
that they agree). ``to_dict``/``from_dict`` convert to and from JSON bodies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

TargetKind = Literal["thumbnail", "composite"]


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    id: str

    @property
    def key(self) -> str:
        """Kafka key of every event about this target: its entity id, so a
        target's requests, jobs and completions share a partition with the
        AssetImported/BoundaryChanged events of the same entity."""
        return self.id

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


class Event:
    """Shared behaviour of event records."""

    ce_type: ClassVar[str]

    @property
    def key(self) -> str:  # pragma: no cover - every event defines it
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, body: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in body.items() if k in names}
        if "target" in values and isinstance(values["target"], dict):
            values["target"] = Target(**values["target"])
        for list_field in ("crop", "request_ids", "frames_used", "failures"):
            if isinstance(values.get(list_field), list):
                values[list_field] = tuple(values[list_field])
        return cls(**values)


@dataclass(frozen=True)
class BoundaryChanged(Event):
    ce_type: ClassVar[str] = "dev.regen.BoundaryChanged.v1"
    annotation_id: str
    video_id: str
    start_frame: int
    end_frame: int
    revision: int
    source: str
    crop: tuple[int, int, int, int] | None = None

    @property
    def key(self) -> str:
        return self.annotation_id


@dataclass(frozen=True)
class AssetImported(Event):
    ce_type: ClassVar[str] = "dev.regen.AssetImported.v1"
    asset_id: str
    uri: str
    media_type: Literal["image", "video"]
    sha256: str
    size_bytes: int
    imported_at: str
    batch_id: str | None = None
    captured_at: str | None = None

    @property
    def key(self) -> str:
        return self.asset_id


@dataclass(frozen=True)
class ImageRequested(Event):
    ce_type: ClassVar[str] = "dev.regen.ImageRequested.v1"
    target: Target
    variant: str
    request_id: str
    priority: Literal["interactive", "background"] = "interactive"
    force: bool = False

    @property
    def key(self) -> str:
        return self.target.key


@dataclass(frozen=True)
class ImageGenerated(Event):
    ce_type: ClassVar[str] = "dev.regen.ImageGenerated.v1"
    target: Target
    variant: str
    revision: int
    job_id: str
    uri: str
    sha256: str
    width: int
    height: int
    bytes: int
    render_ms: float
    attempts: int
    cache_hit: bool
    generated_at: str
    request_ids: tuple[str, ...] = field(default_factory=tuple)
    frames_used: tuple[int, ...] | None = None

    @property
    def key(self) -> str:
        return self.target.key


@dataclass(frozen=True)
class ImageFailed(Event):
    ce_type: ClassVar[str] = "dev.regen.ImageFailed.v1"
    target: Target
    variant: str
    revision: int
    job_id: str
    reason: Literal["permanent", "exhausted", "timeout"]
    error_code: str
    error: str
    attempts: int
    failed_at: str
    request_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.target.key


PUBLIC_EVENTS = (BoundaryChanged, AssetImported, ImageRequested, ImageGenerated, ImageFailed)
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in PUBLIC_EVENTS}
