"""Building and running a worker: topics, app, tables, agents, views."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import faust

from agents.context import WorkerContext
from agents.intake import register_intake
from agents.projector import register_projector
from agents.render import register_render
from agents.render_pool import RenderPool, pids
from projections.tables import create_tables
from projections.views import register_views
from streams.admin import ensure_topics
from streams.app import create_app
from streams.connection import bootstrap_servers
from streams.settings import Settings

log = logging.getLogger(__name__)


def build_worker(settings: Settings, bootstrap: str) -> WorkerContext:
    app = create_app(settings, bootstrap)
    tables = create_tables(app)
    ctx = WorkerContext(app=app, settings=settings, tables=tables,
                        pool=RenderPool(settings.render_processes, settings.render_timeout))
    register_intake(ctx)
    register_render(ctx)
    register_projector(ctx)
    started = time.time()

    def health() -> dict:
        return {"status": "ok", "app_id": settings.app_id, "pid": os.getpid(),
                "uptime_s": round(time.time() - started, 1),
                "render_processes": len(pids(ctx.pool)) if ctx._pool_running else 0,
                "render_processes_replaced": ctx.pool.replaced}

    register_views(app, tables, settings, health)
    return ctx


def run_worker(settings: Settings) -> None:
    """Block running the worker until SIGINT/SIGTERM."""
    bootstrap = bootstrap_servers(settings)
    created = asyncio.run(ensure_topics(settings, bootstrap))
    if created:
        log.info("created %d topic(s)", len(created))
    settings.image_store.mkdir(parents=True, exist_ok=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ctx = build_worker(settings, bootstrap)
    worker = faust.Worker(ctx.app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
