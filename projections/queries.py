"""Queries over the tables, shared by the HTTP views and tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from regen.projections.activity import RECENT, Activity
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
    view = asset.to_dict()
    # A render does not rewrite its asset's state (one changelog record fewer
    # per variant): a pending variant whose job runs or waits for a retry
    # says so from the job's own record.
    for variant in view.get("variants", {}).values():
        if variant.get("status") == "pending":
            job = JobState.from_dict(tables.jobs.get(variant.get("job_id", "")))
            if job is not None and job.status in ("running", "retrying"):
                variant["status"] = job.status
    return view


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


# --- the whole group's overview ---------------------------------------------------

RATE_SUMMARY_S = 10  # a member's "events per second" on the dashboard: the mean over this many seconds


@dataclass(frozen=True)
class MemberOverview:
    """One member's part of the group overview: its URL and partitions (from
    the group's metadata) and the local overview it answered, or why not."""

    url: str
    partitions: tuple[int, ...]
    overview: Mapping[str, Any] | None  # None: it did not answer
    error: str = ""
    is_self: bool = False


def merge_overviews(parts: Sequence[MemberOverview], now: float) -> dict:
    """The dashboard's data for the whole group, from each member's own.

    Each batch and video lives in one member's partitions, so lists are
    merged, not added up; a row two members report (its partition moved
    between their answers) is kept once, the newer. Event rates, which each
    member counts for what it consumed, are summed second by second. Lists
    stay as short as one member's. ``members`` says who owns which
    partitions and who answered; ``missing`` lists those that did not.
    """
    answered = [p for p in parts if p.overview is not None]
    batches = _newest_by("batch_id", _rows(answered, "batches"), "updated_at")
    batches.sort(key=lambda b: (b["done"], -(b["updated_at"] or 0), b["batch_id"]))
    videos = _newest_by("video_id", _rows(answered, "videos"), "pending")
    videos.sort(key=lambda v: (-v["pending"], v["video_id"]))
    images = sorted(_rows(answered, "recent_images"), key=lambda i: i.get("at") or "", reverse=True)
    failures = sorted(_rows(answered, "recent_failures"), key=lambda f: f.get("at") or "", reverse=True)
    members = [{"url": p.url, "partitions": list(p.partitions), "answered": p.overview is not None,
                "self": p.is_self, "error": p.error,
                "events_per_s": _recent_rate(p.overview.get("rates", [])) if p.overview is not None else None}
               for p in sorted(parts, key=lambda p: p.url)]
    return {"now": now, "batches": batches[:MAX_ROWS], "videos": videos[:MAX_ROWS],
            "recent_images": images[:RECENT], "recent_failures": failures[:RECENT * 2],
            "rates": sum_rates([(p.overview or {}).get("rates", []) for p in answered]),
            "members": members, "missing": [m["url"] for m in members if not m["answered"]]}


def group_overview(parts: Sequence[MemberOverview], now: float, group_state: str, background: dict) -> dict:
    """What ``/api/overview`` answers and the live overview pushes: the
    members' overviews merged, the group's state, and whether background
    rendering is paused (the group's: every worker reads the same commands,
    so the answering worker's own watch says it)."""
    return {**merge_overviews(parts, now), "state": group_state, "background": background}


def sum_rates(series: Iterable[Sequence[int]]) -> list[int]:
    """Per-second counts of several members added up, aligned on the latest second."""
    series = [list(s) for s in series]
    length = max((len(s) for s in series), default=0)
    total = [0] * length
    for counts in series:
        for i, count in enumerate(counts, start=length - len(counts)):
            total[i] += count
    return total


def _rows(parts: Iterable[MemberOverview], name: str) -> list[dict]:
    return [dict(row) for p in parts for row in (p.overview or {}).get(name, [])]


def _newest_by(key: str, rows: list[dict], newer: str) -> list[dict]:
    kept: dict[str, dict] = {}
    for row in rows:
        seen = kept.get(row[key])
        if seen is None or (row.get(newer) or 0) > (seen.get(newer) or 0):
            kept[row[key]] = row
    return list(kept.values())


def _recent_rate(rates: Sequence[int]) -> float:
    recent = list(rates)[-RATE_SUMMARY_S:]
    return round(sum(recent) / len(recent), 1) if recent else 0.0
