"""Which targets hold each store file, and when a file may go. Pure.

A target's state points at store files (``Kind.held_outputs``); when a fold
changes what it points at, the change is told as OutputReferenced and
OutputReleased records keyed by the file's uri (``reference_changes``).
Outputs are content-addressed, so one file may be held by many targets:
the row of a uri keeps the set of its holders, not a count, so a duplicate
or replayed record changes nothing. A file is collectable once its row has
had no holder for the grace period (``collectable``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from regen.kinds.base import Kind
from regen.schemas.events import Event
from regen.schemas.outputs import OutputReferenced, OutputReleased
from regen.settings import Settings

# A forged stream of references to one uri (or one image imported under
# thousands of ids) must not grow its row without bound: every change
# rewrites the row to the changelog. Past this many holders, new ones are
# not recorded and the timer never collects the file (a flood cannot get a
# held file deleted); `regen gc`, which reads the projections, still can.
MAX_HOLDERS = 1000


@dataclass(frozen=True)
class OutputRow:
    """The row of one store uri in the ``outputs`` table."""

    uri: str
    holders: dict[str, float] = field(default_factory=dict)  # holder -> when it took the file
    released_at: float | None = None  # when the last holder let go; None while held
    overflowed: bool = False  # more holders were announced than MAX_HOLDERS: never collected

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "holders": dict(self.holders), "released_at": self.released_at,
                "overflowed": self.overflowed}

    @classmethod
    def from_dict(cls, row: Any) -> OutputRow | None:
        """The row, or None for one that is not (a malformed changelog record)."""
        if not isinstance(row, dict) or not isinstance(row.get("uri"), str):
            return None
        holders = row.get("holders")
        released = row.get("released_at")
        if not isinstance(holders, dict) or not all(isinstance(v, (int, float)) for v in holders.values()):
            return None
        if released is not None and not isinstance(released, (int, float)):
            return None
        return cls(row["uri"], {str(k): float(v) for k, v in holders.items()},
                   None if released is None else float(released), bool(row.get("overflowed", False)))

    @property
    def held(self) -> bool:
        return bool(self.holders) or self.overflowed


def kind_folders() -> dict[str, str]:
    """Top folder of the image store -> the kind whose outputs it holds."""
    from regen.kinds import KINDS

    return {kind.store_folder: kind.name for kind in KINDS.values()}


def holder_name(kind: Kind, target_id: str, slot: str) -> str:
    return f"{kind.name}:{target_id}/{slot}"


def held_by(kind: Kind, target_id: str, state: Any, settings: Settings) -> dict[str, str]:
    """holder -> uri for every file ``state`` points at."""
    if state is None:
        return {}
    return {holder_name(kind, target_id, slot): uri for slot, uri in kind.held_outputs(target_id, state, settings)}


def reference_changes(kind: Kind, target_id: str, before: Any, after: Any, settings: Settings,
                      at: float) -> list[Event]:
    """What a change of a target's state tells the uris' owners: references
    first, so a holder moving from one slot to another never leaves its
    file without one in between."""
    old, new = held_by(kind, target_id, before, settings), held_by(kind, target_id, after, settings)
    taken = [OutputReferenced(uri, holder, at) for holder, uri in sorted(new.items()) if old.get(holder) != uri]
    let_go = [OutputReleased(uri, holder, at) for holder, uri in sorted(old.items()) if new.get(holder) != uri]
    return [*taken, *let_go]


def referenced(row: OutputRow | None, event: OutputReferenced) -> OutputRow:
    row = row or OutputRow(event.uri)
    if event.holder in row.holders:
        return row
    if len(row.holders) >= MAX_HOLDERS:
        return row if row.overflowed else replace(row, overflowed=True)
    return replace(row, holders={**row.holders, event.holder: event.at}, released_at=None)


def released(row: OutputRow | None, event: OutputReleased) -> OutputRow | None:
    """A release of a uri with no row changes nothing: with no record of who
    else holds it (a file referenced before references were kept), the
    timer must not take it; ``regen gc`` decides from the projections."""
    if row is None or event.holder not in row.holders:
        return row
    holders = {h: t for h, t in row.holders.items() if h != event.holder}
    return replace(row, holders=holders, released_at=None if holders else max(event.at, row.released_at or 0.0))


def collectable(row: OutputRow, now: float, grace: float) -> bool:
    """No holder for at least ``grace`` seconds."""
    return not row.held and row.released_at is not None and now - row.released_at >= grace


def due(rows: Iterable[Any], now: float, grace: float) -> Iterator[OutputRow]:
    """The collectable rows among table values (malformed ones skipped)."""
    for value in rows:
        row = OutputRow.from_dict(value)
        if row is not None and collectable(row, now, grace):
            yield row


def untouched_for(mtime: float, now: float, grace: float) -> bool:
    """A file written (or found again by a render's cache hit, which touches
    it) within the grace period may be about to be held: spared."""
    return now - mtime >= grace
