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
    ID_PATTERN,
    INT32_MAX,
    Coordinate,
    Count,
    ErrorText,
    FrameNumber,
    Id,
    Length,
    MaxItems,
    Milliseconds,
    MinItems,
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
# permanent: no retry can help; exhausted: retries ran out; timeout: killed at the render timeout, every attempt;
# cancelled: an operator cancelled the job before it rendered (CancelRequested), so it is done, never rendered
FailureReason = Literal["permanent", "exhausted", "timeout", "cancelled"]


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

    def semantic_problem(self) -> str | None:
        """What is wrong with the event beyond its fields' own bounds (a rule
        across fields), or None. Checked wherever the event is decoded."""
        return None


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
    group_id: Id | None = None  # the group whose progress its thumbnails count in

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


GroupStatus = Literal["pending", "generating", "completed", "partial", "failed"]
WebhookUrl = Annotated[str, Length(2000, 1)]


@dataclass(frozen=True)
class GroupDeclared(Event):
    """A set of targets followed as one (a case's 14 generated images).

    Optional: a group also exists as soon as a source event names it. What
    declaring adds is the total (without it, a group whose first members
    finish before the others are announced could look finished) and a
    webhook of its own."""

    ce_type: ClassVar[str] = "dev.regen.GroupDeclared.v1"
    group_id: Id
    declared_at: Timestamp
    total: Annotated[int, Range(1, 100_000)] | None = None
    label: Annotated[str, Length(200)] | None = None
    webhook_url: WebhookUrl | None = None  # only called if its host is in REGEN_WEBHOOK_HOSTS

    @property
    def key(self) -> str:
        return self.group_id


@dataclass(frozen=True)
class GroupProgress(Event):
    """A group's counts after a member changed (regen emits it)."""

    ce_type: ClassVar[str] = "dev.regen.GroupProgress.v1"
    group_id: Id
    status: GroupStatus
    total: Count
    completed: Count
    failed: Count
    pending: Count
    started_at: Timestamp | None
    finished_at: Timestamp | None
    at: Timestamp

    @property
    def key(self) -> str:
        return self.group_id


@dataclass(frozen=True)
class GroupFinished(Event):
    """Every member of a group finished: what each made, or why it failed."""

    ce_type: ClassVar[str] = "dev.regen.GroupFinished.v1"
    group_id: Id
    status: GroupStatus
    total: Count
    completed: Count
    failed: Count
    started_at: Timestamp | None
    finished_at: Timestamp
    # "kind:id/variant" -> the output's store path
    outputs: dict[str, StorePath] = field(default_factory=dict)
    # {"member", "target", "variant", "error"} objects
    failures: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.group_id


@dataclass(frozen=True)
class Stuck(Event):
    """A job or group that made no progress for longer than it should
    (REGEN_STUCK_AFTER, REGEN_GROUP_STUCK_AFTER): said once per episode."""

    ce_type: ClassVar[str] = "dev.regen.Stuck.v1"
    subject: Literal["job", "group"]
    id: ShortText
    status: ShortText
    since: Timestamp | None
    stuck_for_s: Annotated[float, Range(0)]
    at: Timestamp

    @property
    def key(self) -> str:
        return self.id


# --- segmentations (the overlay kind) -------------------------------------------

# A segmentation travels in one Kafka message, twice over (the event, then
# its render job), so its size is bounded: Kafka's default message limit is
# 1 MB, and 10,000 points of long decimals are about 420 kB of JSON.
MAX_POLYGONS = 1000
MAX_HOLES = 100
MAX_RING_POINTS = 10000
MAX_TOTAL_POINTS = 10000
MAX_LABELS = 256
# Points are pixel coordinates; any photo regen decodes (50 MP) fits well within.
MAX_COORDINATE = 1_000_000
COLOR_PATTERN = r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$"

