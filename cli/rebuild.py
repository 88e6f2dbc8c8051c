"""`regen rebuild-projections`: fold the topics into fresh projections and
compare them with the live tables (read from their changelogs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from regen.projections.rebuild import TABLES, Comparison, Projections, compare, rebuild
from regen.settings import Settings
from regen.streams.codec import decode
from regen.streams.connection import bootstrap_servers
from regen.streams.exceptions import PoisonEvent
from regen.streams.results import read_table, read_to_end
from regen.streams.topics import ASSETS_IMPORTED, BOUNDARIES_CHANGED, IMAGES_RESULTS, topic_name

# Everything the projections are folded from. Requests are not needed: every
# effect of a request is a completion on images.results.
SOURCES = (ASSETS_IMPORTED, BOUNDARIES_CHANGED, IMAGES_RESULTS)


async def read_events(settings: Settings, bootstrap: str) -> list:
    """Every event of the source and completion topics, in timestamp order."""
    stamped = []
    for rank, spec in enumerate(SOURCES):
        for record in await read_to_end(settings, bootstrap, topic_name(settings, spec)):
            try:
                event, _ = decode(record.value, record.headers, spec.event_types)
            except PoisonEvent:
                continue
            stamped.append(((record.timestamp, rank, record.partition, record.offset), event))
    stamped.sort(key=lambda item: item[0])
    return [event for _, event in stamped]


async def live_projections(settings: Settings, bootstrap: str) -> Projections:
    tables = await asyncio.gather(*(read_table(settings, bootstrap, name) for name in TABLES))
    return Projections(**dict(zip(TABLES, tables, strict=True)))


async def rebuild_and_compare(settings: Settings, output: Path | None = None) -> tuple[int, Comparison]:
    bootstrap = bootstrap_servers(settings)
    events = await read_events(settings, bootstrap)
    rebuilt = rebuild(events)
    if output is not None:
        with output.open("wb") as f:
            for table in TABLES:
                for key, value in sorted(rebuilt.table(table).items()):
                    f.write(orjson.dumps({"table": table, "key": key, "value": value}) + b"\n")
    return len(events), compare(await live_projections(settings, bootstrap), rebuilt)


def describe(events: int, comparison: Comparison, limit: int = 20) -> str:
    counts = ", ".join(f"{comparison.compared[t]} {t}" for t in TABLES)
    lines = [f"rebuilt from {events} event(s); compared {counts}"]
    busy = sum(comparison.in_flight.values())
    if busy:
        lines.append(f"{busy} live entr{'y' if busy == 1 else 'ies'} in flight (running or retrying): not compared")
    if comparison.equal:
        lines.append("the rebuilt projections equal the live ones")
    else:
        lines.append(f"{len(comparison.differences)} difference(s):")
        lines += [f"  {d.describe()}" for d in comparison.differences[:limit]]
        if len(comparison.differences) > limit:
            lines.append(f"  … and {len(comparison.differences) - limit} more (--json lists them all)")
    return "\n".join(lines)


def to_json(events: int, comparison: Comparison) -> dict:
    return {"events": events, "equal": comparison.equal, "compared": comparison.compared,
            "in_flight": comparison.in_flight,
            "differences": [{"table": d.table, "key": d.key, "live": d.live, "rebuilt": d.rebuilt}
                            for d in comparison.differences]}
