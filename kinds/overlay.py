"""Overlays: an image with its segmentation's polygons filled and outlined.

Source: SegmentationChanged (asset id, revision, the image's path, polygons
with a label, points and optional holes, optional colours per label),
folded into the ``segmentations`` table under the asset id, so a target
shares its asset's partition. Revisions only grow: the newest wanted
segmentation wins, a job for an older revision is superseded (never
rendered), and an overlay is rendered once nobody has changed the
segmentation for REGEN_IDLE_DELAY (a burst of edits renders once), at each
of REGEN_OVERLAY_VARIANTS, or at once when requested.

Coordinates: pixel coordinates of the image as displayed, i.e. after its
EXIF orientation is applied, at the stored file's full resolution; (0, 0)
is the top-left corner of the top-left pixel (see imaging/overlay.py).
Why displayed and not stored: that is the image a person segments in a
browser (browsers apply EXIF orientation), and the one every thumbnail and
overlay regen writes shows; a tool that works on the stored pixel array
rotates its points once, by the orientation it read.

Outputs are named by what is drawn: the source's content hash, the
polygons and colours, and the drawing's version; the same segmentation of
the same image renders once.

Repair also finds overlays never rendered or failed: a standing variant
whose wanted revision has no completed overlay (``unrendered_outputs``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from regen.kinds.base import Completion, Kind, OfflineOption, RecordedOutput, RenderCall, UnrenderedOutput
from regen.projections import segmentations as folds
from regen.projections import variant_folds
from regen.projections.segmentations import SegmentationState
from regen.schemas.bounds import MaxItems
from regen.schemas.events import (
    MAX_POLYGONS,
    Color,
    Event,
    ImageGenerated,
    Polygon,
    SegmentationChanged,
    Target,
    segmentation_problem,
)
from regen.schemas.exceptions import SchemaError
from regen.schemas.jobs import Lane, RenderJob, job_id_for
from regen.schemas.typed import read_record
from regen.settings import Settings


@dataclass(frozen=True)
class OverlayDetail:
    """RenderJob.detail of an overlay job, checked before it is drawn: a job
    on a render lane is as untrusted as any event."""

    polygons: Annotated[tuple[Polygon, ...], MaxItems(MAX_POLYGONS)]
    colors: dict[str, Color] | None = None


def read_detail(detail: Any) -> OverlayDetail:
    """The job's segmentation, or SchemaError saying what is wrong with it."""
    read = read_record(OverlayDetail, detail)
    problem = segmentation_problem(read.polygons, read.colors)
    if problem is not None:
        raise SchemaError(problem)
    return read


def shapes_of(polygons: Iterable[Polygon]) -> tuple:
    """Polygons as the render process draws them: (label, (outer, *holes))."""
    return tuple((p.label, (p.points, *p.holes)) for p in polygons)


