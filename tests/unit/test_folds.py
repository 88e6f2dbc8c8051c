"""Pure folds: idempotent, and revisions decide what is current."""

from __future__ import annotations

from projections import folds
from projections.planning import plan_job
from schemas.events import AssetImported, ImageFailed, ImageGenerated, Target

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
    job = plan_job(asset, "h400.jpg", "background", AT)
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
    state = folds.job_queued(None, plan_job(asset, "h400.jpg", "interactive", AT, request_ids=("r1",)), AT)
    state = folds.job_queued(state, plan_job(asset, "h400.jpg", "interactive", AT, request_ids=("r2",)), AT)
    assert state.request_ids == ("r1", "r2")
    done = folds.job_generated(state, generated(request_ids=("r1",)))
    assert done.request_ids == ("r1", "r2")


def test_asset_variants_follow_completions_of_the_current_revision_only():
    asset = folds.asset_imported(None, imported())
    asset = folds.asset_variant_queued(asset, plan_job(asset, "h400.jpg", "background", AT), AT)
    assert asset.variant("h400.jpg").status == "pending"
    asset = folds.asset_imported(asset, imported(sha=SHA2))  # revision 2
    stale = folds.asset_image_generated(asset, generated(revision=1))
    assert stale == asset, "a render of old content must not count for the new one"
    current = folds.asset_image_generated(asset, generated(revision=2))
    assert current.variant("h400.jpg").status == "completed"
    assert folds.asset_image_generated(current, generated(revision=2)) == current
    assert folds.asset_image_failed(current, failed(revision=2)) == current


def test_failure_is_recorded_with_reason():
    asset = folds.asset_imported(None, imported())
    after = folds.asset_image_failed(asset, failed())
    v = after.variant("h400.jpg")
    assert v.status == "failed" and "permanent" in v.error
    job = folds.job_failed(None, failed())
    assert (job.status, job.reason, job.error_code) == ("failed", "permanent", "corrupt")
