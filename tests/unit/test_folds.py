"""Pure folds: idempotent, and revisions decide what is current."""

from __future__ import annotations

from regen.kinds.thumbnail import Thumbnail
from regen.projections import folds, variant_folds
from regen.schemas.events import AssetImported, ImageFailed, ImageGenerated, Target

SHA1, SHA2 = "a" * 64, "b" * 64
AT = "2026-11-21T10:00:00Z"


def imported(sha=SHA1, **kw) -> AssetImported:
    return AssetImported(asset_id="a1", uri="p/x.jpg", media_type="image", sha256=sha, size_bytes=5,
                         imported_at=AT, **kw)


def generated(revision=1, sha="c" * 64, **kw) -> ImageGenerated:
    values = dict(target=Target("thumbnail", "a1"), variant="h400.jpg", revision=revision,
                  job_id=f"thumbnail:a1:h400.jpg:r{revision}", uri="t/x/h400.jpg", sha256=sha, width=600,
                  height=400, bytes=1000, render_ms=12.0, attempts=1, cache_hit=False, generated_at=AT)
    values.update(kw)
    return ImageGenerated(**values)


def failed(revision=1) -> ImageFailed:
    return ImageFailed(target=Target("thumbnail", "a1"), variant="h400.jpg", revision=revision,
                       job_id=f"thumbnail:a1:h400.jpg:r{revision}", reason="permanent", error_code="corrupt",
                       error="bad", attempts=1, failed_at=AT)


def test_import_is_idempotent_and_new_content_bumps_the_revision():
    first = folds.asset_imported(None, imported())
    assert first.revision == 1
    assert folds.asset_imported(first, imported()) == first
    changed = folds.asset_imported(first, imported(sha=SHA2))
    assert changed.revision == 2 and changed.sha256 == SHA2 and changed.variants == {}


def test_job_lifecycle_and_duplicates():
    asset = folds.asset_imported(None, imported())
    job = Thumbnail().plan(asset, "h400.jpg", "background", AT)
    assert job.job_id == "thumbnail:a1:h400.jpg:r1"
    queued = folds.job_queued(None, job, AT)
    assert queued.status == "pending"
    assert folds.job_queued(queued, job, AT) == queued
    running = folds.job_started(queued, job, AT)
    assert running.status == "running" and running.attempts == 1
    done = folds.job_generated(running, generated())
    assert done.status == "completed" and done.output["sha256"] == "c" * 64
    assert folds.job_generated(done, generated()) == done
    assert folds.job_failed(done, failed()).status == "completed", "a late failure never hides a good image"
    assert folds.job_queued(done, job, AT) == done, "a finished job is not reopened unless forced"


def test_requests_join_a_pending_job():
    asset = folds.asset_imported(None, imported())
    state = folds.job_queued(None, Thumbnail().plan(asset, "h400.jpg", "interactive", AT, request_ids=("r1",)), AT)
    state = folds.job_queued(state, Thumbnail().plan(asset, "h400.jpg", "interactive", AT, request_ids=("r2",)), AT)
    assert state.request_ids == ("r1", "r2")
    done = folds.job_generated(state, generated(request_ids=("r1",)))
    assert done.request_ids == ("r1", "r2")


def test_asset_variants_follow_completions_of_the_current_revision_only():
    asset = folds.asset_imported(None, imported())
    asset = variant_folds.variant_queued(asset, Thumbnail().plan(asset, "h400.jpg", "background", AT), AT)
    assert asset.variant("h400.jpg").status == "pending"
    asset = folds.asset_imported(asset, imported(sha=SHA2))  # revision 2
    stale = variant_folds.variant_generated(asset, generated(revision=1))
    assert stale == asset, "a render of old content must not count for the new one"
    current = variant_folds.variant_generated(asset, generated(revision=2))
    assert current.variant("h400.jpg").status == "completed"
    assert variant_folds.variant_generated(current, generated(revision=2)) == current
    assert variant_folds.variant_failed(current, failed(revision=2)) == current


def test_failure_is_recorded_with_reason():
    asset = folds.asset_imported(None, imported())
    after = variant_folds.variant_failed(asset, failed())
    v = after.variant("h400.jpg")
    assert v.status == "failed" and "permanent" in v.error
    job = folds.job_failed(None, failed())
    assert (job.status, job.reason, job.error_code) == ("failed", "permanent", "corrupt")


# --- annotations ------------------------------------------------------------

from regen.projections.state import VideoState  # noqa: E402
from regen.schemas.events import BoundaryChanged  # noqa: E402


