"""Batch progress: each worker reports its partitions' share of every batch
whose items changed; the batch-progress agent folds the shards by batch.

See projections/progress.py for why shards, and why they replace each other.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from regen.agents.context import WorkerContext
from regen.agents.handling import register_event_agent
from regen.agents.timers import guarded_timer
from regen.projections.progress import BatchState, BatchTracker, batch_shard_reported
from regen.projections.state import AssetState
from regen.schemas.jobs import BatchShard
from regen.streams.topics import ASSETS_IMPORTED, BATCH_PROGRESS, partition_for, topic_name

log = logging.getLogger(__name__)

REPORT_EVERY_S = 1.0


def register_progress(ctx: WorkerContext) -> None:
    ctx.batches = BatchTracker(ctx.settings.pregenerate_variants,
                               partial(partition_for, partitions=ctx.settings.partitions))
    register_event_agent(ctx, BATCH_PROGRESS, "batch-progress", on_batch_shard)
    owned: dict[str, frozenset[int]] = {"partitions": frozenset()}

    @guarded_timer(ctx, REPORT_EVERY_S, "batch-reporter")
    async def batch_reporter():
        # Not while the group rebalances. The assignment already names the
        # partitions arriving here, but their tables are still being
        # recovered, and recovery writes the store directly (not through
        # put_state): an arrived partition read now would miss its previous
        # owner's last writes for good, and its shard would stay pending (a
        # batch that never finishes). recovery.completed is set once, at the
        # first recovery; app.rebalancing covers every later one (as the
        # lanes, agents/lanes.py, and the lifecycle timer do).
        if ctx.app.rebalancing or not ctx.app.tables.recovery.completed.is_set():
            return
        partitions = _assigned_partitions(ctx)
        if partitions != owned["partitions"]:
            # After a rebalance: forget what moved away, learn what moved here.
            ctx.batches.forget_partitions(set(partitions))
            arrived = partitions - owned["partitions"]
            for asset_id, value in ctx.tables.assets.items():
                asset = AssetState.from_dict(value)
                if asset is not None and partition_for(asset_id, ctx.settings.partitions) in arrived:
                    ctx.batches.observe(asset_id, asset)
            owned["partitions"] = partitions
        for shard in ctx.batches.take_changed(time.time()):
            await ctx.emit(BATCH_PROGRESS, shard)


def _assigned_partitions(ctx: WorkerContext) -> frozenset[int]:
    name = topic_name(ctx.settings, ASSETS_IMPORTED)
    return frozenset(tp.partition for tp in ctx.app.consumer.assignment() if tp.topic == name)


async def on_batch_shard(ctx: WorkerContext, shard: BatchShard) -> None:
    before = BatchState.from_dict(ctx.tables.batches.get(shard.batch_id))
    after = batch_shard_reported(before, shard)
    if after is not before:
        ctx.tables.batches[shard.batch_id] = after.to_dict()
