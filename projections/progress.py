"""Progress of import batches: counts, rate, ETA and failures. Pure.

A batch's assets are spread over every partition (they are keyed by asset
id), so no one table partition sees a whole batch. Each worker therefore
keeps, in memory, the status of every pre-generated variant of the assets
in *its* partitions (:class:`BatchTracker`, rebuilt from the assets table
after a restart) and reports a small summary per (batch, partition) — a
:class:`BatchShard` — whenever it changed. The ``batches`` table, keyed by
batch id, keeps the latest shard of each partition; the batch is their sum.
Shards replace each other instead of adding up, so a redelivered or
repeated report cannot count twice, and a partition that moves to another
worker is reported by its new owner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from regen.projections.state import Record, VideoState
from regen.schemas.bounds import Count, Shape
from regen.schemas.jobs import BatchShard

MAX_FAILURES = 50  # per shard and per batch: enough to see what went wrong
MAX_SAMPLES = 120  # (time, completed) pairs kept for the rate
RATE_WINDOW_S = 30.0


@dataclass
class _Item:
    status: str
    error: str | None


class BatchTracker:
    """Per worker: batch -> partition -> (asset, variant) -> status."""

    def __init__(self, variants: tuple[str, ...], partition_of: Callable[[str], int]) -> None:
        self._variants = variants
        self._partition_of = partition_of  # target id -> the partition its events are in
        self._items: dict[str, dict[int, dict[tuple[str, str], _Item]]] = {}
        self._changed: set[tuple[str, int]] = set()

    def observe(self, target_id: str, asset: Any) -> None:
        """A target's new state: only imports of a batch (states with a
        batch_id and per-variant statuses) count toward a batch."""
        if not getattr(asset, "batch_id", None) or not hasattr(asset, "variant"):
            return
        partition = self._partition_of(target_id)
        items = self._items.setdefault(asset.batch_id, {}).setdefault(partition, {})
        for variant in self._variants:
            entry = asset.variant(variant)
            if entry is not None and entry.revision < asset.revision:
                entry = None  # a render of content the asset no longer has
            item = _Item("pending", None) if entry is None else _Item(_bucket(entry.status), entry.error)
            if items.get((asset.asset_id, variant)) != item:
                items[(asset.asset_id, variant)] = item
                self._changed.add((asset.batch_id, partition))

    def take_changed(self, at: float) -> list[BatchShard]:
        """Shards of every (batch, partition) that changed since the last call."""
        changed, self._changed = self._changed, set()
        return [self.shard(batch_id, partition, at) for batch_id, partition in sorted(changed)]

    def shard(self, batch_id: str, partition: int, at: float) -> BatchShard:
        items = self._items.get(batch_id, {}).get(partition, {})
        counts = {"completed": 0, "failed": 0, "pending": 0}
        failures: list[dict] = []
        for (asset_id, variant), item in sorted(items.items()):
            counts[item.status] += 1
            if item.status == "failed" and len(failures) < MAX_FAILURES:
                failures.append({"asset_id": asset_id, "variant": variant, "error": item.error or ""})
        return BatchShard(batch_id=batch_id, partition=partition, total=len(items), at=at,
                          failures=tuple(failures), **counts)

    def forget_partitions(self, keep: set[int]) -> None:
        """Drop what this worker no longer owns (after a rebalance), its
        unreported changes too: reported now, such a shard would be empty
        and newer than its new owner's report, so it would replace it."""
        for partitions in self._items.values():
            for partition in [p for p in partitions if p not in keep]:
                del partitions[partition]
        self._changed = {(batch_id, p) for batch_id, p in self._changed if p in keep}


def _bucket(status: str) -> str:
    if status == "completed":
        return "completed"
    if status == "failed":
        return "failed"
    return "pending"  # pending, running, retrying; superseded is replaced by the new revision's job


@dataclass(frozen=True)
class ShardCounts(Record):
    """One entry of BatchState.shards (kept there as a dict): a BatchShard's counts."""

    total: Count
    completed: Count
    failed: Count
    pending: Count
    at: float
    failures: tuple[dict, ...] = ()


