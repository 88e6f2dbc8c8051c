"""What a replay asks for: from source events, the current targets and variants.

Pure: the caller reads the topics and the tables and publishes the requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from regen.kinds import KINDS, kinds_following
from regen.projections.repair import Checker
from regen.schemas.events import Event, Target
from regen.settings import Settings

# table name -> target id -> row, as read from the tables' changelogs
Rows = dict[str, dict[str, dict]]


@dataclass(frozen=True)
class ReplayItem:
    target: Target
    variant: str


def replay_items(events: Iterable[Event], settings: Settings, only_variants: tuple[str, ...] = ()) -> list[ReplayItem]:
    """One item per target and variant, for the target's latest state: the
    source events folded by each kind's own fold (the last import of an
    asset, the highest revision of an annotation).

    ``only_variants`` restricts a replay (say, to a variant just added); each
    kind decides which of them it renders by itself (``replay_variants``).
    """
    latest: dict[tuple[str, str], object] = {}
    for event in events:
        for kind in kinds_following(event):
            key = (kind.name, kind.source_key(event))
            latest[key] = kind.fold_source(latest.get(key), event, "")
    return [ReplayItem(Target(kind.name, target_id), variant)
            for kind in KINDS.values()  # kind by kind, each in the order its targets first appeared
            for (kind_name, target_id) in latest if kind_name == kind.name
            for variant in kind.replay_variants(settings, only_variants)]


def intact_in_store(item: ReplayItem, rows: Rows, check: Checker) -> bool:
    """Whether the projections record an output for the item's current
    revision and the file is there with that size and sha256: a replay can
    skip it without asking a worker."""
    kind = KINDS[item.target.kind]
    state = kind.read(rows.get(kind.table, {}).get(item.target.id))
    output = kind.current_output(state, item.variant) if state is not None else None
    if not output:
        return False
    return check(output["uri"], output["bytes"], output["sha256"]) is None
