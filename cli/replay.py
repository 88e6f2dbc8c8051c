"""`regen replay`: re-feed the source topics to the renderers.

The source events themselves are never published again (the topics stay
the record of what happened). Instead, for every target they name — the
latest import of each asset, the latest revision of each annotation — the
replay publishes a background ImageRequested and waits for its answer:

- an output the projections record for the target's current revision, and
  that is in the store with that size and sha256, is skipped without asking
  a worker (unless ``--force``); a worker asked anyway answers it from the
  store too;
- a missing or changed output is rendered again;
- the completion names the replay's request, so the counts are exact.

Interrupting is safe: running it again skips what is already done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from regen.cli.kind_tables import KIND_SOURCE_TOPICS
from regen.imaging.errors import StorageError
from regen.imaging.verified_outputs import VerifiedOutputs
from regen.kinds import KINDS
from regen.projections.replay import ReplayItem, Rows, intact_in_store, replay_items
from regen.schemas.events import ImageFailed, ImageGenerated
from regen.settings import Settings
from regen.streams.client import ImageClient
from regen.streams.codec import decode
from regen.streams.connection import bootstrap_servers
from regen.streams.exceptions import PoisonEvent, RegenError
from regen.streams.results import changelog_topic, table_rows
from regen.streams.snapshot import read_topics_to_end
from regen.streams.topics import topic_name

SOURCE_TOPICS = KIND_SOURCE_TOPICS
# Requests in flight at once: enough to keep every render process and the
# intake busy, few enough that an interrupted replay leaves little behind.
WINDOW = 500


@dataclass
class ReplaySummary:
    seen: int = 0  # source events read
    targets: int = 0  # target-variant pairs asked for
    rendered: int = 0
    skipped: int = 0  # already in the store, intact
    failed: int = 0
    unanswered: int = 0
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"seen": self.seen, "targets": self.targets, "rendered": self.rendered, "skipped": self.skipped,
                "failed": self.failed, "unanswered": self.unanswered, "seconds": round(self.seconds, 2),
                "failures": self.failures[:20]}

    def describe(self) -> str:
        rate = self.targets / self.seconds if self.seconds else 0.0
        text = (f"replayed {self.seen} source event(s) -> {self.targets} image(s): {self.rendered} rendered, "
                f"{self.skipped} skipped (intact), {self.failed} failed in {self.seconds:.1f} s ({rate:.0f}/s)")
        if self.unanswered:
            text += f"; {self.unanswered} not answered yet (still queued: run it again later)"
        for failure in self.failures[:10]:
            text += f"\n  failed {failure['target']} {failure['variant']}: {failure['reason']}: {failure['error']}"
        return text


def parse_since(text: str) -> int:
    """ISO 8601 time (UTC unless it says otherwise) -> epoch milliseconds."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RegenError(f"--since {text!r} is not a time like 2026-11-21T14:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


async def read_items(settings: Settings, bootstrap: str, topics: tuple[str, ...], since_ms: int | None,
                     variants: tuple[str, ...], progress: bool) -> tuple[int, list[ReplayItem]]:
    seen, items, _ = await read_snapshot(settings, bootstrap, topics, since_ms, variants, progress, tables=False)
    return seen, items