@dataclass(frozen=True)
class BatchState(Record):
    batch_id: str
    # partition (as str: JSON keys) -> shard
    shards: dict[str, Annotated[dict, Shape(ShardCounts)]] = field(default_factory=dict)
    samples: tuple[tuple[float, Count], ...] = ()  # (time, completed + failed)
    first_at: float | None = None
    updated_at: float | None = None


def batch_shard_reported(state: BatchState | None, shard: BatchShard) -> BatchState:
    """The newest shard per partition wins; an older one arriving late changes nothing."""
    batch = state or BatchState(batch_id=shard.batch_id, first_at=shard.at)
    key = str(shard.partition)
    known = batch.shards.get(key)
    if known is not None and known["at"] >= shard.at:
        return batch
    shards = {**batch.shards, key: {"total": shard.total, "completed": shard.completed, "failed": shard.failed,
                                    "pending": shard.pending, "failures": list(shard.failures), "at": shard.at}}
    done = sum(s["completed"] + s["failed"] for s in shards.values())
    samples = batch.samples
    if not samples or shard.at - samples[-1][0] >= 1.0 or done != samples[-1][1]:
        samples = (*samples, (shard.at, done))[-MAX_SAMPLES:]
    return batch.evolve(shards=shards, samples=samples, updated_at=shard.at,
                        first_at=min(batch.first_at or shard.at, shard.at))


def batch_view(state: BatchState, now: float) -> dict:
    """What people see: totals, rate over the last half minute, ETA, failures."""
    shards = state.shards.values()
    total = sum(s["total"] for s in shards)
    completed = sum(s["completed"] for s in shards)
    failed = sum(s["failed"] for s in shards)
    pending = sum(s["pending"] for s in shards)
    rate = _rate(state.samples, now)
    failures = [f for s in sorted(state.shards.items()) for f in s[1]["failures"]][:MAX_FAILURES]
    return {
        "batch_id": state.batch_id, "total": total, "completed": completed, "failed": failed, "pending": pending,
        "done": total > 0 and pending == 0, "percent": round(100.0 * (completed + failed) / total, 1) if total else 0.0,
        "rate_per_s": round(rate, 2), "eta_s": _eta(pending, rate),
        "started_at": state.first_at, "updated_at": state.updated_at, "failures": failures,
    }


def video_view(video: VideoState, now: float) -> dict:
    """A video's annotations: how many composites are current, stale, failed;
    the rate they became current at lately, ETA, and the failures."""
    statuses = [a["status"] for a in video.annotations.values()]
    failed = statuses.count("failed")
    waiting = statuses.count("dirty")
    rate = _rate(tuple(video.samples), now)
    return {
        "video_id": video.video_id, "pending": video.pending, "dirty_annotations": sorted(video.dirty),
        "dirty_revisions": video.dirty, "total": len(statuses), "current": statuses.count("current"),
        "failed": failed, "waiting": waiting, "rate_per_s": round(rate, 2), "eta_s": _eta(waiting, rate),
        "failures": [{"annotation_id": k, "revision": a["revision"], "error": a.get("error") or ""}
                     for k, a in sorted(video.annotations.items()) if a["status"] == "failed"][:MAX_FAILURES],
    }


def _eta(pending: int, rate: float) -> float | None:
    if not pending:
        return 0.0
    return round(pending / rate, 1) if rate > 0 else None  # None: no progress lately, no honest guess


def _rate(samples: tuple[tuple[float, int], ...], now: float) -> float:
    """Items finished per second over the recent window (0 when idle)."""
    if len(samples) < 2:
        return 0.0
    recent = [s for s in samples if s[0] >= now - RATE_WINDOW_S] or [samples[-1]]
    start = next((s for s in reversed(samples) if s[0] < recent[0][0]), recent[0])
    (t0, d0), (t1, d1) = start, samples[-1]
    if t1 - t0 <= 0 or now - t1 > RATE_WINDOW_S:
        return 0.0
    return max(0.0, (d1 - d0) / (t1 - t0))
