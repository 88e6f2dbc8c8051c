"""Read-only JSON over the worker's web server.

Every view answers GET only (the dashboard page too: it only reads). A request for a key another worker owns is
forwarded there (``app.router.route_req``), keyed by the entity id so it
hashes like the entity's Kafka messages. With ``REGEN_WEB_TOKEN`` set, every
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
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from regen.agents.tables import Tables
from regen.imaging.store_files import StoreFileError, read_store_file
from regen.projections.activity import Activity
from regen.projections.queries import annotation_status, asset_status, batch_status, job_status, overview, video_status
from regen.projections.signed_urls import IMAGE_URL_LIFETIME_S, image_url_key, signature_valid
from regen.settings import Settings

DASHBOARD_HTML = (Path(__file__).parent / "dashboard" / "index.html").read_text(encoding="utf-8")
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".png": "image/png",
               ".avif": "image/avif"}
# Outputs are thumbnails and composites; a bigger file in the store is not one
# of ours, and reading it whole into memory per request would be an easy DoS.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# What /health tells anyone who asks (it needs no token): readiness and the
# render pool, not settings, paths, process ids or host names.
PUBLIC_HEALTH_FIELDS = ("status", "uptime_s", "broker_unreachable_s", "render_processes",
                        "render_processes_replaced")


def register_views(app: faust.App, tables: Tables, settings: Settings, health: Callable[[], dict],
                   metrics: Callable[[], bytes], activity: Activity) -> None:
    url_key = image_url_key(settings.web_token) if settings.web_token else None

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

    async def routed(view: View, request: Request, route_key: str, local: Callable[[], Any]) -> Response:
        if not authorized(request):
            return refused(view)
        try:
            return await app.router.route_req(tables.assets.name, route_key, view.web, request)
        except SameNode:
            pass
        except Exception:  # routing metadata not ready yet (before the first assignment): answer locally
            pass
        result = local()
        if result is None:
            return view.json({"error": f"not found: {route_key!r}"}, status=404)
        return view.json(result)

    @app.page("/assets/{asset_id}")
    class AssetView(View):
        async def get(self, request: Request, asset_id: str) -> Response:
            return await routed(self, request, asset_id, lambda: asset_status(tables, asset_id))

    @app.page("/jobs/{job_id}")
    class JobView(View):
        async def get(self, request: Request, job_id: str) -> Response:
            parts = job_id.split(":")
            if len(parts) < 4:
                return self.json({"error": f"{job_id!r} is not a job id (kind:id:variant:rN)"}, status=404)
            return await routed(self, request, parts[1], lambda: job_status(tables, job_id))

    @app.page("/annotations/{annotation_id}")
    class AnnotationView(View):
        async def get(self, request: Request, annotation_id: str) -> Response:
            return await routed(self, request, annotation_id, lambda: annotation_status(tables, annotation_id))

    @app.page("/videos/{video_id}")
    class VideoView(View):
        async def get(self, request: Request, video_id: str) -> Response:
            return await routed(self, request, video_id, lambda: video_status(tables, video_id, time.time()))

    @app.page("/batches/{batch_id}")
    class BatchView(View):
        async def get(self, request: Request, batch_id: str) -> Response:
            return await routed(self, request, batch_id, lambda: batch_status(tables, batch_id, time.time()))

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

    @app.page("/api/overview")
    class OverviewView(View):
        async def get(self, request: Request) -> Response:
            if not authorized(request):
                return refused(self)
            return self.json(overview(tables, activity, time.time(), url_key))

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