Coordinate2D = Annotated[float, Range(-MAX_COORDINATE, MAX_COORDINATE)]
Point = tuple[Coordinate2D, Coordinate2D]  # x (rightwards), y (downwards)
Ring = Annotated[tuple[Point, ...], MinItems(3), MaxItems(MAX_RING_POINTS)]
Label = Annotated[str, Length(100, 1)]
Color = Annotated[str, Length(9, 7), Pattern(COLOR_PATTERN)]


@dataclass(frozen=True)
class Polygon:
    """One labelled region: an outer ring and optional holes, each a closed
    ring of at least three points (the last joins the first)."""

    label: Label
    points: Ring
    holes: Annotated[tuple[Ring, ...], MaxItems(MAX_HOLES)] = ()

    @property
    def point_count(self) -> int:
        return len(self.points) + sum(len(h) for h in self.holes)


def segmentation_problem(polygons: tuple[Polygon, ...], colors: dict[str, str] | None) -> str | None:
    """The rules across fields of a segmentation (the event's and a render job's)."""
    total = sum(p.point_count for p in polygons)
    if total > MAX_TOTAL_POINTS:
        return f"{total} points in all (holes included) is over the limit of {MAX_TOTAL_POINTS}; simplify the polygons"
    if colors is not None:
        if len(colors) > MAX_LABELS:
            return f"{len(colors)} colours is over the limit of {MAX_LABELS} labels"
        long = next((label for label in colors if not 1 <= len(label) <= 100), None)
        if long is not None:
            return f"colour label {long[:40]!r}… must be 1 to 100 characters"
    return None


@dataclass(frozen=True)
class SegmentationChanged(Event):
    """An image's segmentation changed: its overlay (the image with the
    polygons drawn over it) is stale. Points are pixel coordinates of the
    image as displayed, i.e. after its EXIF orientation is applied (see
    kinds/overlay.py)."""

    ce_type: ClassVar[str] = "dev.regen.SegmentationChanged.v1"
    # Checked by the typed reader alone, not by JSON Schema (see schemas/validation.py).
    typed_only_fields: ClassVar[tuple[str, ...]] = ("polygons",)
    asset_id: Id
    revision: Annotated[int, Range(1, INT32_MAX)]
    source: SourcePath
    polygons: Annotated[tuple[Polygon, ...], MaxItems(MAX_POLYGONS)]
    source_sha256: Sha256 | None = None
    colors: dict[str, Color] | None = None  # label -> "#rrggbb" or "#rrggbbaa"
    group_id: Id | None = None  # the group whose progress its overlays count in

    @property
    def key(self) -> str:
        return self.asset_id

    def semantic_problem(self) -> str | None:
        return segmentation_problem(self.polygons, self.colors)


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


# --- operator commands (the control topic) ---------------------------------------
#
# Every operator action is one of these on the ``control`` topic, so a replay
# of the topic reproduces what was done and every worker obeys the same
# record (agents/control.py applies them; README "Operator commands").

CommandId = Annotated[str, Length(100, 1), Pattern(ID_PATTERN)]
Operator = Annotated[str, Length(200)]  # who asked: a user name, "http admin", ... (audit only, never trusted)
CommandReason = Annotated[str, Length(2000)]
# Pause and resume are keyed by their lane, "background": ordered in one partition, the latest wins.
BACKGROUND_KEY = "background"
MAX_REDRIVE_PARTITIONS = 10000


@dataclass(frozen=True)
class RetryFailed(Event):
    """Render again every failed job that matches ALL the given filters.

    A job matches when its status is ``failed`` (not cancelled, superseded
    or anything else), it is the job of its target's current revision, and:
    ``batch_id`` equals the target's import batch (thumbnails); ``video_id``
    the annotation's video (composites); ``group_id`` the target's group;
    ``kind`` the target's kind; ``since``: the job failed at or after that
    time (its ``finished_at``). ``limit``: at most this many jobs in all
    (each of the P partitions retries at most limit // P of its matches,
    one more for partitions below limit % P, oldest failures first)."""

    ce_type: ClassVar[str] = "dev.regen.RetryFailed.v1"
    command_id: CommandId
    requested_at: Timestamp
    requested_by: Operator
    reason: CommandReason | None = None
    batch_id: Annotated[str, Length(200)] | None = None
    video_id: Id | None = None
    group_id: Id | None = None
    # A kind's name (checked against the kinds in semantic_problem: an enum
    # here could not also allow null in the JSON Schema of TargetKind.json).
    kind: Annotated[str, Length(64, 1), Pattern(r"^[a-z_]+$")] | None = None
    since: Timestamp | None = None
    limit: Annotated[int, Range(1, 1_000_000)] | None = None

    @property
    def key(self) -> str:
        return self.command_id

    def semantic_problem(self) -> str | None:
        if self.kind is not None and self.kind not in TARGET_KINDS:
            return f"kind {self.kind!r} is not a kind of image (known: {', '.join(TARGET_KINDS)})"
        return None


