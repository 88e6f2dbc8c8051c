"""Building and running a worker: topics, app, tables, agents, views."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import cast

import faust

from regen.agents.admin_views import register_admin_views
from regen.agents.context import WorkerContext
from regen.agents.control import register_control
from regen.agents.groups import register_groups
from regen.agents.idle import register_idle_scheduler
from regen.agents.image_views import register_image_views
from regen.agents.intake import register_intake
from regen.agents.lanes import PartitionFollower
from regen.agents.lifecycle import register_lifecycle
from regen.agents.live_views import register_live
from regen.agents.outages import guard_broker_outages
from regen.agents.progress import register_progress
from regen.agents.projector import register_projector
from regen.agents.render import register_render
from regen.agents.render_pool import MemoryCap, RenderPool
from regen.agents.sql_views import register_sql_read_model
from regen.agents.stall_watch import register_stall_watch
from regen.agents.sweeper import register_sweeper
from regen.agents.tables import create_tables, table_names
from regen.agents.videos import register_videos
from regen.agents.views import register_views
from regen.agents.webhooks import register_webhooks
from regen.schemas.jobs import Lane
from regen.settings import Settings
from regen.streams.admin import cluster_id, ensure_topics
from regen.streams.app import create_app
from regen.streams.connection import bootstrap_servers
from regen.streams.topics import RENDER_BACKGROUND

log = logging.getLogger(__name__)


def build_worker(settings: Settings, bootstrap: str, cluster: str = "default") -> WorkerContext:
    app = create_app(settings, bootstrap, cluster)
    tables = create_tables(app)
    ctx = WorkerContext(app=app, settings=settings, tables=tables,
                        pool=RenderPool(settings.render_processes, settings.render_timeout,
                                        initializer=MemoryCap(settings.render_memory_mb),
                                        background_min_share=settings.background_min_share))
    register_intake(ctx, bootstrap)
    lanes = register_render(ctx, bootstrap)
    register_projector(ctx)
    register_idle_scheduler(ctx)
    register_videos(ctx)
    register_sweeper(ctx)
    register_progress(ctx)
    register_groups(ctx)
    register_webhooks(ctx)
    background = register_control(ctx, bootstrap, next(lane for lane in lanes if lane.spec is RENDER_BACKGROUND))
    register_lifecycle(ctx)
    sql_projector = register_sql_read_model(ctx, bootstrap)
    if sql_projector is not None:
        ctx.metrics.watch_sql_read_model(sql_projector)
    broker = guard_broker_outages(app, settings, bootstrap)
    stalls = register_stall_watch(ctx)
    started = time.time()

    def health() -> dict:
        # Ready once table recovery has caught up with the changelogs: until
        # then projections answer with stale or missing state.
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # faust's TableManager has it; its type does not
        unreachable_s = broker.unreachable_s()
        if recovery.crashed:
            state = "crashed"
        elif unreachable_s is not None:  # nothing is processed, whatever the tables say
            state = "broker_unreachable"
        elif recovery.completed.is_set():
            state = "ok"
        else:
            state = "starting"
        return {"status": state, "app_id": settings.app_id, "pid": os.getpid(),
                "uptime_s": round(time.time() - started, 1),
                "broker_unreachable_s": None if unreachable_s is None else round(unreachable_s, 1),
                "render_processes": len(ctx.pool.live_pids()),
                "render_processes_replaced": ctx.pool.replaced,
                "background_paused": background.state.paused, "background": background.describe(),
                "stalled_partitions": stalls.names()}

    ctx.metrics.watch(lambda: lane_depths(ctx, lanes), lambda: pending_dirty_annotations(ctx))
    register_image_views(ctx)  # before register_views: its route comes before the store paths' /images/{path}
    register_views(app, tables, settings, health, ctx.metrics.exposition, ctx.activity, ctx.background_state)
    register_live(ctx)
    register_admin_views(ctx, bootstrap, background)
    return ctx


def lane_depths(ctx: WorkerContext, lanes: list[PartitionFollower]) -> list[tuple[Lane, int]]:
    """Per lane: records of this worker's partitions not yet committed plus
    the jobs waiting for a render process."""
    return [(cast(Lane, lane.name), lane.lag() + ctx.pool.waiting(cast(Lane, lane.name))) for lane in lanes]


def pending_dirty_annotations(ctx: WorkerContext) -> int:
    return sum(len((value or {}).get("dirty", {})) for value in ctx.tables.videos.values())


def run_worker(settings: Settings) -> None:
    """Block running the worker until SIGINT/SIGTERM."""
    settings.check_web_exposure()  # before anything starts: nothing to undo
    bootstrap = bootstrap_servers(settings)
    created = asyncio.run(ensure_topics(settings, bootstrap, tables=table_names()))
    cluster = asyncio.run(cluster_id(settings, bootstrap))
    if created:
        log.info("created %d topic(s)", len(created))
    settings.image_store.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "faust" / cluster).mkdir(parents=True, exist_ok=True)
    ctx = build_worker(settings, bootstrap, cluster)
    worker = faust.Worker(ctx.app, loglevel=settings.log_level, redirect_stdouts=False)
    # Faust's start-up spinner sets the root logger to DEBUG whenever the log
    # level is WARNING or above, so every debug line of aiokafka is formatted
    # and handled: measured as a tenth of the worker's CPU per message.
    worker.spinner = None
    worker.execute_from_commandline()
