"""Queries over the tables, shared by the HTTP views and tests."""

from __future__ import annotations

from projections.state import AssetState, JobState
from projections.tables import Tables


def asset_status(tables: Tables, asset_id: str) -> dict | None:
    asset = AssetState.from_dict(tables.assets.get(asset_id))
    if asset is None:
        return None
    return asset.to_dict()


def job_status(tables: Tables, job_id: str) -> dict | None:
    job = JobState.from_dict(tables.jobs.get(job_id))
    return None if job is None else job.to_dict()
