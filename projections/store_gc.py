"""What `regen gc` removes: store files no projection references, older
than the grace period. Pure, given the tables and the store's files.

The referenced set is fleet-wide: every kind's table as read from its
changelog (every partition), each row's ``Kind.held_outputs``, plus every
uri the ``outputs`` table says someone holds. A file written within the
grace period survives even when nothing references it yet: a render that
just finished is folded (and its file held) a moment later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from regen.imaging.store_walk import StoreFile, kind_of
from regen.kinds import KINDS
from regen.projections.output_refs import OutputRow, collectable, held_by
from regen.schemas.outputs import OutputReferenced
from regen.settings import Settings


def referenced_uris(kind_rows: Mapping[str, Mapping[str, dict]], output_rows: Mapping[str, dict],
                    settings: Settings) -> set[str]:
    referenced: set[str] = set()
    for kind in KINDS.values():
        for target_id, value in kind_rows.get(kind.table, {}).items():
            state = kind.read(value)
            if state is not None:
                referenced.update(uri for _, uri in kind.held_outputs(target_id, state, settings))
    for value in output_rows.values():
        row = OutputRow.from_dict(value)
        if row is not None and row.held:
            referenced.add(row.uri)
    return referenced


def held_references(kind_rows: Mapping[str, Mapping[str, dict]], settings: Settings,
                    at: float) -> list[OutputReferenced]:
    """An OutputReferenced for every file every target holds: what seeds the
    ``outputs`` table of a store whose files were rendered before references
    were kept (until then a release could let the GC timer take a file
    another, never announced, holder still points at)."""
    told = []
    for kind in KINDS.values():
        for target_id, value in sorted(kind_rows.get(kind.table, {}).items()):
            state = kind.read(value)
            for holder, uri in sorted(held_by(kind, target_id, state, settings).items()):
                told.append(OutputReferenced(uri, holder, at))
    return told


@dataclass
class GcPlan:
    remove: list[StoreFile] = field(default_factory=list)
    walked: int = 0
    referenced: int = 0  # files kept: a projection points at them
    young: int = 0  # files kept: not referenced, but written within the grace period
    outside: int = 0  # files kept: outside every kind's folder (not regen's to judge)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.remove)


def plan_collection(files: Iterable[StoreFile], referenced: set[str], folders: Mapping[str, str], now: float,
                    older_than: float) -> GcPlan:
    plan = GcPlan()
    for file in files:
        plan.walked += 1
        if file.uri.split("/", 1)[0] not in folders:
            plan.outside += 1
        elif file.uri in referenced:
            plan.referenced += 1
        elif now - file.mtime < older_than:
            plan.young += 1
        else:
            plan.remove.append(file)
    return plan


@dataclass(frozen=True)
class Waiting:
    """Rows of the ``outputs`` table with no holder: the GC timer's queue."""

    unheld: int
    due: int  # past the grace period: deleted at the GC timer's next tick


def waiting_for_timer(output_rows: Mapping[str, dict], now: float, grace: float) -> Waiting:
    rows = [r for r in (OutputRow.from_dict(v) for v in output_rows.values()) if r is not None and not r.held]
    return Waiting(len(rows), sum(1 for r in rows if collectable(r, now, grace)))


def by_kind(files: Iterable[StoreFile], folders: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """kind -> (files, bytes)."""
    found: dict[str, tuple[int, int]] = {kind: (0, 0) for kind in folders.values()}
    for file in files:
        kind = kind_of(file.uri, folders)
        count, size = found.get(kind, (0, 0))
        found[kind] = (count + 1, size + file.bytes)
    return found


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """"90", "90s", "15m", "2h", "1d" in seconds; ValueError says what is valid."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration: a number with an optional unit s, m, h or d (e.g. 2h)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
