"""The public events, as frozen records.

The JSON Schema files in ``schemas/json`` are the contract for publishers in
any language; these records mirror them field for field (a unit test checks
that they agree, bounds included). ``to_dict``/``from_dict`` convert to and
from JSON bodies; ``from_dict`` checks every field against its annotation
(``schemas.typed``) and raises SchemaError naming the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Annotated, Any, ClassVar, Literal

from regen.schemas.bounds import (
    INT32_MAX,
    Coordinate,
    Count,
    ErrorText,
    FrameNumber,
    Id,
    Length,
    Milliseconds,
    OneOf,
    Pattern,
    Pixels,
    Range,
    Revision,
    Sha256,
    ShortText,
    SourcePath,
    StorePath,
    Timestamp,
    Variant,
)
from regen.schemas.typed import read_record


def _target_kinds() -> tuple[str, ...]:
    """The kinds of image, from the JSON Schema publishers validate against
    (schemas/json/TargetKind.json); the kinds registry must name the same."""
    text = resources.files("regen.schemas").joinpath("json", "TargetKind.json").read_text()
    return tuple(json.loads(text)["enum"])


TARGET_KINDS = _target_kinds()
TargetKind = Annotated[str, OneOf(TARGET_KINDS)]
# permanent: no retry can help; exhausted: retries ran out; timeout: killed at the render timeout, every attempt
FailureReason = Literal["permanent", "exhausted", "timeout"]


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    id: Id

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
        return {k: v for k, v in asdict(self).items()}  # type: ignore[call-overload]  # every Event is a dataclass

    @classmethod
    def from_dict(cls, body: Any):
        """The record, typed field by field; SchemaError if ``body`` is not one."""
        return read_record(cls, body)


@dataclass(frozen=True)
class BoundaryChanged(Event):
    ce_type: ClassVar[str] = "dev.regen.BoundaryChanged.v1"
    annotation_id: Id
    video_id: Id
    start_frame: FrameNumber
    end_frame: FrameNumber
    revision: Annotated[int, Range(1, INT32_MAX)]
    source: SourcePath
    crop: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = None

    @property
    def key(self) -> str:
        return self.annotation_id


@dataclass(frozen=True)
class AssetImported(Event):
    ce_type: ClassVar[str] = "dev.regen.AssetImported.v1"
    asset_id: Id
    uri: SourcePath
    media_type: Literal["image", "video"]
    sha256: Sha256
    size_bytes: Count
    imported_at: Timestamp
    batch_id: Annotated[str, Length(200)] | None = None
    captured_at: Annotated[str, Length(40)] | None = None  # EXIF text, shown, never parsed

    @property
    def key(self) -> str:
        return self.asset_id


@dataclass(frozen=True)
class ImageRequested(Event):
    ce_type: ClassVar[str] = "dev.regen.ImageRequested.v1"
    target: Target
    variant: Variant
    request_id: Id
    priority: Literal["interactive", "background"] = "interactive"
    force: bool = False

    @property
    def key(self) -> str:
        return self.target.key


@dataclass(frozen=True)
class ImageGenerated(Event):
    ce_type: ClassVar[str] = "dev.regen.ImageGenerated.v1"
    target: Target
    variant: Variant
    revision: Revision
    job_id: ShortText
    uri: StorePath
    sha256: Sha256
    width: Pixels
    height: Pixels
    bytes: Count
    render_ms: Milliseconds
    attempts: Count
    cache_hit: bool
    generated_at: Timestamp
    request_ids: tuple[Id, ...] = field(default_factory=tuple)
    frames_used: tuple[FrameNumber, ...] | None = None

    @property
    def key(self) -> str:
        return self.target.key


@dataclass(frozen=True)
class ImageFailed(Event):
    ce_type: ClassVar[str] = "dev.regen.ImageFailed.v1"
    target: Target
    variant: Variant
    revision: Revision
    job_id: ShortText  # "" for a refused request: no job
    reason: FailureReason
    error_code: ShortText
    error: ErrorText
    attempts: Count
    failed_at: Timestamp
    request_ids: tuple[Id, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.target.key


# A prompt is text for a model, not a document: 8000 characters is more than any model takes.
PromptText = Annotated[str, Length(8000, 1)]
GeneratorName = Annotated[str, Length(64, 1), Pattern(r"^[A-Za-z0-9._-]+$")]


@dataclass(frozen=True)
class GenerationRequested(Event):
    """Generate the image of target ``target_id`` from a prompt with a configured
    generator (kinds/generated.py). A higher revision supersedes the target's
    older one; the same or a lower revision changes nothing."""

    ce_type: ClassVar[str] = "dev.regen.GenerationRequested.v1"
    target_id: Id
    revision: Annotated[int, Range(1, INT32_MAX)]
    generator: GeneratorName
    prompt: PromptText
    # Flat JSON object of strings, numbers, booleans or nulls (the JSON Schema
    # says so), filled into the generator's request template.
    parameters: dict = field(default_factory=dict)
    group_id: Id | None = None  # the case this image belongs to (group progress)

    @property
    def key(self) -> str:
        return self.target_id


PUBLIC_EVENTS = (BoundaryChanged, AssetImported, ImageRequested, ImageGenerated, ImageFailed, GenerationRequested)
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in PUBLIC_EVENTS}
