"""The Faust tables that hold the projections.

Keys are strings stored raw, so a key hashes to the same partition as the
Kafka message key of the entity it belongs to. Every write to a table happens
while processing an event keyed by that entity, which is what keeps each
table partition on the worker that owns the entity's partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust


@dataclass
class Tables:
    assets: faust.Table  # asset_id -> AssetState
    jobs: faust.Table  # job_id -> JobState
    annotations: faust.Table  # annotation_id -> AnnotationState
    videos: faust.Table  # video_id -> VideoState (the video's dirty annotations)
    batches: faust.Table  # batch_id -> BatchState (per-partition progress shards)

    def of(self, name: str) -> faust.Table:
        """A table by name: a kind names the table of its targets' state."""
        return getattr(self, name)


def create_tables(app: faust.App) -> Tables:
    def table(name: str, help: str) -> faust.Table:
        schema: faust.Schema = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")
        return app.Table(name, default=None, schema=schema, help=help)  # type: ignore[return-value]

    return Tables(
        assets=table("assets", "asset_id -> asset record with per-variant status"),
        jobs=table("jobs", "job_id -> render job status"),
        annotations=table("annotations", "annotation_id -> dirty state of its combined image"),
        videos=table("videos", "video_id -> its dirty annotations"),
        batches=table("batches", "batch_id -> progress of an import batch, per partition"),
    )