@dataclass(frozen=True)
class CancelRequested(Event):
    """Cancel the jobs not yet rendering: one job (``scope`` job, ``id`` a job
    id), or every pending or retrying job of an import batch or a group.
    A cancelled job is done without an image: ImageFailed reason
    ``cancelled``."""

    ce_type: ClassVar[str] = "dev.regen.CancelRequested.v1"
    command_id: CommandId
    requested_at: Timestamp
    requested_by: Operator
    scope: Literal["job", "batch", "group"]
    id: Annotated[str, Length(200, 1)]
    reason: CommandReason | None = None

    @property
    def key(self) -> str:
        return self.command_id


@dataclass(frozen=True)
class BackgroundPaused(Event):
    """Every worker stops taking background render jobs (imports' thumbnails,
    idle composites) until BackgroundResumed; requests still render."""

    ce_type: ClassVar[str] = "dev.regen.BackgroundPaused.v1"
    command_id: CommandId
    requested_at: Timestamp
    requested_by: Operator
    lane: Literal["background"]  # the one lane there is to pause; also the key, so the switches share a partition
    reason: CommandReason | None = None

    @property
    def key(self) -> str:
        return self.lane


@dataclass(frozen=True)
class BackgroundResumed(Event):
    ce_type: ClassVar[str] = "dev.regen.BackgroundResumed.v1"
    command_id: CommandId
    requested_at: Timestamp
    requested_by: Operator
    lane: Literal["background"]  # the one lane there is to pause; also the key, so the switches share a partition
    reason: CommandReason | None = None

    @property
    def key(self) -> str:
        return self.lane


@dataclass(frozen=True)
class DeadLettersRedriven(Event):
    """Publish dead letters again to the topic they came from: those of each
    dead-letter partition below its offset in ``up_to`` (partition number as
    text -> offset; the end offsets when the command was made, so a replay
    redrives the same records, never newer ones), dead-lettered at or after
    ``since``, of CloudEvents type ``event_type`` if given."""

    ce_type: ClassVar[str] = "dev.regen.DeadLettersRedriven.v1"
    command_id: CommandId
    requested_at: Timestamp
    requested_by: Operator
    up_to: dict[str, Count]
    reason: CommandReason | None = None
    since: Timestamp | None = None
    event_type: Annotated[str, Length(200)] | None = None

    @property
    def key(self) -> str:
        return self.command_id

    def semantic_problem(self) -> str | None:
        if len(self.up_to) > MAX_REDRIVE_PARTITIONS:
            return f"up_to names {len(self.up_to)} partitions; at most {MAX_REDRIVE_PARTITIONS}"
        odd = next((k for k in self.up_to if not (k.isascii() and k.isdigit() and len(k) <= 5)), None)
        if odd is not None:
            return f"up_to key {odd[:20]!r} is not a partition number"
        return None


CONTROL_COMMANDS = (RetryFailed, CancelRequested, BackgroundPaused, BackgroundResumed, DeadLettersRedriven)


PUBLIC_EVENTS = (BoundaryChanged, AssetImported, ImageRequested, ImageGenerated, ImageFailed, SegmentationChanged,
                 GenerationRequested, GroupDeclared, GroupProgress, GroupFinished, Stuck, *CONTROL_COMMANDS)
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in PUBLIC_EVENTS}
