"""Queries over the tables, shared by the HTTP views and tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from regen.projections.activity import Activity
from regen.projections.progress import BatchState, batch_view, video_view
from regen.projections.signed_urls import image_url
from regen.projections.state import AnnotationState, AssetState, JobState, VideoState

MAX_ROWS = 20  # per list on the dashboard


class Tables(Protocol):
    """What the queries read: the tables as mappings of id -> row (the
    workers' Faust tables on the service side, dicts in tests)."""

    @property
    def assets(self) -> Mapping[str, Any]: ...
    @property
    def jobs(self) -> Mapping[str, Any]: ...
    @property
    def annotations(self) -> Mapping[str, Any]: ...
    @property
    def videos(self) -> Mapping[str, Any]: ...
    @property
    def batches(self) -> Mapping[str, Any]: ...


def asset_status(tables: Tables, asset_id: str) -> dict | None:
    asset = AssetState.from_dict(tables.assets.get(asset_id))
    if asset is None:
        return None
    return asset.to_dict()


def job_status(tables: Tables, job_id: str) -> dict | None:
    job = JobState.from_dict(tables.jobs.get(job_id))
    return None if job is None else job.to_dict()


def annotation_status(tables: Tables, annotation_id: str) -> dict | None:
    annotation = AnnotationState.from_dict(tables.annotations.get(annotation_id))
    return None if annotation is None else annotation.to_dict()


def video_status(tables: Tables, video_id: str, now: float) -> dict:
    """A video nobody has edited has nothing pending: zeros, not "unknown"."""
    video = VideoState.from_dict(tables.videos.get(video_id)) or VideoState(video_id=video_id)
    return video_view(video, now)


def batch_status(tables: Tables, batch_id: str, now: float) -> dict | None:
    batch = BatchState.from_dict(tables.batches.get(batch_id))
    return None if batch is None else batch_view(batch, now)


def overview(tables: Tables, activity: Activity, now: float, url_key: bytes | None = None) -> dict:
    """The dashboard's data: this worker's batches, videos, latest images,
    failures and event rates. Each image carries the ``url`` to load it by:
    signed with ``url_key`` when the API wants a token (``<img>`` cannot send one)."""
    batches = [batch_view(b, now) for b in (BatchState.from_dict(v) for v in tables.batches.values()) if b]
    batches.sort(key=lambda b: (b["done"], -(b["updated_at"] or 0)))
    videos = [{"video_id": v.video_id, "pending": v.pending}
              for v in (VideoState.from_dict(value) for value in tables.videos.values()) if v is not None]
    videos.sort(key=lambda v: (-v["pending"], v["video_id"]))
    images = [{**image, "url": image_url(url_key, image["uri"], now)} for image in activity.recent_images]
    return {"now": now, "batches": batches[:MAX_ROWS], "videos": videos[:MAX_ROWS],
            "recent_images": images, "recent_failures": list(activity.recent_failures),
            "rates": activity.rates(now)}
