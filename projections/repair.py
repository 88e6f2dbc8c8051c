"""Which recorded outputs need rendering again. Pure, given a checker for one output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from regen.kinds import KINDS
from regen.schemas.events import Target
from regen.settings import Settings

# (uri, bytes, sha256) -> "missing" | "truncated" | "changed" | None
Checker = Callable[[str, int, str], "str | None"]
_ABSENT = object()


@dataclass(frozen=True)
class Damage:
    target: Target
    variant: str
    uri: str  # "" for an output never rendered
    problem: str  # missing, truncated, changed, unreadable; not rendered, failed

    @property
    def force(self) -> bool:
        """A failed target is asked for with force: a plain request is
        answered with the failure it already had."""
        return self.problem == "failed"


def find_damage(rows: dict[str, dict[str, dict]], check: Checker, settings: Settings, *,
                scope: dict[str, str] | None = None, limit: int | None = None) -> list[Damage]:
    """Finished outputs, of every kind, whose file is not what was recorded,
    and standing variants a kind says were never rendered or failed
    (``Kind.unrendered_outputs``: overlays).

    ``scope`` narrows by what a kind's targets belong to ({"video": id}: one
    video's composites; {"batch": id}: one import batch's thumbnails); a kind
    whose targets have no such thing is left out."""
    found: list[Damage] = []
    for kind in KINDS.values():
        for target_id, value in sorted(rows.get(kind.table, {}).items()):
            state = kind.read(value)
            if state is None:  # a malformed row
                continue
            belongs = kind.scope(state)
            if any(belongs.get(name, _ABSENT) != wanted for name, wanted in (scope or {}).items()):
                continue
            for recorded in kind.recorded_outputs(target_id, state, settings):
                output = recorded.output
                problem = check(output["uri"], output["bytes"], output["sha256"])
                if problem is not None:
                    found.append(Damage(recorded.target, recorded.variant, output["uri"], problem))
            found.extend(Damage(u.target, u.variant, "", u.problem)
                         for u in kind.unrendered_outputs(target_id, state, settings))
            if limit is not None and len(found) >= limit:
                return found[:limit]  # no need to read every file of a large store for --limit
    return found[:limit] if limit is not None else found