async def read_snapshot(settings: Settings, bootstrap: str, topics: tuple[str, ...], since_ms: int | None,
                        variants: tuple[str, ...], progress: bool, *, tables: bool
                        ) -> tuple[int, list[ReplayItem], Rows]:
    """The source events read, the items they ask for and (with ``tables``)
    every kind's table as the workers hold it: all read through one consumer
    (streams/snapshot.py), the tables' changelogs with the sources."""
    unknown = [t for t in topics if t not in SOURCE_TOPICS]
    if unknown:
        raise RegenError(f"--topic {', '.join(unknown)}: not a source topic (choose from {', '.join(SOURCE_TOPICS)})")
    not_configured = [v for v in variants if v not in settings.variants]
    if not_configured:
        raise RegenError(f"--variant {', '.join(not_configured)} is not configured (REGEN_VARIANTS: "
                         f"{', '.join(settings.variants)})")
    specs = {topic_name(settings, SOURCE_TOPICS[suffix]): SOURCE_TOPICS[suffix]
             for suffix in topics or tuple(SOURCE_TOPICS)}
    table_names = sorted({kind.table for kind in KINDS.values()}) if tables else []
    changelogs = {changelog_topic(settings, table): table for table in table_names}
    bar = tqdm(desc="reading", unit=" events", disable=not progress, leave=False)
    records = await read_topics_to_end(
        settings, bootstrap, {**dict.fromkeys(specs, since_ms), **dict.fromkeys(changelogs)},
        on_record=lambda r: bar.update() if r.topic in specs else None)
    bar.close()
    events = []
    for name, spec in specs.items():
        for record in records[name]:
            try:
                # Not validated again: workers checked every event when it came
                # in, and a replay only takes ids and revisions from them.
                events.append(decode(record.value, record.headers, spec.event_types, validate=False)[0])
            except PoisonEvent:
                continue  # it went to the dead-letter topic when the worker met it
    rows = {table: table_rows(records[name]) for name, table in changelogs.items()}
    return len(events), replay_items(events, settings, only_variants=variants), rows


async def replay(settings: Settings, *, topics: tuple[str, ...] = (), since_ms: int | None = None,
                 variants: tuple[str, ...] = (), force: bool = False, wait: bool = True,
                 timeout: float = 3600.0, progress: bool = True) -> ReplaySummary:
    bootstrap = bootstrap_servers(settings)
    started = time.monotonic()
    summary = ReplaySummary()
    summary.seen, items, rows = await read_snapshot(settings, bootstrap, topics, since_ms, variants, progress,
                                                    tables=not force)
    summary.targets = len(items)
    if not force:
        # What the projections record as rendered, and is intact on disk, needs no worker.
        items = await asyncio.to_thread(_not_intact, settings, items, rows)
        summary.skipped = summary.targets - len(items)
    if not items:
        summary.seconds = time.monotonic() - started
        return summary
    async with ImageClient(settings, bootstrap, source="regen/replay") as client:
        requests = [client.make_request(i.target, i.variant, force=force, priority="background") for i in items]
        if not wait:
            for start in range(0, len(requests), WINDOW):
                waiters = await client.submit(requests[start:start + WINDOW])
                for w in waiters:
                    w.cancel()
            summary.unanswered = len(requests)
            summary.seconds = time.monotonic() - started
            return summary
        bar = tqdm(total=len(requests), desc="replaying", unit=" images", disable=not progress)
        try:
            def counted(completion) -> None:
                _count(summary, completion)
                bar.update()

            summary.unanswered = await client.request_all(requests, counted, timeout=timeout, window=WINDOW)
        finally:
            bar.close()
            summary.seconds = time.monotonic() - started
    return summary


def _not_intact(settings: Settings, items: list[ReplayItem], rows: Rows) -> list[ReplayItem]:
    # Files unchanged since a previous replay verified them are not read
    # again (imaging/verified_outputs.py); any other is hashed in full.
    verified = VerifiedOutputs(Path(settings.image_store), Path(settings.state_dir))
    try:
        return [i for i in items if not intact_in_store(i, rows, verified.problem)]
    finally:
        with contextlib.suppress(OSError, StorageError):  # only a cache: the next replay hashes again
            verified.save()


def _count(summary: ReplaySummary, completion) -> None:
    if isinstance(completion, ImageGenerated):
        if completion.cache_hit:
            summary.skipped += 1
        else:
            summary.rendered += 1
    elif isinstance(completion, ImageFailed):
        summary.failed += 1
        summary.failures.append({"target": str(completion.target), "variant": completion.variant,
                                 "reason": completion.reason, "error": completion.error})


def dry_run(settings: Settings, *, topics: tuple[str, ...] = (), since_ms: int | None = None,
            variants: tuple[str, ...] = ()) -> dict:
    """What a replay would ask for, without asking."""
    seen, items = asyncio.run(read_items(settings, bootstrap_servers(settings), topics, since_ms, variants, True))
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item.target.kind] = kinds.get(item.target.kind, 0) + 1
    return {"seen": seen, "targets": len(items), "by_kind": kinds,
            "variants": sorted({i.variant for i in items}), "image_store": str(Path(settings.image_store))}
