"""Projections rebuilt from the source and completion events alone, and the
comparison with the live ones.

Pure: the caller reads the topics (in timestamp order) and the live tables.

What is compared is what the events determine. Live tables also hold what
only a worker saw — a job that is running or retrying right now, a job
superseded before it started, timestamps of the last state change — which
no topic of events records; those fields are left out, and in-flight live
entries are counted, not compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from regen.kinds import KINDS, kinds_following
from regen.kinds.base import Kind
from regen.projections import folds
from regen.projections.segmentations import SegmentationState
from regen.projections.state import AnnotationState, AssetState, JobState, Record, VideoState
from regen.schemas.events import Event, ImageFailed, ImageGenerated
from regen.schemas.jobs import DirtyFlag

TABLES = ("assets", "jobs", "annotations", "videos", "segmentations")


@dataclass
class Projections:
    assets: dict[str, dict] = field(default_factory=dict)
    jobs: dict[str, dict] = field(default_factory=dict)
    annotations: dict[str, dict] = field(default_factory=dict)
    videos: dict[str, dict] = field(default_factory=dict)
    segmentations: dict[str, dict] = field(default_factory=dict)

    def table(self, name: str) -> dict[str, dict]:
        return getattr(self, name)


def rebuild(events: Iterable[Event], at: str = "") -> Projections:
    """Fold every event, in the order given, with the workers' own folds."""
    p = Projections()
    for event in events:
        if isinstance(event, (ImageGenerated, ImageFailed)):
            if event.job_id:
                _completion(p, event)
            continue
        for kind in kinds_following(event):
            target_id = kind.source_key(event)
            before = kind.read(p.table(kind.table).get(target_id))
            _target_changed(p, kind, target_id, before, kind.fold_source(before, event, at))
    return p


def _completion(p: Projections, event: ImageGenerated | ImageFailed) -> None:
    job = JobState.from_dict(p.jobs.get(event.job_id))
    folded = folds.job_generated(job, event) if isinstance(event, ImageGenerated) else folds.job_failed(job, event)
    p.jobs[event.job_id] = folded.to_dict()
    kind = KINDS[event.target.kind]
    before = kind.read(p.table(kind.table).get(event.target.id))
    if before is not None:
        _target_changed(p, kind, event.target.id, before, kind.completed(before, event))


def _target_changed(p: Projections, kind: Kind, target_id: str, before, after) -> None:
    p.table(kind.table)[target_id] = after.to_dict()
    for announcement in kind.announcements(before, after):
        if isinstance(announcement, DirtyFlag):  # what the workers' video-pending agent folds
            video = VideoState.from_dict(p.videos.get(announcement.video_id))
            p.videos[announcement.video_id] = folds.video_flagged(video, announcement).to_dict()


# --- comparison --------------------------------------------------------------

IN_FLIGHT = frozenset({"pending", "running", "retrying"})
_ROW_TYPES: dict[str, type[Record]] = {"assets": AssetState, "jobs": JobState, "annotations": AnnotationState,
                                       "videos": VideoState, "segmentations": SegmentationState}


def comparable(table: str, value: dict) -> dict | None:
    """The part of a table value that the events determine; None: not comparable (in flight)."""
    if _ROW_TYPES[table].from_dict(value) is None:  # malformed (forged?): reported as a difference
        return {"malformed_row": True}
    if table == "assets":
        asset = AssetState.from_dict(value)
        return {"revision": asset.revision, "sha256": asset.sha256, "uri": asset.uri, "batch_id": asset.batch_id,
                "variants": _settled_variants(asset.variants)}
    if table == "segmentations":
        segmentation = SegmentationState.from_dict(value)
        return {"revision": segmentation.revision, "source": segmentation.source,
                "polygons": len(segmentation.polygons), "variants": _settled_variants(segmentation.variants)}
    if table == "jobs":
        job = JobState.from_dict(value)
        if job.status not in ("completed", "failed"):
            return None
        return {"status": job.status, "revision": job.revision, "sha256": (job.output or {}).get("sha256"),
                "reason": job.reason, "error_code": job.error_code}
    if table == "annotations":
        a = AnnotationState.from_dict(value)
        return {"video_id": a.video_id, "span": [a.start_frame, a.end_frame], "crop": list(a.crop) if a.crop else None,
                "wanted_revision": a.wanted_revision, "rendered_revision": a.rendered_revision, "dirty": a.dirty,
                "failed_revision": a.failed_revision, "sha256": (a.output or {}).get("sha256"),
                "frames_used": list(a.frames_used) if a.frames_used else None}
    video = VideoState.from_dict(value)
    return {"dirty": dict(sorted(video.dirty.items()))}


def _settled_variants(variants: dict[str, dict]) -> dict[str, dict]:
    """Per variant, its outcome; variants in flight are left out."""
    return {name: {"status": entry["status"], "revision": entry["revision"],
                   "sha256": (entry.get("output") or {}).get("sha256")}
            for name, entry in variants.items()
            if entry["status"] not in IN_FLIGHT and entry["status"] != "superseded"}


@dataclass
class Difference:
    table: str
    key: str
    live: dict | None
    rebuilt: dict | None

    def describe(self) -> str:
        if self.live is None:
            return f"{self.table}/{self.key}: only in the rebuilt projections"
        if self.rebuilt is None:
            return f"{self.table}/{self.key}: only in the live projections"
        fields = sorted(k for k in self.live.keys() | self.rebuilt.keys() if self.live.get(k) != self.rebuilt.get(k))
        shown = "; ".join(f"{k}: live {self.live.get(k)!r} != rebuilt {self.rebuilt.get(k)!r}" for k in fields)
        return f"{self.table}/{self.key}: {shown}"


@dataclass
class Comparison:
    compared: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences


def compare(live: Projections, rebuilt: Projections) -> Comparison:
    result = Comparison()
    for table in TABLES:
        live_rows, rebuilt_rows = live.table(table), rebuilt.table(table)
        compared = in_flight = 0
        for key in sorted(live_rows.keys() | rebuilt_rows.keys()):
            live_value = comparable(table, live_rows[key]) if key in live_rows else None
            rebuilt_value = comparable(table, rebuilt_rows[key]) if key in rebuilt_rows else None
            if key in live_rows and live_value is None:
                in_flight += 1
                continue
            if (table in ("assets", "segmentations") and live_value is not None and rebuilt_value is not None
                    and "variants" in live_value and "variants" in rebuilt_value):
                # A variant being rendered again right now is compared once it is done.
                busy = set(live_rows[key].get("variants") or {}) - set(live_value["variants"])
                in_flight += bool(busy)
                rebuilt_value["variants"] = {k: v for k, v in rebuilt_value["variants"].items() if k not in busy}
            if table == "videos" and not (live_value or {}).get("dirty") and not (rebuilt_value or {}).get("dirty"):
                continue  # a video with nothing pending, kept or not, is the same
            compared += 1
            if live_value != rebuilt_value:
                result.differences.append(Difference(table, key, live_value, rebuilt_value))
        result.compared[table] = compared
        result.in_flight[table] = in_flight
    return result
