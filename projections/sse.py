"""Server-sent events: framing, event ids and the resume rule. Pure.

Every event a live stream sends carries the whole current state of what it
follows (a batch, a group, a video, the dashboard's overview), never a
difference. So a client that missed events, or reconnects after a worker
went away, needs only the latest state: nothing has to be replayed, and a
slow client may skip intermediate states without losing anything.

Event types (the ``event:`` field):

- ``state``: the current state (``id:`` is the state's id);
- ``finished``: the final state of a batch or group; the stream ends after
  it and a client should not reconnect;
- ``moved``: this stream cannot go on here (the key's partition moved to
  another worker, the worker is rebalancing or stopping); the stream ends
  and the client reconnects after the ``retry:`` it was given, with
  ``Last-Event-ID``, to whichever worker now owns the key.

The format is the WHATWG HTML standard's (``text/event-stream``): UTF-8,
fields ``event``/``data``/``id``/``retry``, a blank line ends an event,
a line starting with ``:`` is a comment (the heartbeat).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

CONTENT_TYPE = "text/event-stream"
STATE, FINISHED, MOVED = "state", "finished", "moved"

# An id is ours when it looks like one we made; anything else a client sends
# in Last-Event-ID (it is a header anyone can set) counts as "no id".
_STATE_ID = re.compile(r"[0-9a-f]{16}")
# Field values may not contain line breaks: they would end the field, and a
# value chosen by someone else could then smuggle in fields of its own.
_LINE_BREAK = re.compile(r"[\r\n]")


def event_frame(event: str, data: object, event_id: str | None = None) -> bytes:
    """One event: its type, an optional id, and ``data`` as one JSON line
    (orjson never writes a raw line break; one inside a string is escaped)."""
    _check_field("event", event)
    lines = [f"event: {event}"]
    if event_id is not None:
        _check_field("id", event_id)
        if "\0" in event_id:  # the standard ignores an id with NUL: it would silently not resume
            raise ValueError("an SSE id may not contain NUL")
        lines.append(f"id: {event_id}")
    return ("\n".join(lines) + "\ndata: ").encode() + orjson.dumps(data) + b"\n\n"


def comment_frame(text: str = "") -> bytes:
    """A comment line: clients ignore it; proxies see traffic and keep the connection."""
    _check_field("comment", text)
    return f": {text}\n\n".encode() if text else b":\n\n"


def retry_frame(milliseconds: int) -> bytes:
    """How long the client waits before it reconnects after the stream ends."""
    return f"retry: {max(0, int(milliseconds))}\n\n".encode()


def _check_field(name: str, value: str) -> None:
    if _LINE_BREAK.search(value):
        raise ValueError(f"an SSE {name} may not contain a line break: {value[:60]!r}")


def state_id(row: object) -> str:
    """The id of a state: a digest of its content, so every worker names the
    same state alike (a client resuming on another worker after a
    rebalance is understood there) and no counter has to survive anything."""
    return hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def resume_id(header: str | None) -> str | None:
    """The client's Last-Event-ID if it is one of ours, else None."""
    value = (header or "").strip()
    return value if _STATE_ID.fullmatch(value) else None


def should_send(last_sent: str | None, current: str, finished: bool) -> bool:
    """Whether a state must go to a client that last got the state ``last_sent``.

    1. A state the client does not have: always.
    2. The state it has, not final: no (it would change nothing on screen;
       the client waits for the next change).
    3. The final state: always, even when the client has it. A client that
       reconnects after ``finished`` (it missed the end of the stream, or
       the end was cut off) must be told again that it is over, or it would
       wait forever for a change that never comes.
    """
    return finished or last_sent != current


@dataclass(frozen=True)
class ParsedEvent:
    event: str
    data: str
    id: str | None
    retry_ms: int | None


class EventParser:
    """Client side: bytes of a ``text/event-stream`` in, events out, with a
    bound on one event's size (a hostile or broken server must not make a
    client buffer without end)."""

    def __init__(self, max_event_bytes: int = 4 * 1024 * 1024) -> None:
        self._max = max_event_bytes
        self._buffer = b""
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> Iterator[ParsedEvent]:
        self._buffer += chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                if len(self._buffer) > self._max:
                    raise ValueError(f"an event of more than {self._max} bytes: not a regen live stream")
                return
            block, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            parsed = self._parse(block.decode("utf-8", "replace"))
            if parsed is not None:
                yield parsed

    def _parse(self, block: str) -> ParsedEvent | None:
        event, data, event_id, retry = "message", [], None, None
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                event_id = self.last_id = value
            elif name == "retry" and value.isdigit():
                retry = self.retry_ms = int(value)
        if not data:
            return None  # a retry or id alone is no event
        return ParsedEvent(event, "\n".join(data), event_id if event_id is not None else self.last_id, retry)
