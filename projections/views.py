"""Read-only JSON over the worker's web server.

Every view answers GET only (the dashboard page too: it only reads). A request for a key another worker owns is
forwarded there (``app.router.route_req``), keyed by the entity id so it
hashes like the entity's Kafka messages. With ``REGEN_WEB_TOKEN`` set, every
view except ``/health`` wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any, Callable

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from projections.activity import Activity
from projections.queries import annotation_status, asset_status, batch_status, job_status, overview, video_status
from projections.tables import Tables
from streams.settings import Settings

DASHBOARD_HTML = (Path(__file__).parent / "dashboard" / "index.html").read_text(encoding="utf-8")
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".png": "image/png"}


def register_views(app: faust.App, tables: Tables, settings: Settings, health: Callable[[], dict],
                   metrics: Callable[[], bytes], activity: Activity) -> None:
    def authorized(request: Request) -> bool:
        if not settings.web_token:
            return True
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {settings.web_token}".encode()):
            return True
        # A browser cannot add a header to <img src>: the dashboard passes ?token=.
        return hmac.compare_digest(request.query.get("token", "").encode(), settings.web_token.encode())

    def refused(view: View) -> Response:
        return view.json({"error": "missing or wrong bearer token (see REGEN_WEB_TOKEN)"}, status=401)

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
            return self.bytes(metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.page("/dashboard")
    class DashboardView(View):
        async def get(self, request: Request) -> Response:
            # The page itself holds no data; what it fetches asks for the token.
            return self.html(DASHBOARD_HTML)

    @app.page("/api/overview")
    class OverviewView(View):
        async def get(self, request: Request) -> Response:
            if not authorized(request):
                return refused(self)
            return self.json(overview(tables, activity, time.time()))

    @app.page("/images/{path:.+}")
    class ImageView(View):
        """Outputs from the image store, read-only, for the dashboard's thumbnails."""

        async def get(self, request: Request, path: str) -> Response:
            if not authorized(request):
                return refused(self)
            store = Path(settings.image_store).resolve()
            file = (store / path).resolve()
            if not file.is_relative_to(store) or not file.is_file() or file.suffix.lower() not in IMAGE_TYPES:
                return self.json({"error": f"no image {path!r} in the store"}, status=404)
            return self.bytes(file.read_bytes(), content_type=IMAGE_TYPES[file.suffix.lower()])

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            report = health()
            return self.json(report, status=200 if report["status"] == "ok" else 503)
