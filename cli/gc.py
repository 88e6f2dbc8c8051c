"""`regen gc` and `regen status store`: what the image store holds, and
removing the files no projection references (projections/store_gc.py).

Run where the store is mounted (beside a worker). The projections are read
from the tables' changelogs, so every worker's partitions count.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from regen.cli.kind_tables import read_kind_tables
from regen.imaging.store_files import StoreFileRefused
from regen.imaging.store_walk import StoreFile, remove_store_file, walk_store
from regen.projections.output_refs import kind_folders
from regen.projections.store_gc import (
    GcPlan,
    Waiting,
    by_kind,
    held_references,
    plan_collection,
    referenced_uris,
    waiting_for_timer,
)
from regen.settings import Settings
from regen.streams.connection import bootstrap_servers
from regen.streams.exceptions import BrokerError
from regen.streams.publisher import Publisher
from regen.streams.results import read_table

OUTPUTS_TABLE = "outputs"  # agents/lifecycle.py


@dataclass
class GcReport:
    plan: GcPlan
    older_than: float
    removed: int = 0
    removed_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self, dry_run: bool) -> dict:
        row = {"walked": self.plan.walked, "referenced": self.plan.referenced, "young": self.plan.young,
               "outside_kind_folders": self.plan.outside, "older_than_s": self.older_than,
               "unreferenced": len(self.plan.remove), "unreferenced_bytes": self.plan.bytes,
               "items": [{"uri": f.uri, "bytes": f.bytes} for f in self.plan.remove]}
        if not dry_run:
            row.update(removed=self.removed, removed_bytes=self.removed_bytes, errors=self.errors)
        return row

    def describe(self, dry_run: bool) -> str:
        plan = self.plan
        kept = (f"{plan.walked} file(s) walked: {plan.referenced} referenced, {plan.young} unreferenced but "
                f"younger than {self.older_than:.0f} s" + (f", {plan.outside} outside the kinds' folders"
                                                           if plan.outside else ""))
        if dry_run:
            lines = [f"  {f.bytes:>12,d}  {f.uri}" for f in plan.remove]
            lines.append(f"would remove {len(plan.remove)} file(s), {size(plan.bytes)} in all")
            return "\n".join([*lines, kept])
        lines = [f"removed {self.removed} file(s), {size(self.removed_bytes)}", kept]
        lines += [f"  not removed: {e}" for e in self.errors[:10]]
        return "\n".join(lines)


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # unreachable


async def read_references(settings: Settings, bootstrap: str) -> tuple[set[str], dict[str, dict]]:
    kind_rows, output_rows = await asyncio.gather(read_kind_tables(settings, bootstrap),
                                                  _read_outputs(settings, bootstrap))
    return referenced_uris(kind_rows, output_rows, settings), output_rows


async def _read_outputs(settings: Settings, bootstrap: str) -> dict[str, dict]:
    """The outputs table; empty where no worker has kept references yet
    (its changelog does not exist): the projections alone decide then."""
    try:
        return await read_table(settings, bootstrap, OUTPUTS_TABLE)
    except BrokerError as e:
        if "does not exist" not in str(e):
            raise
        return {}


def walk(store: Path, progress: bool) -> list[StoreFile]:
    with tqdm(desc="walking the store", unit=" files", disable=not progress) as bar:
        files = []
        for file in walk_store(store):
            files.append(file)
            bar.update()
        return files


async def gc(settings: Settings, *, dry_run: bool, older_than: float | None = None,
             progress: bool = True) -> GcReport:
    older_than = settings.gc_grace if older_than is None else older_than
    store = Path(settings.image_store)
    # The projections first, the files second: a file written after the
    # read is young, and kept.
    referenced, _ = await read_references(settings, bootstrap_servers(settings))
    files = await asyncio.to_thread(walk, store, progress)
    report = GcReport(plan_collection(files, referenced, kind_folders(), time.time(), older_than), older_than)
    if dry_run:
        return report
    for file in tqdm(report.plan.remove, desc="removing", unit=" files", disable=not progress):
        try:
            freed = remove_store_file(store, file.uri)
        except (StoreFileRefused, OSError) as e:
            report.errors.append(f"{file.uri}: {e}")
            continue
        if freed is not None:
            report.removed += 1
            report.removed_bytes += freed
    return report


@dataclass
class StoreStatus:
    kinds: dict[str, tuple[int, int]]
    waiting: Waiting
    gc: GcPlan

    def to_json(self) -> dict:
        return {"kinds": {k: {"files": f, "bytes": b} for k, (f, b) in sorted(self.kinds.items())},
                "unheld": self.waiting.unheld, "unheld_due": self.waiting.due,
                "unreferenced": len(self.gc.remove), "unreferenced_bytes": self.gc.bytes,
                "unreferenced_young": self.gc.young}

    def describe(self) -> str:
        lines = [f"{'kind':<12} {'files':>10} {'bytes':>14}"]
        for kind, (files, n) in sorted(self.kinds.items()):
            lines.append(f"{kind:<12} {files:>10,d} {n:>14,d}")
        total_files = sum(f for f, _ in self.kinds.values())
        total_bytes = sum(b for _, b in self.kinds.values())
        lines.append(f"{'total':<12} {total_files:>10,d} {total_bytes:>14,d}  ({size(total_bytes)})")
        lines.append(f"released by every target: {self.waiting.unheld} file(s), {self.waiting.due} past the "
                     f"grace period (the GC timer deletes them)")
        lines.append(f"referenced by no projection: {len(self.gc.remove)} file(s), {size(self.gc.bytes)} "
                     f"(`regen gc` removes them), {self.gc.young} more younger than the grace period")
        return "\n".join(lines)


async def store_status(settings: Settings, progress: bool = False) -> StoreStatus:
    referenced, output_rows = await read_references(settings, bootstrap_servers(settings))
    files = await asyncio.to_thread(walk, Path(settings.image_store), progress)
    folders = kind_folders()
    now = time.time()
    return StoreStatus(by_kind(files, folders), waiting_for_timer(output_rows, now, settings.gc_grace),
                       plan_collection(files, referenced, folders, now, settings.gc_grace))


async def seed_references(settings: Settings) -> int:
    """Tell the workers every file the projections hold (OutputReferenced,
    idempotent): once, on a store with files rendered before references
    were kept. Returns how many references were sent."""
    bootstrap = bootstrap_servers(settings)
    told = held_references(await read_kind_tables(settings, bootstrap), settings, time.time())
    async with Publisher(settings, bootstrap, source="regen/gc") as publisher:
        for start in range(0, len(told), 1000):
            await publisher.publish_many(told[start:start + 1000])
    return len(told)
