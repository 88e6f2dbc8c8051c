"""Replay and repair rebuild the image store from the topics, through a real broker and worker."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson

from regen.cli.importer import scan
from regen.schemas.events import ImageRequested, Target
from regen.streams.results import wait_for
from tests.helpers import edit, eventually, publish_all, run, wait_for_job_status


def regen(worker, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regen.cli.main", *args], env=worker.env, capture_output=True,
                          text=True, timeout=timeout)


def store_hashes(store: Path) -> dict[str, str]:
    return {p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in store.rglob("*") if p.is_file()}


def test_a_wiped_store_comes_back_identical_and_a_second_replay_renders_nothing(start_worker, corpus, media):
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="0.5")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    photos = sorted((corpus / "photos").glob("Landscape_*.jpg"))[:5] + [corpus / "bad" / "truncated_jpeg.jpg"]
    imports = [s.event for s in scan(photos, [corpus], "replay")]
    run(publish_all(settings, bootstrap, imports + [edit("n1", 1, start=3, end=9), edit("n2", 1, start=0, end=5)]))
    expected = ({f"{e.asset_id}/{v}" for e in imports for v in settings.pregenerate_variants}
                | {"n1/full.png", "n2/full.png"})
    run(wait_for(settings, bootstrap, lambda c: f"{c.target.id}/{c.variant}", expected, 90))
    before = store_hashes(settings.image_store)
    assert len(before) == 5 * len(settings.pregenerate_variants) + 2

    shutil.rmtree(settings.image_store)
    first = regen(worker, "replay", "--from-beginning", "--json")
    assert first.returncode == 0, first.stderr
    summary = orjson.loads(first.stdout)
    assert summary["seen"] == len(imports) + 2
    assert summary["targets"] == len(expected)
    assert (summary["rendered"], summary["skipped"], summary["failed"]) == (len(before), 0, 2)
    assert {f["target"].split(":")[1] for f in summary["failures"]} == {imports[-1].asset_id}
    assert store_hashes(settings.image_store) == before, "every output back, byte for byte"

    second = regen(worker, "replay", "--json")
    summary = orjson.loads(second.stdout)
    assert (summary["rendered"], summary["skipped"], summary["failed"]) == (0, len(before), 2), (
        summary, second.stderr[-3000:])

    # Damage two outputs where a check of file stamps alone would miss it:
    # bytes changed in place with size and mtime put back, and another file
    # of the same size renamed over one. A replay renders exactly those two.
    store = Path(settings.image_store)
    in_place, swapped = (store / uri for uri in sorted(u for u in before if u.endswith(".jpg"))[:2])
    stamp = in_place.stat()
    data = bytearray(in_place.read_bytes())
    data[-3] ^= 0xFF
    with open(in_place, "r+b") as f:
        f.write(bytes(data))
    os.utime(in_place, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    (store / "swap.tmp").write_bytes(swapped.read_bytes()[:-3] + b"\0\0\0")
    (store / "swap.tmp").replace(swapped)
    third = regen(worker, "replay", "--json")
    summary = orjson.loads(third.stdout)
    assert (summary["rendered"], summary["skipped"], summary["failed"]) == (2, len(before) - 2, 2), (
        summary, third.stderr[-3000:])
    assert store_hashes(settings.image_store) == before, "both outputs back, byte for byte"

    only_new = regen(worker, "replay", "--variant", "h200.jpg", "--topic", "assets.imported", "--json")
    summary = orjson.loads(only_new.stdout)
    assert (summary["targets"], summary["rendered"]) == (len(imports), 5)

    dry = regen(worker, "replay", "--dry-run", "--json")
    plan = orjson.loads(dry.stdout)
    assert plan["targets"] == len(expected) and plan["by_kind"] == {"thumbnail": len(expected) - 2, "composite": 2}
    # --since reads each source topic from the first record at or after the time.
    for since, seen in (("2000-01-01T00:00Z", len(imports) + 2), ("2999-01-01T00:00Z", 0)):
        plan = orjson.loads(regen(worker, "replay", "--dry-run", "--json", "--since", since).stdout)
        assert plan["seen"] == seen, (since, plan)


def test_repair_finds_exactly_the_damaged_outputs_and_renders_them_again(start_worker, corpus):
    worker = start_worker(REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    photos = sorted((corpus / "photos").glob("Portrait_*.jpg"))[:6]
    imports = [s.event for s in scan(photos, [corpus], "to-repair")]
    run(publish_all(settings, bootstrap, imports))
    done = run(wait_for(settings, bootstrap, lambda c: c.target.id, {e.asset_id for e in imports}, 90))
    before = store_hashes(settings.image_store)
    store = settings.image_store
    deleted, truncated, changed = (done[e.asset_id].uri for e in imports[:3])
    (store / deleted).unlink()
    (store / truncated).write_bytes((store / truncated).read_bytes()[:100])
    data = bytearray((store / changed).read_bytes())
    data[-3] ^= 0xFF
    (store / changed).write_bytes(bytes(data))

    listed = regen(worker, "repair", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    report = orjson.loads(listed.stdout)
    assert report["problems"] == {"missing": 1, "truncated": 1, "changed": 1}
    assert {(i["uri"], i["problem"]) for i in report["items"]} == {
        (deleted, "missing"), (truncated, "truncated"), (changed, "changed")}
    assert orjson.loads(regen(worker, "repair", "--dry-run", "--json", "--batch", "another-batch").stdout)["found"] == 0

    repaired = regen(worker, "repair", "--batch", "to-repair", "--json")
    assert repaired.returncode == 0, repaired.stderr
    report = orjson.loads(repaired.stdout)
    assert (report["found"], report["repaired"], report["failed"]) == (3, 3, 0)
    assert store_hashes(store) == before
    assert orjson.loads(regen(worker, "repair", "--dry-run", "--json").stdout)["found"] == 0


def test_rebuilt_projections_equal_the_live_ones_after_a_realistic_mix(start_worker, corpus, media, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}:{incoming}", REGEN_IDLE_DELAY="0.5",
                          REGEN_RETRY_FIRST_DELAY="0.5", REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    photos = [corpus / "photos" / f"Landscape_{i}.jpg" for i in (1, 3, 6)] + [corpus / "bad" / "broken.png"]
    imports = [s.event for s in scan(photos, [corpus], "mix")]
    # The same asset id later gets other content (revision 2); a source arrives late (a retry).
    reimport = replace(next(scan([corpus / "photos" / "Portrait_2.jpg"], [corpus], "mix")).event,
                       asset_id=imports[0].asset_id)
    late = replace(next(scan([corpus / "photos" / "Portrait_3.jpg"], [corpus], "mix")).event,
                   asset_id="late", uri="late.jpg")
    edits = [edit("n1", r, start=2, end=6 + r) for r in (1, 2, 3)] + [edit("n2", 1, video="v2", start=0, end=4)]
    asset = imports[1].asset_id
    requests = [ImageRequested(Target("thumbnail", asset), "h200.jpg", "new-variant"),
                ImageRequested(Target("thumbnail", "never-imported"), "h400.jpg", "unknown"),
                ImageRequested(Target("thumbnail", asset), "h123.jpg", "bad-variant"),
                ImageRequested(Target("composite", "n1"), "full.png", "composite-now")]
    run(publish_all(settings, bootstrap, imports + [late] + edits + requests))
    run(wait_for_job_status(worker, "thumbnail:late:h400.jpg:r1", "retrying"))
    (incoming / "late.jpg").write_bytes((corpus / "photos" / "Portrait_3.jpg").read_bytes())
    keys = {f"{e.asset_id}/h400.jpg" for e in imports} | {"late/h400.jpg", "n2/full.png", f"{asset}/h200.jpg"}
    run(wait_for(settings, bootstrap, lambda c: f"{c.target.id}/{c.variant}", keys, 90))
    run(publish_all(settings, bootstrap, [reimport, ImageRequested(Target("thumbnail", asset), "h200.jpg", "hit"),
                                          ImageRequested(Target("thumbnail", asset), "h200.jpg", "forced",
                                                         force=True)]))
    run(wait_for(settings, bootstrap, lambda c: c.request_ids[0] if c.request_ids else
                 (f"{c.target.id}/r{c.revision}" if c.target.id == reimport.asset_id else None),
                 {"hit", "forced", f"{reimport.asset_id}/r2"}, 90))
    # n1's last revision is rendered by the idle scheduler (or the request) once idle.
    assert eventually(lambda: worker.get("/annotations/n1")[1].get("rendered_revision") == 3, timeout=30)
    assert eventually(lambda: worker.get(f"/assets/{reimport.asset_id}")[1]["variants"]["h400.jpg"]["status"]
                      == "completed")

    def rebuilt():
        result = regen(worker, "rebuild-projections", "--json", "--output", str(tmp_path / "rebuilt.jsonl"))
        return result.returncode, orjson.loads(result.stdout)

    code, report = rebuilt()
    if code != 0:  # the last folds may still be on their way into the changelogs
        code, report = eventually(lambda: (r := rebuilt())[0] == 0 and r, timeout=15) or rebuilt()
    assert code == 0 and report["equal"], report["differences"]
    assert report["compared"]["assets"] == len(imports) + 1 and report["compared"]["annotations"] == 2
    assert report["compared"]["jobs"] >= 8
    rows = [orjson.loads(line) for line in (tmp_path / "rebuilt.jsonl").read_text().splitlines()]
    assert {r["table"] for r in rows} == {"assets", "jobs", "annotations", "videos"}
