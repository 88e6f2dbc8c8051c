"""Batch progress through a real broker and worker: `regen import --follow`,
`regen status batch`, /batches/{id}."""

from __future__ import annotations

import shutil
import subprocess
import sys

import orjson

from tests.helpers import eventually


def test_an_import_batch_reports_its_progress_failures_and_end(start_worker, corpus, tmp_path):
    folder = tmp_path / "trip"
    folder.mkdir()
    for photo in sorted((corpus / "photos").glob("Landscape_*.jpg"))[:6]:
        shutil.copy(photo, folder / photo.name)
    shutil.copy(corpus / "bad" / "truncated_jpeg.jpg", folder / "truncated.jpg")
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{tmp_path}")
    variants = worker.settings.pregenerate_variants

    imported = subprocess.run([sys.executable, "-m", "regen.cli.main", "import", str(folder), "--batch", "trip",
                               "--follow", "--json"], env=worker.env, capture_output=True, text=True, timeout=180)
    assert imported.returncode == 0, imported.stderr
    followed = orjson.loads(imported.stdout.splitlines()[-1])
    assert (followed["completed"], followed["failed"], followed["unfinished"]) == (6 * len(variants), len(variants), 0)
    assert all("truncated" in f or "permanent" in f for f in followed["failures"])

    def finished():
        status, batch = worker.get("/batches/trip")
        return status == 200 and batch["done"] and batch

    batch = eventually(finished, timeout=20)
    assert batch, worker.get("/batches/trip")
    assert (batch["total"], batch["completed"], batch["failed"], batch["pending"]) == (
        7 * len(variants), 6 * len(variants), len(variants), 0)
    assert batch["percent"] == 100.0 and batch["eta_s"] == 0.0
    assert {f["variant"] for f in batch["failures"]} == set(variants)
    assert all("cannot decode" in f["error"] for f in batch["failures"])

    shown = subprocess.run([sys.executable, "-m", "regen.cli.main", "status", "batch", "trip"], env=worker.env,
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert f"{7 * len(variants)}/{7 * len(variants)} (100.0 %)" in shown.stdout and "failed" in shown.stdout
    assert worker.get("/batches/no-such-batch")[0] == 404
