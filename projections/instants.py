"""ISO 8601 times as regen reads them: in table rows, operator commands and
query strings. One reading everywhere: ``Z`` or an offset, and UTC when the
time names none (a naive time once meant the worker's local time here and
UTC there)."""

from __future__ import annotations

from datetime import UTC, datetime


def instant(text: str | None) -> datetime | None:
    """The time ``text`` names, or None if there is none or it is not ISO 8601
    (times in table rows are unchecked strings)."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def epoch(text: str | None) -> float | None:
    """Seconds since the epoch of the time ``text`` names (None as for :func:`instant`)."""
    moment = instant(text)
    return moment.timestamp() if moment is not None else None