def edit(revision, start=0, end=10, video="v1") -> BoundaryChanged:
    return BoundaryChanged(annotation_id="n1", video_id=video, start_frame=start, end_frame=end,
                           revision=revision, source="clip.mp4")


def composite_done(revision, annotation_id="n1") -> ImageGenerated:
    return generated(revision=revision, target=Target("composite", annotation_id),
                     job_id=f"composite:{annotation_id}:full.png:r{revision}", frames_used=(0, 1, 2))


def test_boundary_revisions_only_grow():
    first = folds.boundary_changed(None, edit(2, end=5), AT)
    assert first.dirty and first.wanted_revision == 2
    assert folds.boundary_changed(first, edit(1, end=99), AT) is first
    assert folds.boundary_changed(first, edit(2, end=99), AT) is first
    newer = folds.boundary_changed(first, edit(3, end=7), AT)
    assert (newer.wanted_revision, newer.end_frame) == (3, 7)


def test_completion_clears_dirty_only_without_a_newer_edit():
    state = folds.boundary_changed(None, edit(1), AT)
    state = folds.boundary_changed(state, edit(2), AT)
    stale_render = folds.annotation_rendered(state, composite_done(1))
    assert stale_render.dirty and stale_render.rendered_revision == 1
    current = folds.annotation_rendered(stale_render, composite_done(2))
    assert not current.dirty and current.frames_used == (0, 1, 2)
    assert folds.annotation_rendered(current, composite_done(2)) is current


def test_dirty_flags_flip_and_fold_into_an_exact_pending_set():
    clean = None
    dirty = folds.boundary_changed(clean, edit(1), AT)
    flag = folds.dirty_flag_changed(clean, dirty)
    assert flag.dirty and flag.revision == 1
    again = folds.boundary_changed(dirty, edit(2), AT)
    assert folds.dirty_flag_changed(dirty, again) is None, "still dirty: no flip"
    video = folds.video_flagged(None, flag)
    assert video.pending == 1
    assert folds.video_flagged(video, flag) == video, "a replayed flag does not count twice"
    done = folds.annotation_rendered(again, composite_done(2))
    clean_flag = folds.dirty_flag_changed(again, done)
    assert clean_flag is not None and not clean_flag.dirty
    assert folds.video_flagged(video, clean_flag).pending == 0


def test_a_late_clean_flag_does_not_hide_a_newer_edit():
    video = VideoState(video_id="v1", dirty={"n1": 6})
    from regen.schemas.jobs import DirtyFlag

    late_clean = DirtyFlag(video_id="v1", annotation_id="n1", revision=5, dirty=False, at=AT)
    assert folds.video_flagged(video, late_clean).pending == 1


def test_a_video_tracks_each_annotation_current_waiting_or_failed_with_a_rate():
    from regen.projections.progress import video_view
    from regen.schemas.events import ImageFailed, Target

    video, states = None, {}
    for annotation_id in ("n1", "n2", "n3"):
        states[annotation_id] = folds.boundary_changed(None, replace_id(edit(1), annotation_id), AT)
        video = folds.video_flagged(video, folds.dirty_flag_changed(None, states[annotation_id]), now=100.0)
    view = video_view(video, now=100.0)
    assert (view["total"], view["waiting"], view["current"], view["failed"]) == (3, 3, 0, 0)

    rendered = folds.annotation_rendered(states["n1"], composite_done(1, "n1"))
    video = folds.video_flagged(video, folds.dirty_flag_changed(states["n1"], rendered), now=110.0)
    failure = ImageFailed(target=Target("composite", "n2"), variant="full.png", revision=1, job_id="j",
                          reason="permanent", error_code="corrupt", error="clip.mp4: cannot decode",
                          attempts=1, failed_at=AT)
    failed = folds.annotation_failed(states["n2"], failure)
    flag = folds.dirty_flag_changed(states["n2"], failed)
    assert flag is not None and flag.status == "failed" and flag.dirty, "a failure is a status change"
    video = folds.video_flagged(video, flag, now=120.0)
    assert folds.video_flagged(video, flag, now=125.0) is video, "a repeated flag changes nothing"
    view = video_view(video, now=120.0)
    assert (view["total"], view["waiting"], view["current"], view["failed"]) == (3, 1, 1, 1)
    assert view["failures"] == [{"annotation_id": "n2", "revision": 1, "error": "permanent: clip.mp4: cannot decode"}]
    assert view["rate_per_s"] == 0.1 and view["eta_s"] == 10.0


