"""The Faust tables that hold the projections.

Keys are strings stored raw, so a key hashes to the same partition as the
Kafka message key of the entity it belongs to. Every write to a table happens
while processing an event keyed by that entity, which is what keeps each
table partition on the worker that owns the entity's partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faust

from regen.kinds import KINDS


@dataclass
class Tables:
    jobs: faust.Table  # job_id -> JobState
    videos: faust.Table  # video_id -> VideoState (the video's dirty annotations)
    batches: faust.Table  # batch_id -> BatchState (per-partition progress shards)
    groups: faust.Table  # group_id -> GroupState (its members' statuses and outputs)
    # Every kind's table of its targets' state, by the name the kind gives
    # (assets, annotations, ...): a new kind with a table of its own needs
    # nothing here.
    by_kind: dict[str, faust.Table] = field(default_factory=dict)
    # store uri -> the targets holding the file, and since when it has none (agents/lifecycle.py)
    outputs: faust.Table | None = None

    def of(self, name: str) -> faust.Table:
        """A table by name: a kind names the table of its targets' state."""
        return self.by_kind[name] if name in self.by_kind else getattr(self, name)

    @property
    def assets(self) -> faust.Table:  # asset_id -> AssetState (queries and batch progress read it by name)
        return self.by_kind["assets"]

    @property
    def annotations(self) -> faust.Table:  # annotation_id -> AnnotationState
        return self.by_kind["annotations"]


def table_names() -> list[str]:
    """Every table a worker creates (their changelogs are created up front)."""
    return ["jobs", "videos", "batches", "groups", *dict.fromkeys(kind.table for kind in KINDS.values()),
            "outputs"]  # agents/lifecycle.py: store uri -> its holders


def create_tables(app: faust.App) -> Tables:
    def table(name: str, help: str) -> faust.Table:
        schema: faust.Schema = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")
        return app.Table(name, default=None, schema=schema, help=help)  # type: ignore[return-value]

    by_kind: dict[str, faust.Table] = {}
    for kind in KINDS.values():
        if kind.table not in by_kind:
            by_kind[kind.table] = table(kind.table, f"{kind.noun} id -> its state ({kind.name})")
    return Tables(
        jobs=table("jobs", "job_id -> render job status"),
        videos=table("videos", "video_id -> its dirty annotations"),
        batches=table("batches", "batch_id -> progress of an import batch, per partition"),
        groups=table("groups", "group_id -> its members: status, output or failure"),
        by_kind=by_kind,
        outputs=table("outputs", "store uri -> the targets holding the file, and since when it has none"),
    )
