"""The SQL read model in a worker: its projector task and ``GET /jobs``.

``GET /jobs?status=failed&since=24h&batch=&video=&group=&kind=&limit=&cursor=``
lists jobs from this worker's own read model, which holds the whole fleet's
jobs (the projector reads every partition): any worker answers, nothing is
forwarded. ``status`` may be given several times or comma-separated. Behind
the bearer token like the other views.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from typing import Any

import faust
from faust.web import Request, Response, View

from regen.agents.context import WorkerContext
from regen.agents.sql_projector import SqlProjector, run_forever
from regen.projections.sql_jobs import JobFilter, JobFilterError, JobPage, parse_since, select_jobs
from regen.projections.sql_store import SqlReadModelError, SqlStore, sql_url
from regen.settings import Settings

# A list request reads for at most this long (a person waits on it).
QUERY_TIMEOUT_S = 10.0


def register_sql_read_model(ctx: WorkerContext, bootstrap: str) -> SqlProjector | None:
    """The projector as a task of the worker (unless REGEN_SQL_PROJECTOR=off), and GET /jobs."""
    projector = SqlProjector(ctx.settings, bootstrap) if ctx.settings.sql_projector else None
    if projector is not None:
        async def sql_projector() -> None:
            await run_forever(projector)

        async def stop_sql_projector() -> None:
            projector.stop()

        ctx.app.task(sql_projector)
        ctx.app.before_stopping.append(stop_sql_projector)  # type: ignore[attr-defined]  # RegenApp's
    register_jobs_list(ctx.app, ctx.settings)
    return projector


def job_filter(query: dict[str, list[str]], now: float) -> JobFilter:
    """The filter a request's query string asks for (raises JobFilterError)."""
    def one(name: str) -> str | None:
        values = query.get(name) or []
        return values[-1] if values else None

    statuses = tuple(s.strip() for value in query.get("status", []) for s in value.split(",") if s.strip())
    since = one("since")
    limit = one("limit")
    try:
        limit_value = int(limit) if limit is not None else 100
    except ValueError:
        raise JobFilterError(f"limit {(limit or '')[:20]!r} is not a whole number") from None
    return JobFilter(status=statuses, since=parse_since(since, now) if since else None, batch=one("batch"),
                     video=one("video"), group=one("group"), kind=one("kind"), limit=limit_value,
                     cursor=one("cursor"))


def list_jobs(settings: Settings, f: JobFilter) -> JobPage:
    """One page from the read model, on a read-only connection of its own (blocking: run it off the loop)."""
    store = SqlStore.open(sql_url(settings), read_only=True, timeout_s=QUERY_TIMEOUT_S)
    try:
        store.set_statement_timeout(QUERY_TIMEOUT_S)
        return select_jobs(store, f)
    finally:
        with contextlib.suppress(Exception):
            store.close()


def register_jobs_list(app: faust.App, settings: Settings) -> None:
    def authorized(request: Request) -> bool:  # as agents/views.py: the token in a header, never in the URL
        if not settings.web_token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {settings.web_token}".encode())

    @app.page("/jobs")
    class JobsListView(View):
        async def get(self, request: Request) -> Response:
            if not authorized(request):
                return self.json({"error": "missing or wrong bearer token (see REGEN_WEB_TOKEN)"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="regen"'})
            # aiohttp's MultiDict: a name may come several times (status=failed&status=retrying).
            multi: Any = request.query
            query = {name: multi.getall(name) for name in set(multi.keys())}
            try:
                f = job_filter(query, time.time())
                page = await asyncio.to_thread(list_jobs, settings, f)
            except JobFilterError as e:
                return self.json({"error": str(e)}, status=400)
            except SqlReadModelError as e:
                return self.json({"error": str(e), "retry_after_s": 5}, status=503, headers={"Retry-After": "5"})
            return self.json(page.to_json())
