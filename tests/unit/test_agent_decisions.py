"""The agents' decisions, against tables held in memory (no broker): what an
import queues, what a boundary edit notes and announces, how a request is
answered, joined or refused, when a job starts or is superseded, and when
the idle scheduler sends a composite. Sends are recorded instead of made."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from regen.agents.context import WorkerContext
from regen.agents.idle import schedule_idle
from regen.agents.intake import on_image_requested, on_source_event
from regen.agents.render import _start
from regen.agents.tables import Tables
from regen.kinds import KINDS
from regen.projections.planning import generated_event
from regen.projections.state import AnnotationState, AssetState, JobState
from regen.schemas.events import BoundaryChanged, ImageFailed, ImageGenerated, ImageRequested, Target
from regen.schemas.jobs import DirtyFlag, RenderJob
from regen.settings import Settings

THUMBNAIL, COMPOSITE = KINDS["thumbnail"], KINDS["composite"]


class InMemoryContext(WorkerContext):
    """A worker's context whose tables are dicts and whose sends are kept."""

    async def emit(self, spec, event) -> None:
        self.sent.append((spec.suffix, event))


@pytest.fixture
def ctx(tmp_path: Path) -> InMemoryContext:
    media = tmp_path / "media"
    media.mkdir()
    settings = Settings(media_roots=(media,), image_store=tmp_path / "store", state_dir=tmp_path / "state",
                        render_processes=1, idle_delay=0.0)
    tables = Tables(jobs={}, videos={}, batches={}, groups={}, by_kind={kind.table: {} for kind in KINDS.values()})
    recovered = SimpleNamespace(tables=SimpleNamespace(recovery=SimpleNamespace(
        completed=SimpleNamespace(is_set=lambda: True))))
    context = InMemoryContext(app=recovered, settings=settings, tables=tables, pool=None)  # type: ignore[arg-type]
    context.sent = []  # type: ignore[attr-defined]
    return context


def run(coro):
    return asyncio.run(coro)


def sent(ctx, topic: str) -> list:
    return [event for suffix, event in ctx.sent if suffix == topic]


def import_example(ctx, asset_id: str = "a1", revision: int = 1):
    event = THUMBNAIL.example_source(ctx.settings.media_roots[0], asset_id, revision)
    run(on_source_event(ctx, event))
    return event


def test_an_import_queues_its_standing_variants_once(ctx):
    import_example(ctx)
    jobs = [j for j in sent(ctx, "render.background") if j.target.kind == "thumbnail"]  # other kinds may follow too
    assert [j.variant for j in jobs] == list(ctx.settings.pregenerate_variants)
    asset = AssetState.from_dict(ctx.tables.assets["a1"])
    assert {v: asset.variant(v).status for v in ctx.settings.pregenerate_variants} == {
        v: "pending" for v in ctx.settings.pregenerate_variants}
    # Redelivered: the pending jobs go out again (a crash may have lost them)...
    ctx.sent.clear()
    import_example(ctx)
    assert [j.job_id for j in sent(ctx, "render.background") if j.target.kind == "thumbnail"] == [
        j.job_id for j in jobs]
    # ...but a finished one does not.
    ctx.tables.jobs[jobs[0].job_id] = JobState.from_dict(ctx.tables.jobs[jobs[0].job_id]).evolve(
        status="completed").to_dict()
    ctx.sent.clear()
    import_example(ctx)
    assert [j.job_id for j in sent(ctx, "render.background") if j.target.kind == "thumbnail"] == [
        j.job_id for j in jobs[1:]]


def edit(annotation_id: str, revision: int) -> BoundaryChanged:
    return BoundaryChanged(annotation_id=annotation_id, video_id="v1", start_frame=0, end_frame=5,
                           revision=revision, source="clip.mp4")


def test_a_boundary_edit_is_noted_for_the_idle_scheduler_and_announced(ctx):
    run(on_source_event(ctx, edit("n1", 2)))
    assert ctx.idle.revision_of("composite", "n1") == 2
    flags = sent(ctx, "annotations.dirty")
    assert len(flags) == 1 and isinstance(flags[0], DirtyFlag) and flags[0].dirty and flags[0].video_id == "v1"
    assert sent(ctx, "render.background") == [], "a composite waits for the idle delay"
    ctx.sent.clear()
    run(on_source_event(ctx, edit("n1", 1)))  # older: changes nothing, announces nothing
    assert ctx.sent == [] and AnnotationState.from_dict(ctx.tables.annotations["n1"]).wanted_revision == 2


