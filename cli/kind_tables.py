"""What the CLI reads about every kind: its tables and its source topics."""

from __future__ import annotations

import asyncio

from regen.kinds import KINDS
from regen.settings import Settings
from regen.streams.results import read_table
from regen.streams.topics import TOPIC_FOR_EVENT, TopicSpec

# suffix -> topic, for every topic a kind's source events arrive on
KIND_SOURCE_TOPICS: dict[str, TopicSpec] = {
    TOPIC_FOR_EVENT[event_type].suffix: TOPIC_FOR_EVENT[event_type]
    for kind in KINDS.values() for event_type in kind.source_events
}


async def read_kind_tables(settings: Settings, bootstrap: str) -> dict[str, dict[str, dict]]:
    """Every kind's table as the workers hold it (read from the changelogs)."""
    names = sorted({kind.table for kind in KINDS.values()})
    rows = await asyncio.gather(*(read_table(settings, bootstrap, name) for name in names))
    return dict(zip(names, rows, strict=True))