class Overlay(Kind[SegmentationState]):
    name = "overlay"
    table = "segmentations"
    noun = "segmented image"
    never_known = "has never been announced by a SegmentationChanged event"
    source_events = (SegmentationChanged,)
    store_folder = "overlays"
    schedule = "when idle"
    offline_help = ("Draw the polygons of a segmentation (a JSON file: {\"polygons\": [...], \"colors\": {...}}, "
                    "as in SegmentationChanged) over SOURCE into OUTPUT.")
    offline_options = (
        OfflineOption("--segmentation", Path, "JSON file with the polygons (and optional colours), in the "
                                              "pixel coordinates of SOURCE as displayed (EXIF orientation "
                                              "applied).", required=True),
    )

    def read(self, row: dict | None) -> SegmentationState | None:
        return SegmentationState.from_dict(row)

    def source_key(self, event: Event) -> str:
        assert isinstance(event, SegmentationChanged)
        return event.asset_id

    def fold_source(self, state: SegmentationState | None, event: Event, at: str) -> SegmentationState:
        assert isinstance(event, SegmentationChanged)
        return folds.segmentation_changed(state, event, at)

    def revision(self, state: SegmentationState) -> int:
        return state.revision

    def standing_variants(self, settings: Settings) -> tuple[str, ...]:
        return settings.standing_overlay_variants()

    def needs_render(self, state: SegmentationState, settings: Settings) -> bool:
        # A revision that failed for good waits for a new edit (or a repair).
        return not all(state.settled(v) for v in settings.standing_overlay_variants())

    def plan(self, state: SegmentationState, variant: str, lane: Lane, at: str, *,
             request_ids: tuple[str, ...] = (), force: bool = False) -> RenderJob:
        target = Target(self.name, state.asset_id)
        return RenderJob(
            job_id=job_id_for(target, variant, state.revision), target=target, variant=variant,
            revision=state.revision, lane=lane, source_uri=state.source, source_sha256=state.source_sha256 or "",
            media_type="image", enqueued_at=at, force=force, request_ids=request_ids, detail=state.detail(),
        )

    def render_call(self, job: RenderJob, settings: Settings) -> RenderCall:
        from regen.imaging.render import (  # imaging (Pillow, numpy) loads only where it renders
            OverlayTask,
            refuse_overlay,
            run_overlay_task,
        )

        try:
            detail = read_detail(job.detail)
        except SchemaError as e:  # fails the job for good, in the render process like any render error
            return refuse_overlay, f"job {job.job_id}: its segmentation is malformed: {e}"
        return run_overlay_task, OverlayTask(
            source_uri=job.source_uri, source_sha256=job.source_sha256, variant=job.variant,
            shapes=shapes_of(detail.polygons), colors=detail.colors, media_roots=settings.media_roots,
            image_store=Path(settings.image_store), limits=settings.limits(), force=job.force)

    def queued(self, state: SegmentationState, job: RenderJob, at: str) -> SegmentationState:
        return variant_folds.variant_queued(state, job, at)

    def completed(self, state: SegmentationState, event: Completion) -> SegmentationState:
        if isinstance(event, ImageGenerated):
            return variant_folds.variant_generated(state, event)
        return variant_folds.variant_failed(state, event)

    def current_output(self, state: SegmentationState, variant: str) -> dict | None:
        entry = state.variant(variant)
        if entry is None or entry.status != "completed" or entry.revision != state.revision:
            return None
        return entry.output

    def recorded_outputs(self, target_id: str, state: SegmentationState,
                         settings: Settings) -> Iterable[RecordedOutput]:
        # Only the wanted revision's: an older overlay shows polygons since replaced.
        for variant in sorted(state.variants):
            output = self.current_output(state, variant)
            if output:
                yield RecordedOutput(Target(self.name, target_id), variant, output)

    def held_outputs(self, target_id: str, state: SegmentationState,
                     settings: Settings) -> Iterable[tuple[str, str]]:
        # An older revision's overlay too, until the new one replaces it.
        return variant_folds.held_variant_outputs(state)

    def unrendered_outputs(self, target_id: str, state: SegmentationState,
                           settings: Settings) -> Iterable[UnrenderedOutput]:
        for variant in settings.standing_overlay_variants():
            entry = state.variant(variant)
            if entry is not None and entry.revision == state.revision and entry.status == "completed":
                continue
            failed = entry is not None and entry.revision == state.revision and entry.status == "failed"
            yield UnrenderedOutput(Target(self.name, target_id), variant, "failed" if failed else "not rendered")

    def group(self, state: SegmentationState) -> str | None:
        return state.group_id

    def offline_call(self, source: Path, store: Path, variant: str, settings: Settings,
                     options: dict[str, Any]) -> RenderCall:
        import orjson

        from regen.imaging.render import OverlayTask, run_overlay_task

        try:
            detail = read_detail(orjson.loads(Path(options["segmentation"]).read_bytes()))
        except (OSError, orjson.JSONDecodeError, SchemaError) as e:
            raise ValueError(f"--segmentation {options['segmentation']}: {e}") from e
        return run_overlay_task, OverlayTask(
            source_uri=source.name, source_sha256="", variant=variant, shapes=shapes_of(detail.polygons),
            colors=detail.colors, media_roots=(source.parent,), image_store=store, limits=settings.limits(),
            force=True)

    def example_source(self, media: Path, target_id: str, revision: int) -> Event:
        from PIL import Image

        path = media / f"{target_id}-segmented.jpg"
        if not path.exists():
            Image.new("RGB", (320, 240), (90, 120, 160)).save(path, quality=90)
        # Each revision moves the square: other content, another overlay.
        x = 20.0 * revision
        square = Polygon(label="cell", points=((x, 40.0), (x + 100, 40.0), (x + 100, 140.0), (x, 140.0)),
                         holes=(((x + 30, 70.0), (x + 70, 70.0), (x + 50, 110.0)),))
        return SegmentationChanged(asset_id=target_id, revision=revision, source=path.name, polygons=(square,),
                                   colors={"cell": "#ff3300"})