def test_the_idle_scheduler_sends_one_job_unless_a_request_got_there_first(ctx):
    run(on_source_event(ctx, edit("n1", 3)))
    run(on_source_event(ctx, edit("n2", 1)))
    requested = COMPOSITE.plan(COMPOSITE.read(ctx.tables.annotations["n2"]), ctx.settings.composite_variant,
                               "interactive", "t")
    ctx.tables.jobs[requested.job_id] = {"job_id": requested.job_id, "target_kind": "composite", "target_id": "n2",
                                         "variant": requested.variant, "revision": 1, "lane": "interactive",
                                         "status": "running", "created_at": "t", "updated_at": "t"}
    ctx.sent.clear()
    run(schedule_idle(ctx))
    jobs = sent(ctx, "render.background")
    assert [(j.target.id, j.revision) for j in jobs] == [("n1", 3)]
    ctx.sent.clear()
    run(schedule_idle(ctx))
    assert ctx.sent == [], "each candidate is sent once"


def request(target_id: str, kind: str = "thumbnail", variant: str = "h400.jpg", rid: str = "r1",
            force: bool = False) -> ImageRequested:
    return ImageRequested(target=Target(kind, target_id), variant=variant, request_id=rid, force=force)


def test_unknown_targets_and_variants_are_refused(ctx):
    run(on_image_requested(ctx, request("nobody")))
    run(on_image_requested(ctx, request("nobody", kind="composite", variant="full.png")))
    import_example(ctx)
    run(on_image_requested(ctx, request("a1", variant="h999.gif")))
    refusals = [e for e in sent(ctx, "images.results") if isinstance(e, ImageFailed)]
    assert [(r.error_code, r.request_ids) for r in refusals] == [
        ("unknown_target", ("r1",)), ("unknown_target", ("r1",)), ("unknown_variant", ("r1",))]
    assert "never been imported" in refusals[0].error and "BoundaryChanged" in refusals[1].error


def test_a_request_joins_the_job_in_flight(ctx):
    import_example(ctx)
    ctx.sent.clear()
    run(on_image_requested(ctx, request("a1", rid="late")))
    assert sent(ctx, "render.interactive") == [] and sent(ctx, "images.results") == []
    job_id = THUMBNAIL.plan(THUMBNAIL.read(ctx.tables.assets["a1"]), "h400.jpg", "background", "t").job_id
    assert "late" in JobState.from_dict(ctx.tables.jobs[job_id]).request_ids


def render_for_real(ctx, job: RenderJob) -> ImageGenerated:
    fn, task = THUMBNAIL.render_call(job, ctx.settings)
    done = generated_event(job, fn(task), ctx.settings.image_store, 1, "2026-01-01T00:00:01Z")
    ctx.tables.jobs[job.job_id] = JobState.from_dict(ctx.tables.jobs[job.job_id]).evolve(
        status="completed", output={"uri": done.uri, "sha256": done.sha256, "width": done.width,
                                    "height": done.height, "bytes": done.bytes}).to_dict()
    return done


def test_a_finished_job_answers_from_the_store_and_a_damaged_file_is_rendered_again(ctx):
    import_example(ctx)
    job = sent(ctx, "render.background")[0]
    done = render_for_real(ctx, job)
    ctx.sent.clear()
    run(on_image_requested(ctx, request("a1", rid="again")))
    [answer] = sent(ctx, "images.results")
    assert isinstance(answer, ImageGenerated) and answer.cache_hit and answer.request_ids == ("again",)
    assert sent(ctx, "render.interactive") == []
    # The file changed on disk: not an answer, a forced render.
    (ctx.settings.image_store / done.uri).write_bytes(b"not the image")
    ctx.sent.clear()
    run(on_image_requested(ctx, request("a1", rid="third")))
    [rerender] = sent(ctx, "render.interactive")
    assert rerender.force and sent(ctx, "images.results") == []


def test_a_job_starts_unless_superseded_or_already_finished(ctx):
    import_example(ctx, revision=1)
    old = sent(ctx, "render.background")[0]
    assert _start(ctx, old) == "render"
    assert JobState.from_dict(ctx.tables.jobs[old.job_id]).status == "running"
    import_example(ctx, revision=2)  # new content: revision 2 is wanted now
    assert _start(ctx, old) is None
    assert JobState.from_dict(ctx.tables.jobs[old.job_id]).status == "superseded"
    newer = sent(ctx, "render.background")[-1]
    render_for_real(ctx, newer)
    told_again = _start(ctx, newer)  # a redelivered lane message of a finished job
    assert isinstance(told_again, ImageGenerated) and told_again.revision == 2


def test_idle_delay_is_respected(ctx):
    ctx.settings = ctx.settings.with_overrides(idle_delay=60.0)
    run(on_source_event(ctx, edit("n1", 1)))
    ctx.sent.clear()
    run(schedule_idle(ctx))
    assert ctx.sent == []
    ctx.idle.note("composite", "n1", ctx.idle.revision_of("composite", "n1"), time.monotonic() - 61)
    run(schedule_idle(ctx))
    assert len(sent(ctx, "render.background")) == 1
