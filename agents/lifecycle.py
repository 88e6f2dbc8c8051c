"""The store's lifecycle: which targets hold each file, deleting the ones
nobody holds any more, and how big the store is.

1. Whenever a fold changes the files a target's state points at (intake:
   a re-import, a new prompt; projector: a render folded, a composite of a
   new span), the change goes out as OutputReferenced / OutputReleased
   keyed by the file's uri (``announce_references``). A redelivered event
   that changes nothing says its references again, so that no crash loses
   one: a lost reference could get a held file deleted, a lost release
   only keeps one (``regen gc`` finds it).
2. The worker owning a uri's partition folds them into the ``outputs``
   table: the set of holders, and since when it has none.
3. Each worker's GC timer looks at the uris of its own partitions that have
   had no holder for REGEN_GC_GRACE and sends OutputCollectDue for each,
   keyed by uri. The agent decides again in order with every reference
   before it, spares a file written or touched within the grace period (a
   render's cache hit touches its file: the reference it is about to send
   wins), deletes the file confined to the store, and removes the row: the
   deletion happens once.
4. The worker owning partition 0 of ``outputs.references`` walks the store
   every REGEN_STORE_SCAN_INTERVAL (in a thread) and alone reports
   ``regen_store_bytes{kind}`` / ``regen_store_files{kind}``, so a sum
   across workers sharing one store counts it once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from regen.agents.context import WorkerContext
from regen.agents.handling import register_event_agent
from regen.agents.timers import guarded_timer
from regen.imaging.source import open_beneath
from regen.imaging.store_files import StoreFileRefused, store_uri_parts
from regen.imaging.store_walk import Usage, kind_of, remove_store_file, usage
from regen.kinds.base import Kind
from regen.projections import output_refs
from regen.projections.output_refs import OutputRow
from regen.schemas.events import Event, ImageGenerated
from regen.schemas.outputs import OutputCollectDue, OutputReferenced, OutputReleased
from regen.streams.topics import OUTPUT_REFERENCES, partition_for, topic_name

log = logging.getLogger(__name__)

REFERENCES_BATCH = 200  # quick table updates, batched like group members'
ASK_AGAIN_S = 60.0  # a collection asked for and not yet done is asked for again after this


@dataclass
class Lifecycle:
    """What one worker keeps for the store's lifecycle."""

    table: faust.Table
    usage: Usage | None = None  # the last walk of the store, while this worker reports it
    asked: dict[str, float] = field(default_factory=dict)  # uri -> when its collection was asked for
    unheld: int | None = None  # rows of this worker's partitions with no holder, at the last GC tick


def register_lifecycle(ctx: WorkerContext) -> Lifecycle:
    assert ctx.tables.outputs is not None, "create_tables makes the outputs table"
    lifecycle = Lifecycle(ctx.tables.outputs)
    collected_files = Counter("regen_store_collected_files", "Store files deleted by the GC timer, by kind",
                              ["kind"], registry=ctx.metrics.registry)
    collected_bytes = Counter("regen_store_collected_bytes", "Bytes of store files deleted by the GC timer, "
                              "by kind", ["kind"], registry=ctx.metrics.registry)
    folders = output_refs.kind_folders()

    async def on_record(ctx: WorkerContext, event: Event) -> None:
        if isinstance(event, OutputCollectDue):
            freed = await collect(ctx, lifecycle, event)
            if freed is not None:
                collected_files.labels(kind_of(event.uri, folders)).inc()
                collected_bytes.labels(kind_of(event.uri, folders)).inc(freed)
        else:
            fold_reference(lifecycle, event)

    register_event_agent(ctx, OUTPUT_REFERENCES, "output-references", on_record, batch=REFERENCES_BATCH)

    @guarded_timer(ctx, max(0.5, min(60.0, ctx.settings.gc_grace / 4)), "store-gc")
    async def store_gc():
        if ctx.app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            await ask_for_collections(ctx, lifecycle, time.time())

    @guarded_timer(ctx, ctx.settings.store_scan_interval, "store-scan")
    async def store_scan():
        if 0 not in owned_partitions(ctx):
            lifecycle.usage = None  # another worker reports the store
            return
        lifecycle.usage = await asyncio.to_thread(usage, Path(ctx.settings.image_store), folders)

    ctx.metrics.registry.register(_StoreCollector(ctx, lifecycle))
    return lifecycle


# --- 1. telling references ------------------------------------------------------------

async def announce_references(ctx: WorkerContext, kind: Kind, target_id: str, before: Any, after: Any, *,
                              repeat_unchanged: bool = False, completion: Event | None = None) -> None:
    """What a fold changed in the files the target holds, keyed by uri.

    Called after the new state is written (an await between reading a
    state and writing it back would let another handler's write in between
    and be lost), so a crash can come between the write and these sends;
    the redelivered event then changes nothing, and says its references
    again: intake every file the target holds (``repeat_unchanged``), the
    projector the file its completion names. A lost reference could get a
    held file deleted; a lost release only keeps one (``regen gc`` finds it)."""
    at = time.time()
    changes = output_refs.reference_changes(kind, target_id, before, after, ctx.settings, at)
    if not changes and after is not None and (repeat_unchanged or isinstance(completion, ImageGenerated)):
        held = output_refs.held_by(kind, target_id, after, ctx.settings)
        changes = [OutputReferenced(uri, holder, at) for holder, uri in sorted(held.items())
                   if repeat_unchanged or uri == completion.uri]  # type: ignore[union-attr]
    # Sent together, one round trip for all: their order does not matter,
    # since a row left without holders for a moment is not collectable
    # before REGEN_GC_GRACE has passed.
    await asyncio.gather(*(ctx.emit(OUTPUT_REFERENCES, change) for change in changes))


