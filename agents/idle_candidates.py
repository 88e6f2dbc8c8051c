"""What the idle scheduler waits on: the targets of "when idle" kinds, by
the time they last changed. Intake notes them (agents/intake.py); the idle
scheduler takes the ones that are due (agents/idle.py). Held in memory: a
restart rebuilds them from the recovered tables."""

from __future__ import annotations

from regen.projections.planning import idle_long_enough


class IdleCandidates:
    """Targets waiting to be left alone: (kind, target id) -> (the revision
    to render, monotonic time of the last change). Intake notes them; the
    idle scheduler takes the ones that are due."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], tuple[int, float]] = {}
        self.loaded = False  # rebuilt from the recovered tables yet?

    def note(self, kind: str, target_id: str, revision: int, changed_at: float) -> None:
        self._waiting[(kind, target_id)] = (revision, changed_at)

    def note_unless_known(self, kind: str, target_id: str, revision: int, changed_at: float) -> None:
        self._waiting.setdefault((kind, target_id), (revision, changed_at))

    def take_due(self, now: float, idle_delay: float) -> list[tuple[str, str, int]]:
        """(kind, target id, revision) of every candidate idle long enough, removed."""
        due = [key for key, (_, changed) in self._waiting.items() if idle_long_enough(changed, now, idle_delay)]
        return [(*key, self._waiting.pop(key)[0]) for key in due]

    def revision_of(self, kind: str, target_id: str) -> int | None:
        known = self._waiting.get((kind, target_id))
        return known[0] if known else None
