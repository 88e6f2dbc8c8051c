"""Kafka wire format: orjson bodies, CloudEvents 1.0 attributes in headers
(binary content mode).

A message carries ``ce_specversion``, ``ce_id``, ``ce_source``, ``ce_type``,
``ce_time`` and ``content-type`` headers. ``ce_id`` is unique per event and is
what de-duplication uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from regen.schemas.events import EVENT_TYPES, Event, GroupFinished, GroupProgress, ImageFailed, ImageGenerated, Stuck
from regen.schemas.exceptions import SchemaError
from regen.schemas.jobs import BatchShard, DirtyFlag, GroupMemberChanged, RenderJob
from regen.schemas.outputs import OUTPUT_RECORDS
from regen.schemas.validation import check_semantics, parse_event
from regen.streams.exceptions import PoisonEvent
from regen.streams.utf8 import valid_json_value, valid_utf8

SPECVERSION = b"1.0"
CONTENT_TYPE = b"application/json"
INTERNAL_TYPES: tuple[type[Event], ...] = (RenderJob, DirtyFlag, BatchShard, GroupMemberChanged, *OUTPUT_RECORDS)
# Events only regen's workers publish: publishers' events (imports, boundary
# changes, requests) are always checked against their JSON Schema.
WRITTEN_BY_REGEN: frozenset[type[Event]] = frozenset((*INTERNAL_TYPES, ImageGenerated, ImageFailed,
                                                        GroupProgress, GroupFinished, Stuck))
_BY_CE_TYPE: dict[str, type[Event]] = {cls.ce_type: cls for cls in (*EVENT_TYPES.values(), *INTERNAL_TYPES)}

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Envelope:
    """One message ready for Kafka."""

    key: bytes
    value: bytes
    headers: Headers
    ce_id: str


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(event: Event, source: str, ce_id: str | None = None) -> Envelope:
    """Never raises on text: a string that is not valid UTF-8 (lone
    surrogates, from a file name os.fsdecode could not decode) is sent with
    its bad characters as \\xNN escapes. Checked only after orjson refused,
    so the usual path costs nothing more."""
    ce_id = ce_id or str(uuid.uuid4())
    fields = event.to_dict()
    try:
        body = orjson.dumps(fields)
    except orjson.JSONEncodeError:
        body = orjson.dumps(valid_json_value(fields))
    headers: Headers = [
        ("ce_specversion", SPECVERSION),
        ("ce_id", valid_utf8(ce_id)),
        ("ce_source", valid_utf8(source)),
        ("ce_type", event.ce_type.encode()),
        ("ce_time", now_iso().encode()),
        ("content-type", CONTENT_TYPE),
    ]
    return Envelope(valid_utf8(event.key), body, headers, ce_id)


def header(headers: Iterable[tuple[str, bytes]] | dict | None, name: str) -> str | None:
    """The header's value as text, or None. Tolerates whatever a producer
    sent: null values, odd containers, items that are not pairs."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            continue
        k, v = item
        if k == name:
            if v is None:
                return None
            return bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, bytearray, memoryview)) else str(v)
    return None


def decode(value: bytes | None, headers, expected: Sequence[type[Event]],
           validate: bool = True) -> tuple[Event, str | None]:
    """Decode and validate one message body. Returns (event, ce_id).

    For any bytes and headers, returns an event or raises PoisonEvent with a
    readable reason, nothing else: every field is type-checked against its
    record (``schemas.typed``); publishers' events are also checked against
    their JSON Schema. ``validate=False`` skips the JSON Schema for reading
    back events a worker has already checked (a replay planning what to ask for).

    ``expected`` are the event types the topic may carry; a message without a
    ``ce_type`` header is taken as the first of them, so publishers that cannot
    set headers can still publish.
    """
    ce_type = header(headers, "ce_type")
    if ce_type is None:
        cls = expected[0]
    else:
        named = _BY_CE_TYPE.get(ce_type)
        if named is None or named not in expected:
            allowed = ", ".join(c.ce_type for c in expected)
            raise PoisonEvent(f"ce_type {ce_type!r} is not accepted on this topic (expected {allowed})")
        cls = named
    if value is None:
        raise PoisonEvent("message has no value (tombstone) where an event was expected")
    try:
        body = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError) as e:
        raise PoisonEvent(f"body is not valid JSON: {e}") from e
    try:
        if cls in WRITTEN_BY_REGEN or not validate:  # skip JSON Schema (0.4 ms an event)
            event = cls.from_dict(body)  # typed: a few microseconds
            check_semantics(event)
        else:
            event = parse_event(cls.__name__, body)
    except SchemaError as e:
        raise PoisonEvent(f"{cls.__name__} does not match its schema: {e}") from e
    return event, header(headers, "ce_id")
