"""ImageRequested: answered from the store, rendered ahead of background work,
one render per target — through a real broker and worker."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from regen.cli.importer import scan
from regen.schemas.events import ImageFailed, ImageGenerated, ImageRequested, Target
from regen.schemas.jobs import RenderJob
from regen.streams.client import ImageClient
from regen.streams.codec import decode
from regen.streams.publisher import Publisher
from regen.streams.results import read_records, wait_for
from regen.streams.topics import IMAGES_RESULTS, RENDER_INTERACTIVE
from tests.helpers import edit, eventually, make_photos, publish_all, run


def import_and_wait(worker, paths: list[Path], root: Path) -> list:
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    events = [s.event for s in scan(paths, [root], "requests")]
    run(publish_all(settings, bootstrap, events))
    expected = {f"{e.asset_id}/{v}" for e in events for v in settings.pregenerate_variants}
    run(wait_for(settings, bootstrap, lambda c: f"{c.target.id}/{c.variant}", expected, 90))
    return events


async def ask(worker, *requests: tuple[Target, str, bool]) -> list:
    """Each (target, variant, force) in turn through one client."""
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    async with ImageClient(settings, bootstrap, source="tests") as client:
        return [await client.request(target, variant, force=force, timeout=60) for target, variant, force in requests]


def lane_jobs(worker, job_id: str) -> int:
    """How many times a job was sent to the interactive lane."""
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    records = run(read_records(settings, bootstrap, RENDER_INTERACTIVE, idle_timeout=1.0))
    return sum(decode(r.value, r.headers, (RenderJob,))[0].job_id == job_id for r in records)


def test_a_repeated_request_is_a_cache_hit_and_force_or_a_damaged_file_renders_again(start_worker, corpus):
    worker = start_worker(REGEN_PREGENERATE_VARIANTS="h400.jpg")
    (asset,) = import_and_wait(worker, [corpus / "photos" / "Portrait_5.jpg"], corpus)
    target = Target("thumbnail", asset.asset_id)
    job_id = f"thumbnail:{asset.asset_id}:h200.jpg:r1"

    first, again = run(ask(worker, (target, "h200.jpg", False), (target, "h200.jpg", False)))
    assert isinstance(first, ImageGenerated) and not first.cache_hit and first.height == 200
    assert isinstance(again, ImageGenerated) and again.cache_hit and again.sha256 == first.sha256
    assert lane_jobs(worker, job_id) == 1, "a cache hit creates no render job"
    status, job = worker.get(f"/jobs/{job_id}")
    assert job["status"] == "completed" and job["attempts"] == 1

    (forced,) = run(ask(worker, (target, "h200.jpg", True)))
    assert not forced.cache_hit and forced.sha256 == first.sha256, "force renders again, same bytes"
    assert lane_jobs(worker, job_id) == 2

    output = worker.settings.image_store / first.uri
    output.unlink()
    (after_delete,) = run(ask(worker, (target, "h200.jpg", False)))
    assert not after_delete.cache_hit and output.exists()
    output.write_bytes(output.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    (after_change,) = run(ask(worker, (target, "h200.jpg", False)))
    assert not after_change.cache_hit
    assert hashlib.sha256(output.read_bytes()).hexdigest() == first.sha256, "the damaged file was replaced"
    assert lane_jobs(worker, job_id) == 4


@pytest.mark.slow  # about 20 s: a backlog of 600 renders
def test_an_interactive_request_overtakes_the_background_backlog(start_worker, corpus, tmp_path):
    folder = tmp_path / "backlog"
    photos = make_photos(folder, 300)
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{folder}", REGEN_PREGENERATE_VARIANTS="h400.jpg,h400.webp")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    (wanted,) = import_and_wait(worker, [corpus / "photos" / "Landscape_5.jpg"], corpus)
    backlog = [s.event for s in scan(photos, [folder], "backlog")]

    async def scenario() -> tuple[ImageGenerated, int, int]:
        async with ImageClient(settings, bootstrap, source="tests") as client:
            async with Publisher(settings, bootstrap, source="tests") as publisher:
                await publisher.publish_many(backlog)
            await asyncio.sleep(1.0)  # the background lane is busy now
            answer = await client.request(Target("thumbnail", wanted.asset_id), "h200.jpg", timeout=60)
        records = await read_records(settings, bootstrap, IMAGES_RESULTS, idle_timeout=1.0)
        order = [decode(r.value, r.headers, IMAGES_RESULTS.event_types)[0] for r in records]
        position = next(i for i, c in enumerate(order) if answer.request_ids and c.request_ids == answer.request_ids)
        background = [i for i, c in enumerate(order) if c.target.id != wanted.asset_id]
        return answer, position, sum(i > position for i in background)

    answer, position, background_after = run(scenario())
    total = 2 * len(backlog)
    run(wait_for(settings, bootstrap, lambda c: f"{c.target.id}/{c.variant}",
                 {f"{e.asset_id}/{v}" for e in backlog for v in settings.pregenerate_variants}, 120))
    assert isinstance(answer, ImageGenerated) and not answer.cache_hit
    assert background_after > total // 2, (
        f"the request was answered after {total - background_after} of {total} background renders")


def test_concurrent_requests_for_one_target_share_one_render(start_worker, corpus):
    worker = start_worker(REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    (asset,) = import_and_wait(worker, [corpus / "photos" / "Landscape_8.jpg"], corpus)
    target = Target("thumbnail", asset.asset_id)
    requests = [ImageRequested(target, "full.png", rid) for rid in ("alice", "bob")]
    run(publish_all(settings, bootstrap, requests))

    seen = run(wait_for(settings, bootstrap, lambda c: c.job_id if c.target == target and c.variant == "full.png"
                        else None, {f"thumbnail:{asset.asset_id}:full.png:r1"}, 60))
    records = run(read_records(settings, bootstrap, IMAGES_RESULTS, idle_timeout=1.0))
    completions = [c for c in (decode(r.value, r.headers, IMAGES_RESULTS.event_types)[0] for r in records)
                   if c.target == target and c.variant == "full.png"]
    assert len(completions) == 1, completions
    (done,) = seen.values()
    assert isinstance(done, ImageGenerated) and not done.cache_hit
    assert set(done.request_ids) == {"alice", "bob"}
    assert lane_jobs(worker, done.job_id) == 1


def test_a_request_renders_a_dirty_composite_now_and_unknown_targets_fail(start_worker, corpus, media):
    # An idle delay far beyond the wait below: only the request can explain a render.
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="600")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    run(publish_all(settings, bootstrap, [edit("caption", 1, start=2, end=9), edit("caption", 2, start=4, end=12)]))
    assert eventually(lambda: worker.get("/annotations/caption")[1].get("wanted_revision") == 2)

    composite = Target("composite", "caption")
    first, again, unknown, unknown_asset = run(ask(
        worker, (composite, "full.png", False), (composite, "full.png", False),
        (Target("composite", "no-such-annotation"), "full.png", False),
        (Target("thumbnail", "no-such-asset"), "h400.jpg", False)))
    assert isinstance(first, ImageGenerated) and not first.cache_hit
    assert first.revision == 2 and first.frames_used == tuple(range(4, 13))
    assert isinstance(again, ImageGenerated) and again.cache_hit and again.sha256 == first.sha256
    for refused, noun in ((unknown, "annotation"), (unknown_asset, "asset")):
        assert isinstance(refused, ImageFailed) and refused.error_code == "unknown_target"
        assert noun in refused.error and refused.reason == "permanent"
    annotation = eventually(lambda: (a := worker.get("/annotations/caption")[1]).get("dirty") is False and a)
    assert annotation and annotation["rendered_revision"] == 2
    assert eventually(lambda: worker.get("/videos/v1")[1]["pending"] == 0)


def test_regen_get_prints_the_image_and_fails_clearly(start_worker, corpus):
    worker = start_worker(REGEN_PREGENERATE_VARIANTS="h400.jpg")
    (asset,) = import_and_wait(worker, [corpus / "photos" / "Portrait_1.jpg"], corpus)

    def regen_get(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "regen.cli.main", "get", *args], env=worker.env,
                              capture_output=True, text=True, timeout=90)

    hit = regen_get("thumbnail", asset.asset_id, "--json")
    assert hit.returncode == 0, hit.stderr
    row = orjson.loads(hit.stdout)
    assert row["status"] == "generated" and row["cache_hit"] is True and row["variant"] == "h400.jpg"
    assert Path(row["path"]).is_file() and row["latency_ms"] > 0

    text = regen_get("thumbnail", asset.asset_id, "--variant", "h200.jpg", "--wait", "60")
    assert text.returncode == 0, text.stderr
    path, summary = text.stdout.strip().splitlines()
    assert path.endswith("h200.jpg") and Path(path).is_file() and "rendered in" in summary

    missing = regen_get("thumbnail", "not-imported")
    assert missing.returncode == 1 and "never been imported" in missing.stdout
