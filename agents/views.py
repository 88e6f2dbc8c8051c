"""Read-only JSON over the worker's web server.

Every view answers GET only (the dashboard page too: it only reads). Any
worker answers any query: one for a key another worker owns is forwarded
there, the key hashed like the entity's Kafka messages; while ownership
moves the answer is 503 with Retry-After, never a false 404
(``agents/routing.py``). ``/api/overview`` asks every member of the group and
merges their answers; ``/metrics`` tells only what this worker owns and did,
so a sum across workers counts everything once. With ``REGEN_WEB_TOKEN`` set, every
view except ``/health`` and the (data-free) dashboard page wants
``Authorization: Bearer <token>``, and only there: a token in a URL would end
up in access logs and browser history. Images also open with a short-lived
signed URL (``projections/signed_urls.py``), since ``<img>`` sends no header.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from regen.agents.routing import (
    ANSWERED_BY,
    FORWARDED_BY,
    MEMBER_TIMEOUT_S,
    RETRY_UNREACHABLE_S,
    Forward,
    Local,
    decide,
    forward,
    group_view,
    normalize_url,
)
from regen.agents.tables import Tables
from regen.imaging.store_files import StoreFileError, read_store_file
from regen.projections.activity import Activity
from regen.projections.groups import GroupState, group_answer
from regen.projections.queries import (
    MemberOverview,
    annotation_status,
    asset_status,
    batch_status,
    group_overview,
    job_status,
    overview,
    video_status,
)
from regen.projections.signed_urls import IMAGE_URL_LIFETIME_S, image_url_key, signature_valid
from regen.settings import Settings
from regen.streams.topics import partition_for

DASHBOARD_HTML = (Path(__file__).parent / "dashboard" / "index.html").read_text(encoding="utf-8")
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".png": "image/png",
               ".avif": "image/avif"}
# Outputs are thumbnails and composites; a bigger file in the store is not one
# of ours, and reading it whole into memory per request would be an easy DoS.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# What /health tells anyone who asks (it needs no token): readiness and the
# render pool, not settings, paths, process ids or host names.
# stalled_partitions (agents/stall_watch.py) names topics without their configured prefix.
PUBLIC_HEALTH_FIELDS = ("status", "uptime_s", "broker_unreachable_s", "render_processes",
                        "render_processes_replaced", "background_paused", "stalled_partitions")


def register_views(app: faust.App, tables: Tables, settings: Settings, health: Callable[[], dict],
                   metrics: Callable[[], bytes], activity: Activity, background_state: Callable[[], dict]) -> None:
    url_key = image_url_key(settings.web_token) if settings.web_token else None
    self_url = settings.advertised_web_url()

    def authorized(request: Request) -> bool:
        if not settings.web_token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {settings.web_token}".encode())

    def signed_for(request: Request, uri: str) -> bool:
        """A dashboard thumbnail's URL: signed for exactly ``uri``, not expired."""
        return url_key is not None and signature_valid(url_key, uri, request.query.get("exp", ""),
                                                       request.query.get("sig", ""), time.time())

    def refused(view: View) -> Response:
        return view.json({"error": "missing or wrong bearer token (see REGEN_WEB_TOKEN)"}, status=401,
                         headers={"WWW-Authenticate": 'Bearer realm="regen"'})

    def unavailable(view: View, reason: str, retry_after: int) -> Response:
        return view.json({"error": f"try again in {retry_after} s: {reason}", "retry_after_s": retry_after},
                         status=503, headers={"Retry-After": str(retry_after)})

    def http_client() -> aiohttp.ClientSession:
        return cast(aiohttp.ClientSession, app.http_client)  # Faust's aiohttp session, closed when the app stops

    async def routed(view: View, request: Request, table: faust.Table, route_key: str,
                     local: Callable[[], Any]) -> Response:
        """Answer from the worker whose partition holds ``route_key`` in ``table``."""
        if not authorized(request):
            return refused(view)
        partition = partition_for(route_key, settings.partitions)
        decision = decide(group_view(app, self_url), table.name, table.changelog_topic.get_topic_name(),
                          partition, request.headers.get(FORWARDED_BY))
        if isinstance(decision, Local):
            result = local()
            if result is None:
                return view.json({"error": f"not found: {route_key!r}"}, status=404, headers={ANSWERED_BY: self_url})
            return view.json(result, headers={ANSWERED_BY: self_url})
        if isinstance(decision, Forward):
            try:
                reply = await forward(http_client(), decision.url, str(request.rel_url),
                                      request.headers.get("Authorization"), self_url)
            except (aiohttp.ClientError, TimeoutError) as e:
                return unavailable(view, f"{decision.url}, which owns {table.name} partition {partition}, did not "
                                         f"answer ({type(e).__name__}: {e})", RETRY_UNREACHABLE_S)
            return view.bytes(reply.body, status=reply.status, headers=reply.headers)
        return unavailable(view, decision.reason, decision.retry_after)

    @app.page("/assets/{asset_id}")
    class AssetView(View):
        async def get(self, request: Request, asset_id: str) -> Response:
            return await routed(self, request, tables.assets, asset_id, lambda: asset_status(tables, asset_id))

    @app.page("/jobs/{job_id}")
    class JobView(View):
        async def get(self, request: Request, job_id: str) -> Response:
            parts = job_id.split(":")
            if len(parts) < 4:
                return self.json({"error": f"{job_id!r} is not a job id (kind:id:variant:rN)"}, status=404)
            # A job's row is written while its target's events are handled: it
            # lives in the partition of the target id.
            return await routed(self, request, tables.jobs, parts[1], lambda: job_status(tables, job_id))

    @app.page("/annotations/{annotation_id}")
    class AnnotationView(View):
        async def get(self, request: Request, annotation_id: str) -> Response:
            return await routed(self, request, tables.annotations, annotation_id,
                                lambda: annotation_status(tables, annotation_id))

    @app.page("/videos/{video_id}")
    class VideoView(View):
        async def get(self, request: Request, video_id: str) -> Response:
            return await routed(self, request, tables.videos, video_id,
                                lambda: video_status(tables, video_id, time.time()))

    @app.page("/batches/{batch_id}")
    class BatchView(View):
        async def get(self, request: Request, batch_id: str) -> Response:
            # Keyed by the batch id: every worker's shards of a batch meet in
            # that key's partition (agents/progress.py).
            return await routed(self, request, tables.batches, batch_id,
                                lambda: batch_status(tables, batch_id, time.time()))

    @app.page("/groups/{group_id}")
    class GroupView(View):
        async def get(self, request: Request, group_id: str) -> Response:
            def local() -> dict | None:
                state = GroupState.from_dict(tables.groups.get(group_id))
                return group_answer(state) if state is not None else None

            return await routed(self, request, tables.groups, group_id, local)

    @app.page("/metrics")
    class MetricsView(View):
        """Prometheus text format; behind the token like the rest (scrapers send it)."""

        async def get(self, request: Request) -> Response:
            if not authorized(request):
                return refused(self)
            # As a header: aiohttp refuses a charset inside its content_type argument.
            return self.bytes(metrics(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    @app.page("/dashboard")
    class DashboardView(View):
        async def get(self, request: Request) -> Response:
            # The page itself holds no data; it asks for the token when the API wants one.
            return self.html(DASHBOARD_HTML)

    async def member_overview(url: str, partitions: tuple[int, ...], local: dict,
                              authorization: str | None) -> MemberOverview:
        if url == normalize_url(self_url):
            return MemberOverview(url, partitions, local, is_self=True)
        try:
            reply = await forward(http_client(), url, "/api/overview?scope=local", authorization, self_url,
                                  timeout=MEMBER_TIMEOUT_S)
        except (aiohttp.ClientError, TimeoutError) as e:
            return MemberOverview(url, partitions, None, error=f"{type(e).__name__}: {e}".rstrip(": "))
        if reply.status != 200:
            return MemberOverview(url, partitions, None, error=f"HTTP {reply.status}")
        try:
            return MemberOverview(url, partitions, orjson.loads(reply.body))
        except orjson.JSONDecodeError:
            return MemberOverview(url, partitions, None, error="not JSON")

    @app.page("/api/overview")
    class OverviewView(View):
        """The whole group's overview (``?scope=local``: this worker's part)."""

        async def get(self, request: Request) -> Response:
            if not authorized(request):
                return refused(self)
            now = time.time()
            local = overview(tables, activity, now, url_key)
            if request.query.get("scope") == "local":
                return self.json(local)
            group = group_view(app, self_url)
            parts = await asyncio.gather(*(
                member_overview(url, partitions, local, request.headers.get("Authorization"))
                for url, partitions in group.members().items()))
            return self.json(group_overview(parts, now, group.state, background_state()))

    @app.page("/images/{path:.+}")
    class ImageView(View):
        """Outputs from the image store, read-only, for the dashboard's thumbnails."""

        async def get(self, request: Request, path: str) -> Response:
            if not (authorized(request) or signed_for(request, path)):
                return refused(self)
            content_type = IMAGE_TYPES.get(Path(path).suffix.lower())
            if content_type is None:
                return self.json({"error": f"{path[:120]!r} is not an image ({', '.join(IMAGE_TYPES)})"},
                                 status=404)
            try:
                # Off the event loop: a slow disk must not stall the worker's consumers.
                data = await asyncio.to_thread(read_store_file, Path(settings.image_store), path, MAX_IMAGE_BYTES)
            except StoreFileError as e:
                return self.json({"error": str(e)}, status=404)
            return self.bytes(data, content_type=content_type,
                              headers={"Cache-Control": f"private, max-age={IMAGE_URL_LIFETIME_S}"})

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            report = health()
            public = {field: report[field] for field in PUBLIC_HEALTH_FIELDS if field in report}
            return self.json(public, status=200 if report["status"] == "ok" else 503)