def replace_id(event, annotation_id):
    from dataclasses import replace

    return replace(event, annotation_id=annotation_id)


def test_retrying_then_completed():
    from dataclasses import replace

    asset = folds.asset_imported(None, imported())
    job = Thumbnail().plan(asset, "h400.jpg", "background", AT)
    running = folds.job_started(None, job, AT)
    retrying = folds.job_retrying(running, replace(job, attempt=2), "source_missing", "not there", AT)
    assert (retrying.status, retrying.attempts, retrying.error_code) == ("retrying", 1, "source_missing")
    second = folds.job_started(retrying, replace(job, attempt=2), AT)
    assert (second.status, second.attempts) == ("running", 2)
    done = folds.job_generated(second, generated(attempts=2))
    assert done.status == "completed" and done.error is None
    assert folds.job_retrying(done, replace(job, attempt=3), "x", "late", AT) is done


def test_replay_asks_once_per_target_and_variant_for_the_latest_state():
    from regen.projections.replay import ReplayItem, replay_items
    from regen.schemas.events import AssetImported, BoundaryChanged, Target

    def imported(asset_id: str, sha: str) -> AssetImported:
        return AssetImported(asset_id=asset_id, uri=f"{asset_id}.jpg", media_type="image", sha256=sha * 64,
                             size_bytes=1, imported_at="2026-01-01T00:00:00Z")

    def moved(annotation_id: str, revision: int) -> BoundaryChanged:
        return BoundaryChanged(annotation_id=annotation_id, video_id="v", start_frame=0, end_frame=5,
                               revision=revision, source="v.mp4")

    events = [imported("a", "1"), moved("n", 2), imported("b", "2"), imported("a", "3"), moved("n", 1)]
    from regen.settings import Settings

    settings = Settings(pregenerate_variants=("h400.jpg", "h400.webp"), composite_variant="full.png")
    ours = ("thumbnail", "composite")  # other registered kinds may follow these events too
    items = [i for i in replay_items(events, settings) if i.target.kind in ours]
    assert items == [ReplayItem(Target("thumbnail", "a"), "h400.jpg"),
                     ReplayItem(Target("thumbnail", "a"), "h400.webp"),
                     ReplayItem(Target("thumbnail", "b"), "h400.jpg"),
                     ReplayItem(Target("thumbnail", "b"), "h400.webp"),
                     ReplayItem(Target("composite", "n"), "full.png")]
    only_new = replay_items(events, Settings(pregenerate_variants=("h400.jpg",), composite_variant="full.png"),
                            only_variants=("w800.webp",))
    assert [i.variant for i in only_new if i.target.kind in ours] == ["w800.webp", "w800.webp"]


def test_an_answer_from_the_store_changes_neither_the_job_nor_the_asset():
    from dataclasses import replace

    asset = folds.asset_imported(None, imported())
    job = Thumbnail().plan(asset, "h400.jpg", "background", AT)
    done = generated(revision=1, job_id=job.job_id)
    completed_job = folds.job_generated(folds.job_queued(None, job, AT), done)
    completed_asset = variant_folds.variant_generated(asset, done)
    hit = replace(done, cache_hit=True, request_ids=("someone",), generated_at="2026-11-22T10:00:00Z")
    assert folds.job_generated(completed_job, hit) is completed_job
    assert variant_folds.variant_generated(completed_asset, hit) is completed_asset


def test_an_asset_query_shows_a_running_job_without_the_asset_being_rewritten():
    from types import SimpleNamespace

    from regen.projections.queries import asset_status

    asset = folds.asset_imported(None, imported())
    job = Thumbnail().plan(asset, "h400.jpg", "background", AT)
    asset = variant_folds.variant_queued(asset, job, AT)
    jobs = {job.job_id: folds.job_queued(None, job, AT).to_dict()}
    tables = SimpleNamespace(assets={"a1": asset.to_dict()}, jobs=jobs)
    assert asset_status(tables, "a1")["variants"]["h400.jpg"]["status"] == "pending"
    jobs[job.job_id] = folds.job_started(folds.job_queued(None, job, AT), job, AT).to_dict()
    assert asset_status(tables, "a1")["variants"]["h400.jpg"]["status"] == "running"
    done = variant_folds.variant_generated(asset, generated())
    tables.assets["a1"] = done.to_dict()
    assert asset_status(tables, "a1")["variants"]["h400.jpg"]["status"] == "completed", "the asset's word is final"
