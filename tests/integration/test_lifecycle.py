"""Storage lifecycle through a real broker and two real workers: superseded
outputs (a composite of an edited span, thumbnails of an asset re-imported
with new content) are deleted by the GC timer once nobody holds them; a
file two assets share survives one of them letting go; `regen gc` removes
the orphans dropped into the store, except a fresh one; every current
output, as the projections say, stays and decodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image

from regen.cli.kind_tables import read_kind_tables
from regen.imaging.store_walk import walk_store
from regen.kinds import KINDS
from regen.settings import Settings
from tests.helpers import edit, eventually, free_port, import_event, publish, run

GRACE_S = 4.0


def photo(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (320, 240), colour).save(path, quality=90)
    return path


def held_by_projections(settings: Settings, bootstrap: str) -> set[str]:
    rows = run(read_kind_tables(settings, bootstrap))
    held: set[str] = set()
    for kind in KINDS.values():
        for target_id, value in rows.get(kind.table, {}).items():
            state = kind.read(value)
            if state is not None:
                held.update(uri for _, uri in kind.held_outputs(target_id, state, settings))
    return held


def store_files(store: Path) -> set[str]:
    return {f.uri for f in walk_store(store)}


def regen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regen.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def uri_of(worker, path: str) -> str | None:
    code, body = worker.get(path)
    return body if code == 200 else None


def thumbnail_uri(worker, asset_id: str, revision: int) -> str | None:
    asset = uri_of(worker, f"/assets/{asset_id}")
    entry = (asset or {}).get("variants", {}).get("h400.jpg") or {}
    if entry.get("status") == "completed" and entry.get("revision") == revision:
        return entry["output"]["uri"]
    return None


def composite_uri(worker, annotation_id: str, revision: int) -> str | None:
    annotation = uri_of(worker, f"/annotations/{annotation_id}")
    if annotation and annotation.get("rendered_revision") == revision and annotation.get("output"):
        return annotation["output"]["uri"]
    return None


def test_superseded_and_orphaned_files_go_and_nothing_current(start_worker, media, tmp_path):
    env = dict(REGEN_MEDIA_ROOTS=str(media), REGEN_IDLE_DELAY="0.5", REGEN_GC_GRACE=str(GRACE_S),
               REGEN_STORE_SCAN_INTERVAL="1", REGEN_PREGENERATE_VARIANTS="h400.jpg", REGEN_RENDER_PROCESSES="1")
    # Two workers of one group, each with its own state folder, sharing the store.
    first = start_worker(**env, REGEN_STATE_DIR=str(tmp_path / "state0"))
    second = start_worker(**env, REGEN_STATE_DIR=str(tmp_path / "state1"), REGEN_WEB_PORT=str(free_port()))
    settings, bootstrap = first.settings, first.env["KAFKA_BOOTSTRAP_SERVERS"]
    store = Path(settings.image_store)

    # Two assets with the same content (one shared thumbnail), one more asset, one annotation.
    shared = photo(media / "shared.jpg", (200, 40, 40))
    run(publish(settings, bootstrap, [import_event(shared, media, "a1"), import_event(shared, media, "a2"),
                                      import_event(photo(media / "a3.jpg", (40, 200, 40)), media, "a3"),
                                      edit("n1", 1, start=0, end=10)]))
    shared_uri = eventually(lambda: thumbnail_uri(first, "a1", 1), timeout=60)
    assert shared_uri and eventually(lambda: thumbnail_uri(first, "a2", 1) == shared_uri)
    old_a3 = eventually(lambda: thumbnail_uri(first, "a3", 1), timeout=30)
    old_n1 = eventually(lambda: composite_uri(first, "n1", 1), timeout=60)
    assert old_a3 and old_n1

    # Supersede: a1 and a3 re-imported with new content, n1's span edited.
    photo(media / "a1-new.jpg", (10, 10, 220))
    photo(media / "a3.jpg", (230, 230, 20))  # the same path, new content
    run(publish(settings, bootstrap, [import_event(media / "a1-new.jpg", media, "a1"),
                                      import_event(media / "a3.jpg", media, "a3"), edit("n1", 2, start=5, end=30)]))
    new_a3 = eventually(lambda: thumbnail_uri(first, "a3", 2), timeout=60)
    new_n1 = eventually(lambda: composite_uri(first, "n1", 2), timeout=60)
    assert eventually(lambda: thumbnail_uri(first, "a1", 2), timeout=60)
    assert new_a3 != old_a3 and new_n1 != old_n1

    # Orphans dropped into the store long ago (the timer never takes them: nobody ever held them).
    old_orphans = {"thumbnails/ee/" + "e" * 64 + "/h400.jpg", "composites/dd/" + "d" * 64 + "/full.png"}
    fresh_orphan = "overlays/cc/" + "c" * 64 + "/h400.webp"
    long_ago = time.time() - 7200

    def drop(uri: str, mtime: float | None = None) -> None:
        path = store / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not referenced by anything")
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    for uri in old_orphans:
        drop(uri, long_ago)

    # The GC timer: the superseded files go; the shared one (a2 still holds it) stays.
    superseded = {old_a3, old_n1}
    assert eventually(lambda: not any((store / uri).exists() for uri in superseded), timeout=60), \
        f"still there: {[u for u in superseded if (store / u).exists()]}"
    assert (store / shared_uri).is_file(), "a2 still holds the thumbnail a1 let go"
    assert all((store / uri).is_file() for uri in old_orphans), "the timer never takes orphans"
    assert not (store / old_n1).parent.exists(), "the folder the old composite leaves empty goes too"

    # `regen gc --dry-run` lists exactly the old orphans; `regen gc` removes
    # exactly them, and spares one dropped just now (younger than --older-than).
    drop(fresh_orphan)
    cli_env = {**first.env}
    dry = regen(cli_env, "gc", "--dry-run", "--json", "--older-than", "10m")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert {item["uri"] for item in report["items"]} == old_orphans and report["young"] == 1
    assert all((store / uri).is_file() for uri in old_orphans), "a dry run removes nothing"
    done = regen(cli_env, "gc", "--json", "--older-than", "10m")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == 2

    # What is left is exactly what the projections hold, plus the fresh orphan.
    current = held_by_projections(settings, bootstrap)
    assert {shared_uri, new_a3, new_n1} <= current
    assert superseded.isdisjoint(current)
    answers = {uri for uri in current if uri.startswith("generated/answers/")}  # none here: no generations
    assert store_files(store) == (current - answers) | {fresh_orphan}
    for uri in current - answers:
        with Image.open(store / uri) as image:
            image.load()

    # Store size per kind: in /metrics of exactly one of the two workers, and in `regen status store`.
    def store_gauges(worker) -> list[str]:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{worker.settings.web_port}/metrics", timeout=5) as response:
            return [line for line in response.read().decode().splitlines() if line.startswith("regen_store_files{")]

    reported = eventually(lambda: [g for g in (store_gauges(first), store_gauges(second)) if g], timeout=20)
    assert len(reported) == 1, reported
    expected_thumbnails = sum(1 for uri in store_files(store) if uri.startswith("thumbnails/"))
    assert eventually(lambda: f'regen_store_files{{kind="thumbnail"}} {float(expected_thumbnails)}' in
                      (store_gauges(first) + store_gauges(second)), timeout=20)
    status = regen(cli_env, "status", "store", "--json")
    assert status.returncode == 0, status.stderr
    kinds = json.loads(status.stdout)["kinds"]
    assert kinds["thumbnail"]["files"] == expected_thumbnails and kinds["overlay"]["files"] == 1
    waiting = json.loads(status.stdout)
    # Only the orphan dropped last is unreferenced (young or past the grace by now).
    assert waiting["unreferenced"] + waiting["unreferenced_young"] == 1

    # Seeding the references (after an upgrade) tells one per holder and file: a1, a2, a3 and n1.
    seeded = regen(cli_env, "gc", "--seed-references", "--json")
    assert seeded.returncode == 0, seeded.stderr
    assert json.loads(seeded.stdout) == {"references": 4}


def test_a_new_prompt_lets_the_old_answer_and_image_go(start_worker):
    from regen.cli.stand_in_model import ModelServer
    from regen.imaging.generated import ANSWERS_FOLDER, answer_key, answer_uri
    from regen.schemas.events import GenerationRequested, ImageGenerated
    from regen.streams.results import wait_for

    def ask(prompt: str, revision: int) -> GenerationRequested:
        return GenerationRequested(target_id="g1", revision=revision, generator="local", prompt=prompt,
                                   parameters={"width": 320, "height": 240})

    def answer_of(event: GenerationRequested) -> str:
        key = answer_key(event.target_id, event.revision, event.generator, event.prompt, event.parameters)
        return f"{ANSWERS_FOLDER}/{answer_uri(key)}"

    with ModelServer() as server:
        worker = start_worker(REGEN_GENERATORS=json.dumps(server.generator("local")),
                              REGEN_GENERATED_VARIANTS="h200.jpg", REGEN_GC_GRACE=str(GRACE_S))
        settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
        store = Path(settings.image_store)

        def rendered(revision: int) -> ImageGenerated:
            done = run(wait_for(settings, bootstrap, lambda c: f"r{c.revision}" if c.target.id == "g1" else None,
                                {f"r{revision}"}, timeout=60))[f"r{revision}"]
            assert isinstance(done, ImageGenerated), done
            return done

        first, second = ask("a kite", 1), ask("a red kite", 2)
        run(publish(settings, bootstrap, [first]))
        old = rendered(1)
        assert (store / answer_of(first)).is_file() and (store / old.uri).is_file()
        run(publish(settings, bootstrap, [second]))
        new = rendered(2)
        assert eventually(lambda: not (store / answer_of(first)).exists() and not (store / old.uri).exists(),
                          timeout=60), "the old answer and image are still there"
        assert (store / answer_of(second)).is_file() and (store / new.uri).is_file()
        assert held_by_projections(settings, bootstrap) == {answer_of(second), new.uri}