# --- 2. folding them ------------------------------------------------------------------

def fold_reference(lifecycle: Lifecycle, event: Event) -> None:
    uri = event.uri  # type: ignore[attr-defined]  # every record on the topic has one
    before = OutputRow.from_dict(lifecycle.table.get(uri))
    if isinstance(event, OutputReferenced):
        after: OutputRow | None = output_refs.referenced(before, event)
    elif isinstance(event, OutputReleased):
        after = output_refs.released(before, event)
    else:
        return
    if after is not None and after != before:
        lifecycle.table[uri] = after.to_dict()
        if after.held:
            lifecycle.asked.pop(uri, None)


# --- 3. collecting ----------------------------------------------------------------------

def owned_partitions(ctx: WorkerContext) -> frozenset[int]:
    """Partitions of ``outputs.references`` this worker owns now (none while
    it rebalances): rows of the others may be standby copies."""
    app = ctx.app
    if app.rebalancing or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        return frozenset()
    topic = topic_name(ctx.settings, OUTPUT_REFERENCES)
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


async def ask_for_collections(ctx: WorkerContext, lifecycle: Lifecycle, now: float) -> int:
    owned = owned_partitions(ctx)
    if not owned:
        return 0
    partitions, grace = ctx.settings.partitions, ctx.settings.gc_grace
    asked = unheld = 0
    for value in list(lifecycle.table.values()):
        row = OutputRow.from_dict(value)
        if row is None or row.held or partition_for(row.uri, partitions) not in owned:
            continue
        unheld += 1
        if not output_refs.collectable(row, now, grace):
            continue
        if now - lifecycle.asked.get(row.uri, 0.0) < ASK_AGAIN_S:
            continue
        lifecycle.asked[row.uri] = now
        await ctx.emit(OUTPUT_REFERENCES, OutputCollectDue(row.uri, row.released_at or 0.0))
        asked += 1
    lifecycle.asked = {uri: t for uri, t in lifecycle.asked.items() if now - t < ASK_AGAIN_S}
    lifecycle.unheld = unheld
    return asked


async def collect(ctx: WorkerContext, lifecycle: Lifecycle, event: OutputCollectDue) -> int | None:
    """Delete the file if its row still says nobody has held it for the
    grace period; the bytes freed, or None if nothing was deleted."""
    row = OutputRow.from_dict(lifecycle.table.get(event.uri))
    now, grace = time.time(), ctx.settings.gc_grace
    if row is None or row.released_at != event.released_at or not output_refs.collectable(row, now, grace):
        return None  # held again, collected already, or a forged request
    store = Path(ctx.settings.image_store)
    try:
        outcome, value = await asyncio.to_thread(_remove_unless_fresh, store, event.uri, now, grace)
    except StoreFileRefused as e:
        log.warning("not collecting %r: %s", event.uri, e)
        del lifecycle.table[event.uri]
        return None
    if outcome == "fresh":  # written or found by a render meanwhile: wait a grace period from then
        lifecycle.table[event.uri] = OutputRow(row.uri, row.holders, max(value, row.released_at or 0.0),
                                               row.overflowed).to_dict()
        return None
    del lifecycle.table[event.uri]
    lifecycle.asked.pop(event.uri, None)
    if outcome == "missing":
        return None
    log.info("collected %s (%d bytes, no holder since %.0f s)", event.uri, value, now - (row.released_at or now))
    return int(value)


def _remove_unless_fresh(store: Path, uri: str, now: float, grace: float) -> tuple[str, float]:
    """("removed", bytes), ("missing", 0) or ("fresh", its mtime)."""
    try:
        fd = open_beneath(store, store_uri_parts(uri))
    except FileNotFoundError:
        return "missing", 0
    except OSError as e:
        raise StoreFileRefused(f"{uri!r} is not a plain file in the image store ({e.strerror})") from e
    try:
        mtime = os.fstat(fd).st_mtime
    finally:
        os.close(fd)
    if not output_refs.untouched_for(mtime, now, grace):
        return "fresh", mtime
    freed = remove_store_file(store, uri)
    return ("missing", 0) if freed is None else ("removed", freed)


# --- 4. store size ------------------------------------------------------------------------

class _StoreCollector:
    def __init__(self, ctx: WorkerContext, lifecycle: Lifecycle) -> None:
        self._ctx, self._lifecycle = ctx, lifecycle

    def describe(self):
        return []

    def collect(self):
        if self._lifecycle.unheld is not None:
            yield GaugeMetricFamily("regen_store_unheld_files", "Store files no target holds, in this worker's "
                                    "partitions (deleted once REGEN_GC_GRACE has passed)",
                                    value=self._lifecycle.unheld)
        found = self._lifecycle.usage
        if found is not None:
            size = GaugeMetricFamily("regen_store_bytes", "Bytes of the image store, by kind (reported by one "
                                     "worker: the owner of outputs.references partition 0)", labels=["kind"])
            count = GaugeMetricFamily("regen_store_files", "Files of the image store, by kind (reported by one "
                                      "worker: the owner of outputs.references partition 0)", labels=["kind"])
            for kind in sorted(found.files):
                size.add_metric([kind], found.bytes[kind])
                count.add_metric([kind], found.files[kind])
            yield size
            yield count
