"""Thumbnails of imported photos and videos (a video's first frame).

Source: AssetImported, folded into the assets table (new content under the
same id is a new revision). Standing variants (REGEN_PREGENERATE_VARIANTS)
are queued as an import is folded. Outputs are named by the source's
content hash, so the same content under two ids renders once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from regen.kinds.base import Completion, Kind, RecordedOutput, RenderCall
from regen.projections import folds, variant_folds
from regen.projections.state import AssetState
from regen.schemas.events import AssetImported, Event, ImageGenerated, Target
from regen.schemas.jobs import Lane, RenderJob, job_id_for
from regen.settings import Settings


class Thumbnail(Kind[AssetState]):
    name = "thumbnail"
    table = "assets"
    noun = "asset"
    never_known = "has never been imported"
    source_events = (AssetImported,)
    store_folder = "thumbnails"
    schedule = "at once"
    offline_help = "Render a thumbnail of SOURCE (a photo, or a video's first frame) into OUTPUT."
    offline_options = ()

    def read(self, row: dict | None) -> AssetState | None:
        return AssetState.from_dict(row)

    def source_key(self, event: Event) -> str:
        assert isinstance(event, AssetImported)
        return event.asset_id

    def fold_source(self, state: AssetState | None, event: Event, at: str) -> AssetState:
        assert isinstance(event, AssetImported)
        return folds.asset_imported(state, event)

    def revision(self, state: AssetState) -> int:
        return state.revision

    def standing_variants(self, settings: Settings) -> tuple[str, ...]:
        return settings.pregenerate_variants

    def replay_variants(self, settings: Settings, only: tuple[str, ...]) -> tuple[str, ...]:
        return only or settings.pregenerate_variants  # any configured variant, e.g. one just added

    def plan(self, state: AssetState, variant: str, lane: Lane, at: str, *,
             request_ids: tuple[str, ...] = (), force: bool = False) -> RenderJob:
        target = Target(self.name, state.asset_id)
        return RenderJob(
            job_id=job_id_for(target, variant, state.revision), target=target, variant=variant,
            revision=state.revision, lane=lane, source_uri=state.uri, source_sha256=state.sha256,
            media_type=state.media_type, enqueued_at=at, force=force, request_ids=request_ids,
        )

    def render_call(self, job: RenderJob, settings: Settings) -> RenderCall:
        from regen.imaging.render import (  # imaging (Pillow, numpy) loads only where it renders
            ThumbnailTask,
            run_thumbnail_task,
        )

        return run_thumbnail_task, ThumbnailTask(
            source_uri=job.source_uri, source_sha256=job.source_sha256, variant=job.variant,
            media_roots=settings.media_roots, image_store=Path(settings.image_store), limits=settings.limits(),
            force=job.force, media_type=job.media_type, preset=settings.preset(job.variant))

    def queued(self, state: AssetState, job: RenderJob, at: str) -> AssetState:
        return variant_folds.variant_queued(state, job, at)

    def completed(self, state: AssetState, event: Completion) -> AssetState:
        if isinstance(event, ImageGenerated):
            return variant_folds.variant_generated(state, event)
        return variant_folds.variant_failed(state, event)

    def current_output(self, state: AssetState, variant: str) -> dict | None:
        entry = state.variant(variant)
        if entry is None or entry.status != "completed" or entry.revision != state.revision:
            return None
        return entry.output

    def recorded_outputs(self, target_id: str, state: AssetState, settings: Settings) -> Iterable[RecordedOutput]:
        for variant, entry in sorted(state.variants.items()):
            if entry.get("status") == "completed" and entry.get("output"):
                yield RecordedOutput(Target(self.name, target_id), variant, entry["output"])

    def held_outputs(self, target_id: str, state: AssetState, settings: Settings) -> Iterable[tuple[str, str]]:
        return variant_folds.held_variant_outputs(state)

    def scope(self, state: AssetState) -> dict[str, str | None]:
        return {"batch": state.batch_id}

    def group(self, state: AssetState) -> str | None:
        return state.group_id

    def offline_call(self, source: Path, store: Path, variant: str, settings: Settings,
                     options: dict[str, Any]) -> RenderCall:
        from regen.imaging.render import ThumbnailTask, run_thumbnail_task

        return run_thumbnail_task, ThumbnailTask(
            source_uri=source.name, source_sha256="", variant=variant, media_roots=(source.parent,),
            image_store=store, limits=settings.limits(), force=True, preset=settings.preset(variant))

    def example_source(self, media: Path, target_id: str, revision: int) -> Event:
        import hashlib

        from PIL import Image

        path = media / f"{target_id}.jpg"
        Image.new("RGB", (320, 240), (40 * revision % 256, 90, 160)).save(path, quality=90)
        data = path.read_bytes()
        # New content under the same asset id is what makes a new revision.
        return AssetImported(asset_id=target_id, uri=path.name, media_type="image",
                             sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                             imported_at=f"2026-01-01T00:00:{revision:02d}Z")
