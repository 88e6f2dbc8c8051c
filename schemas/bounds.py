"""Bounds on what an event or a table row may carry, declared on the record's
fields with ``typing.Annotated`` and enforced by ``schemas.typed``.

Anyone who can write to a topic can send any JSON: without bounds, one event
could carry megabytes of text into a table, or a frame number no decoder can
seek to. The public events' JSON Schema files declare the same bounds (a unit
test checks that records and schemas agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1

# Identifiers and paths: a path is at most PATH_MAX (4096) on Linux, and no
# id regen makes comes near it. Unannotated strings get this bound too.
MAX_SHORT_CHARS = 4096
# Error text quotes file names and decoder messages (imaging cuts its own to
# 2000 characters); room for that plus context, still small for a table row.
MAX_ERROR_CHARS = 16384
# Lists: request ids (a job keeps 32), sampled frames (default cap 64),
# failures (50 a shard). Far above any of them, far below a memory problem.
MAX_ITEMS = 10000


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a number. Integers always stay within signed 64-bit."""

    minimum: int | float | None = None
    maximum: int | float | None = None


@dataclass(frozen=True)
class Length:
    """Inclusive bounds of a string's length in characters."""

    max_length: int
    min_length: int = 0


@dataclass(frozen=True)
class Pattern:
    """A regular expression the whole string must match (``re.match``; anchor it)."""

    regex: str


@dataclass(frozen=True)
class OneOf:
    """A string that must be one of ``values`` (a JSON Schema enum kept in a file)."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class MaxItems:
    count: int


@dataclass(frozen=True)
class MinItems:
    count: int


@dataclass(frozen=True)
class IsoTimestamp:
    """A string regen parses later with ``datetime.fromisoformat`` (after Z -> +00:00).
    ``allow_empty``: "" stands for "not known" where a record has always allowed it."""

    allow_empty: bool = False


@dataclass(frozen=True)
class Shape:
    """A JSON object kept as a dict (callers index it) but checked to read as ``record``."""

    record: type


ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# A path inside the image store: relative (no leading /), no .. component, no
# NUL. A forged completion must not make regen open /dev/zero or ../../etc.
STORE_PATH_PATTERN = r"^(?!/)(?!(.*/)?\.\.(/|$))[^\x00]+$"

Id = Annotated[str, Length(200, 1), Pattern(ID_PATTERN)]
Sha256 = Annotated[str, Length(64, 64), Pattern(SHA256_PATTERN)]
Variant = Annotated[str, Length(64, 1)]
ShortText = Annotated[str, Length(MAX_SHORT_CHARS)]
SourcePath = Annotated[str, Length(MAX_SHORT_CHARS, 1)]  # confined to a media root when opened
StorePath = Annotated[str, Length(MAX_SHORT_CHARS, 1), Pattern(STORE_PATH_PATTERN)]
ErrorText = Annotated[str, Length(MAX_ERROR_CHARS)]
Timestamp = Annotated[str, Length(40, 10), IsoTimestamp()]
TimestampOrEmpty = Annotated[str, Length(40), IsoTimestamp(allow_empty=True)]

# Frame numbers, pixel coordinates and revisions fit a 32-bit int: decoders
# and the composite's arithmetic take no more.
FrameNumber = Annotated[int, Range(0, INT32_MAX)]
Coordinate = Annotated[int, Range(0, INT32_MAX)]
Revision = Annotated[int, Range(0, INT32_MAX)]
Pixels = Annotated[int, Range(1, INT32_MAX)]
Count = Annotated[int, Range(0, INT64_MAX)]
Milliseconds = Annotated[float, Range(0)]
