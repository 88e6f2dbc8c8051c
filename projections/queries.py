"""Queries over the tables, shared by the HTTP views and tests."""

from __future__ import annotations

from projections.state import AnnotationState, AssetState, JobState, VideoState
from projections.tables import Tables


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


def video_status(tables: Tables, video_id: str) -> dict | None:
    video = VideoState.from_dict(tables.videos.get(video_id))
    if video is None:
        return None
    return {"video_id": video.video_id, "pending": video.pending,
            "dirty_annotations": sorted(video.dirty), "dirty_revisions": video.dirty}
