"""Boundary edits -> dirty state -> one coalesced composite, through a real broker and worker."""

from __future__ import annotations

from regen.imaging.render import CompositeTask, run_composite_task
from regen.schemas.events import ImageGenerated
from regen.streams.codec import decode
from regen.streams.results import read_records, wait_for
from regen.streams.topics import IMAGES_RESULTS
from tests.helpers import edit, eventually, publish_all, run


def composites_for(settings, bootstrap, annotation_id: str) -> list:
    records = run(read_records(settings, bootstrap, IMAGES_RESULTS, idle_timeout=1.0))
    events = [decode(r.value, r.headers, IMAGES_RESULTS.event_types)[0] for r in records]
    return [e for e in events if e.target.kind == "composite" and e.target.id == annotation_id]


def test_a_burst_of_edits_gives_one_render_of_the_last_revision(start_worker, corpus, media):
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="1.5")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    # A user drags the end handle: 100 edits, well within one second.
    edits = [edit("drag", r, end=10 + r % 30) for r in range(1, 101)]
    run(publish_all(settings, bootstrap, edits))

    assert eventually(lambda: worker.get("/videos/v1")[1]["pending"] == 1, timeout=5), worker.get("/videos/v1")
    done = run(wait_for(settings, bootstrap, lambda c: c.target.id, {"drag"}, timeout=60))["drag"]
    assert isinstance(done, ImageGenerated) and done.revision == 100
    last = edits[-1]
    assert done.frames_used == tuple(range(last.start_frame, last.end_frame + 1))

    annotation = eventually(lambda: (a := worker.get("/annotations/drag")[1]).get("dirty") is False and a)
    assert annotation, worker.get("/annotations/drag")
    assert (annotation["wanted_revision"], annotation["rendered_revision"]) == (100, 100)
    assert eventually(lambda: worker.get("/videos/v1")[1]["pending"] == 0), worker.get("/videos/v1")
    # Exactly one render, even after waiting past another idle period.
    assert len(composites_for(settings, bootstrap, "drag")) == 1

    # The same bytes as the offline composite of the same span.
    offline = run_composite_task(CompositeTask("clip.mp4", last.start_frame, last.end_frame, None, "full.png",
                                               (media,), media.parent / "offline-store"))
    assert offline.sha256 == done.sha256


def test_pending_counts_per_video_are_exact_at_every_step(start_worker, corpus, media):
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="8")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    annotations = [(f"n{i}", "va" if i % 2 else "vb") for i in range(10)]
    expected = {"va": set(), "vb": set()}
    # Interleaved: two new annotations per step, plus re-edits of earlier ones
    # (which must not count twice).
    for step in range(5):
        batch = []
        for annotation, video in annotations[2 * step: 2 * step + 2]:
            batch.append(edit(annotation, 1, video=video, start=step, end=step + 5))
            expected[video].add(annotation)
        for annotation, video in annotations[: 2 * step]:
            batch.append(edit(annotation, step + 1, video=video, start=step, end=step + 6))
        run(publish_all(settings, bootstrap, batch))
        for video in ("va", "vb"):
            want = len(expected[video])
            # eventually() calls the probe before the loop moves on.
            got = eventually(lambda: worker.get(f"/videos/{video}")[1]["pending"] == want, timeout=4)  # noqa: B023
            assert got, f"step {step}: {video} pending {worker.get(f'/videos/{video}')[1]}, expected {want}"
            assert sorted(worker.get(f"/videos/{video}")[1]["dirty_annotations"]) == sorted(expected[video])

    # Once idle, every annotation renders once and both counts fall to zero.
    run(wait_for(settings, bootstrap, lambda c: c.target.id, {a for a, _ in annotations}, timeout=90))
    for video in ("va", "vb"):
        assert eventually(lambda: worker.get(f"/videos/{video}")[1]["pending"] == 0,  # noqa: B023 - called here
                          timeout=20), worker.get(f"/videos/{video}")
        progress = worker.get(f"/videos/{video}")[1]
        assert (progress["total"], progress["current"], progress["waiting"], progress["failed"]) == (5, 5, 0, 0)
        assert progress["eta_s"] == 0.0


def test_an_old_revision_arriving_late_changes_nothing(start_worker, corpus, media):
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="1")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    run(publish_all(settings, bootstrap, [edit("late", 5, start=2, end=9), edit("late", 3, start=30, end=47)]))
    done = run(wait_for(settings, bootstrap, lambda c: c.target.id, {"late"}, timeout=60))["late"]
    assert done.revision == 5 and done.frames_used == tuple(range(2, 10))
    annotation = eventually(lambda: (a := worker.get("/annotations/late")[1]).get("dirty") is False and a)
    assert annotation and (annotation["start_frame"], annotation["end_frame"]) == (2, 9)
    assert annotation["wanted_revision"] == 5
    # Nothing pending once the clean flag reaches the video, and no second render.
    assert eventually(lambda: worker.get("/videos/v1")[1]["pending"] == 0), worker.get("/videos/v1")
    assert len(composites_for(settings, bootstrap, "late")) == 1
