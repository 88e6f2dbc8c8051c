"""Median composites of an annotated span of a video or frame folder.

Source: BoundaryChanged, folded into the annotations table (revisions only
grow; the newest wanted span wins). A composite is rendered once the
annotation has been idle for REGEN_IDLE_DELAY, or at once when requested.
Each change of an annotation's status (dirty, failed, current) is announced
as a DirtyFlag keyed by its video, where the video's pending count is kept.
Outputs are named by the content the span reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from regen.kinds.base import Completion, Kind, OfflineOption, RecordedOutput, RenderCall
from regen.projections import folds
from regen.projections.state import AnnotationState
from regen.schemas.events import BoundaryChanged, Event, ImageGenerated, Target
from regen.schemas.jobs import Lane, RenderJob, job_id_for
from regen.settings import Settings


def parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    """"x,y,w,h" as typed on the command line."""
    if not text:
        return None
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ValueError(f"{text!r} is not x,y,w,h (four integers)")
    return box  # type: ignore[return-value]


class Composite(Kind[AnnotationState]):
    name = "composite"
    table = "annotations"
    noun = "annotation"
    never_known = "has never been announced by a BoundaryChanged event"
    source_events = (BoundaryChanged,)
    store_folder = "composites"
    schedule = "when idle"
    offline_help = "Render the median composite of SOURCE (a video or a folder of numbered frames) into OUTPUT."
    offline_options = (
        OfflineOption("--start", int, "First frame (0-based, inclusive).", required=True),
        OfflineOption("--end", int, "Last frame (inclusive).", required=True),
        OfflineOption("--crop", str, "x,y,w,h box to keep."),
        OfflineOption("--max-frames", int, "Sample long spans down to this many frames "
                                           "[env REGEN_COMPOSITE_MAX_FRAMES]."),
    )

    def read(self, row: dict | None) -> AnnotationState | None:
        return AnnotationState.from_dict(row)

    def source_key(self, event: Event) -> str:
        assert isinstance(event, BoundaryChanged)
        return event.annotation_id

    def fold_source(self, state: AnnotationState | None, event: Event, at: str) -> AnnotationState:
        assert isinstance(event, BoundaryChanged)
        return folds.boundary_changed(state, event, at)

    def revision(self, state: AnnotationState) -> int:
        return state.wanted_revision

    def standing_variants(self, settings: Settings) -> tuple[str, ...]:
        return (settings.composite_variant,)

    def needs_render(self, state: AnnotationState, settings: Settings) -> bool:
        # A revision that failed for good waits for a new edit.
        return state.dirty and state.failed_revision < state.wanted_revision

    def plan(self, state: AnnotationState, variant: str, lane: Lane, at: str, *,
             request_ids: tuple[str, ...] = (), force: bool = False) -> RenderJob:
        """The job for the wanted revision, carrying that revision's span."""
        target = Target(self.name, state.annotation_id)
        return RenderJob(
            job_id=job_id_for(target, variant, state.wanted_revision), target=target, variant=variant,
            revision=state.wanted_revision, lane=lane, source_uri=state.source, source_sha256="",
            media_type="video", enqueued_at=at, force=force, request_ids=request_ids,
            start_frame=state.start_frame, end_frame=state.end_frame, crop=state.crop,
        )

    def render_call(self, job: RenderJob, settings: Settings) -> RenderCall:
        from regen.imaging.render import (  # imaging (Pillow, numpy) loads only where it renders
            CompositeTask,
            run_composite_task,
        )

        return run_composite_task, CompositeTask(
            source_uri=job.source_uri, start_frame=job.start_frame or 0, end_frame=job.end_frame or 0,
            crop=job.crop, variant=job.variant, media_roots=settings.media_roots,
            image_store=Path(settings.image_store), limits=settings.limits(),
            max_frames=settings.composite_max_frames, force=job.force, preset=settings.preset(job.variant))

    def completed(self, state: AnnotationState, event: Completion) -> AnnotationState:
        if isinstance(event, ImageGenerated):
            return folds.annotation_rendered(state, event)
        return folds.annotation_failed(state, event)

    def announcements(self, before: AnnotationState | None, after: AnnotationState) -> list[Event]:
        flag = folds.dirty_flag_changed(before, after)
        return [flag] if flag is not None else []

    def current_output(self, state: AnnotationState, variant: str) -> dict | None:
        if state.dirty or state.rendered_revision != state.wanted_revision:
            return None
        return state.output

    def recorded_outputs(self, target_id: str, state: AnnotationState,
                         settings: Settings) -> Iterable[RecordedOutput]:
        # The composite variant is the one whose output the annotation keeps.
        if state.output:
            yield RecordedOutput(Target(self.name, target_id), settings.composite_variant, state.output)

    def scope(self, state: AnnotationState) -> dict[str, str | None]:
        return {"video": state.video_id}

    def offline_call(self, source: Path, store: Path, variant: str, settings: Settings,
                     options: dict[str, Any]) -> RenderCall:
        from regen.imaging.render import CompositeTask, run_composite_task

        return run_composite_task, CompositeTask(
            source_uri=source.name, start_frame=options["start"], end_frame=options["end"],
            crop=parse_crop(options.get("crop")), variant=variant, media_roots=(source.parent,),
            image_store=store, limits=settings.limits(),
            max_frames=options.get("max_frames") or settings.composite_max_frames, force=True,
            preset=settings.preset(variant))

    def example_source(self, media: Path, target_id: str, revision: int) -> Event:
        from regen.cli.samples import write_video

        clip = media / "example-clip.mp4"
        if not clip.exists():
            write_video(clip, frames=24, size=(160, 96))
        return BoundaryChanged(annotation_id=target_id, video_id="example-video", start_frame=revision,
                               end_frame=revision + 6, revision=revision, source=clip.name)
