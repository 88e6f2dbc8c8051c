"""Overlays through a real broker and worker: a batch of photos in every
EXIF orientation, each segmentation edited in a burst; the polygons land
where a reference drawing puts them, a superseded revision is never
rendered, and repair finds the overlays never made."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from regen.kinds import KINDS
from regen.schemas.events import ImageFailed, ImageGenerated, Polygon, SegmentationChanged, Target
from regen.streams.client import ImageClient
from regen.streams.codec import decode
from regen.streams.results import read_records, wait_for
from regen.streams.topics import IMAGES_RESULTS
from tests.helpers import (
    OVERLAY_MAGENTA,
    display_polygon,
    displayed_size,
    eventually,
    overlay_errors,
    publish_all,
    run,
)

VARIANTS = "h400.jpg,h400.webp,h200.jpg,full.png,h240.png"
OVERLAY = "h240.png"  # lossless: the pixel check measures the drawing


def segmentation(asset_id: str, revision: int, source: str, points) -> SegmentationChanged:
    return SegmentationChanged(asset_id=asset_id, revision=revision, source=source,
                               polygons=(Polygon("lesion", tuple(points)),), colors={"lesion": OVERLAY_MAGENTA})


def overlay_completions(settings, bootstrap) -> list:
    records = run(read_records(settings, bootstrap, IMAGES_RESULTS, idle_timeout=1.0))
    events = [decode(r.value, r.headers, IMAGES_RESULTS.event_types)[0] for r in records]
    return [e for e in events if e.target.kind == "overlay"]


def test_a_burst_of_edits_per_photo_renders_the_last_revision_where_the_reference_puts_it(start_worker, corpus):
    worker = start_worker(REGEN_IDLE_DELAY="1.0", REGEN_VARIANTS=VARIANTS, REGEN_OVERLAY_VARIANTS=OVERLAY)
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    photos = sorted((corpus / "photos").glob("*.jpg"))
    assert len(photos) == 18  # Landscape and Portrait in EXIF orientations 0 to 8
    wanted = {}
    edits = []
    for photo in photos:
        width, height = displayed_size(photo)
        final = display_polygon(width, height)
        wanted[photo.stem] = (photo, final)
        # Revisions 1-4 put the polygon in the lower right; only 5 is kept.
        for revision in range(1, 5):
            elsewhere = [(width - x * (1 + revision / 20), height - y) for x, y in final]
            edits.append(segmentation(photo.stem, revision, f"photos/{photo.name}", elsewhere))
        edits.append(segmentation(photo.stem, 5, f"photos/{photo.name}", final))
    run(publish_all(settings, bootstrap, edits))

    done = run(wait_for(settings, bootstrap, lambda c: c.target.id if c.target.kind == "overlay" else None,
                        set(wanted), timeout=120))
    for asset_id, completion in done.items():
        assert isinstance(completion, ImageGenerated), completion
        assert (completion.revision, completion.variant) == (5, OVERLAY)
        photo, points = wanted[asset_id]
        inside, outside, tint = overlay_errors(photo, points, Path(settings.image_store) / completion.uri)
        assert inside < 6 and outside < 6 and tint > 25, (asset_id, inside, outside, tint)

    # Superseded revisions were never rendered, nor even queued: one render per photo.
    assert sorted(c.target.id for c in overlay_completions(settings, bootstrap)) == sorted(wanted)
    for revision in range(1, 5):
        assert worker.get(f"/jobs/overlay:Landscape_6:{OVERLAY}:r{revision}")[0] == 404

    # A job of an older revision reaching a render lane (queued before the
    # newer edit, redelivered after a crash) is superseded, never rendered.
    overlay = KINDS["overlay"]
    stale_state = overlay.fold_source(None, edits[1], "2026-01-01T00:00:00Z")  # Landscape_0 revision 2
    stale = overlay.plan(stale_state, OVERLAY, "background", "2026-01-01T00:00:00Z")
    run(publish_all(settings, bootstrap, [stale]))
    job_url = f"/jobs/{stale.job_id}"
    assert eventually(lambda: worker.get(job_url)[1].get("status") == "superseded", timeout=20), worker.get(job_url)
    assert [c.revision for c in overlay_completions(settings, bootstrap) if c.target.id == "Landscape_0"] == [5]


def repair(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "regen.cli.main", "repair", "--json", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def test_repair_finds_overlays_never_made_and_makes_them(start_worker, corpus, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    # Nothing renders by itself here (an hour's idle delay): these overlays are never made.
    worker = start_worker(REGEN_IDLE_DELAY="3600", REGEN_MAX_ATTEMPTS="1", REGEN_MEDIA_ROOTS=f"{corpus}:{media}")
    settings, bootstrap, env = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"], worker.env
    photos = sorted((corpus / "photos").glob("Portrait_*.jpg"))[:5]
    events = [segmentation(p.stem, 1, f"photos/{p.name}", display_polygon(*displayed_size(p))) for p in photos]
    events.append(segmentation("late", 1, "late.jpg", display_polygon(1000, 1500)))  # not there yet
    run(publish_all(settings, bootstrap, events))

    async def ask_for_late():
        async with ImageClient(settings, bootstrap) as client:
            return await client.request(Target("overlay", "late"), timeout=60)

    failure = run(ask_for_late())
    assert isinstance(failure, ImageFailed) and failure.error_code == "source_missing", failure

    expected = {f"overlay:{p.stem}": "not rendered" for p in photos} | {"overlay:late": "failed"}
    found = eventually(lambda: (r := repair(env, "--dry-run"))["found"] == len(expected) and r, timeout=30)
    assert found, repair(env, "--dry-run")
    assert {item["target"]: item["problem"] for item in found["items"]} == expected
    assert {item["variant"] for item in found["items"]} == {settings.standing_overlay_variants()[0]}
    assert repair(env, "--dry-run", "--limit", "2")["found"] == 2

    shutil.copy(photos[0], media / "late.jpg")  # the missing upload lands
    repaired = repair(env)
    assert (repaired["found"], repaired["repaired"], repaired["failed"], repaired["unanswered"]) == (6, 6, 0, 0)
    assert eventually(lambda: repair(env, "--dry-run")["found"] == 0, timeout=30), repair(env, "--dry-run")

    # An overlay deleted from the store is found too.
    overlays = sorted((Path(settings.image_store) / "overlays").rglob("*.webp"))
    assert len(overlays) == 6
    overlays[0].unlink()
    after = repair(env, "--dry-run")
    assert [item["problem"] for item in after["items"]] == ["missing"]
