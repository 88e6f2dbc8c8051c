"""The TypeScript client (clients/typescript) against the real broker and a real
worker: its events land where the Python publisher's land, read back as the same
events, and the worker does with them exactly what it does with Python's.

Needs the package built (`make test` does it: npm ci, npm run build)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import orjson
import pytest

from regen.schemas.events import AssetImported, BoundaryChanged, ImageGenerated, ImageRequested, Target
from regen.settings import Settings
from regen.streams.admin import ensure_topics
from regen.streams.codec import decode, header
from regen.streams.publisher import Publisher
from regen.streams.results import read_records, wait_for
from regen.streams.topics import (
    ASSETS_IMPORTED,
    BOUNDARIES_CHANGED,
    DEADLETTER,
    IMAGES_REQUESTED,
    IMAGES_RESULTS,
    TOPIC_FOR_EVENT,
    partition_for,
    topic_name,
)
from tests.helpers import edit, eventually, import_event, run

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
DRIVER = PACKAGE / "scripts" / "driver.mjs"
SHA = "cd" * 32


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    assert found, "Node is needed for the TypeScript client's parity test: install nodejs (v20 or later)"
    assert (PACKAGE / "dist" / "src" / "index.js").exists(), (
        "the TypeScript client is not built: run `npm ci` in clients/typescript (`make test` does)")
    return found


def typescript(node: str, env: dict[str, str], command: dict) -> dict:
    """Run one command through the built package; its JSON answer."""
    done = subprocess.run([node, str(DRIVER)], input=json.dumps(command), env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, f"the TypeScript driver failed:\n{done.stderr}"
    return json.loads(done.stdout)


def body(event) -> dict:
    return orjson.loads(orjson.dumps(event.to_dict()))


def parity_events(n: int) -> list:
    """Events of the three kinds publishers send, on n different keys each."""
    events: list = []
    for i in range(n):
        events.append(AssetImported(asset_id=f"asset-{i}", uri=f"photos/{i}.jpg", media_type="image", sha256=SHA,
                                    size_bytes=1000 + i, imported_at="2026-11-21T10:00:00.000Z", batch_id="b1"))
        events.append(BoundaryChanged(annotation_id=f"annotation:{i}@v", video_id="v", start_frame=i,
                                      end_frame=i + 5, revision=1, source="clip.mp4", crop=(0, 0, 10 + i, 10)))
        events.append(ImageRequested(target=Target("composite" if i % 2 else "thumbnail", f"target.{i}"),
                                     variant="h400.jpg", request_id=f"r{i}", priority="background", force=True))
    return events


def landed(settings: Settings, bootstrap: str) -> dict[tuple[str, bytes], tuple[int, object, list]]:
    """(topic suffix, key) -> (partition, decoded event, headers) of every record on the source topics."""
    found = {}
    for spec in (ASSETS_IMPORTED, BOUNDARIES_CHANGED, IMAGES_REQUESTED):
        for record in run(read_records(settings, bootstrap, spec, idle_timeout=1.0)):
            event, _ = decode(record.value, record.headers, spec.event_types)
            found[(spec.suffix, record.key)] = (record.partition, event, list(record.headers))
    return found


def test_typescript_events_land_on_the_python_publishers_partitions_as_the_same_events(
        node, regen_env, bootstrap):
    """Two installations with no worker, one per language, sent the same events."""
    events = parity_events(12)
    by_language = {}
    for language in ("typescript", "python"):
        settings = Settings.from_env({**regen_env, "REGEN_TOPIC_PREFIX": f"parity-{language}-{uuid.uuid4().hex[:8]}"})
        run(ensure_topics(settings, bootstrap))
        if language == "typescript":
            env = {**regen_env, "REGEN_TOPIC_PREFIX": settings.topic_prefix}
            answer = typescript(node, env, {"publish": [{"type": type(e).__name__, "event": body(e)} for e in events]})
            assert len(answer["published"]) == len(events)
        else:
            async def publish(settings: Settings = settings) -> None:
                async with Publisher(settings, bootstrap, source="tests/python") as publisher:
                    await publisher.publish_many(events)
            run(publish())
        by_language[language] = landed(settings, bootstrap)

    ts, py = by_language["typescript"], by_language["python"]
    assert set(ts) == set(py) and len(ts) == len(events)
    partitions = {key: partition for key, (partition, _, _) in ts.items()}
    assert partitions == {key: partition for key, (partition, _, _) in py.items()}
    # The mapping is Kafka's default partitioner, and the keys are spread: the test can tell.
    assert partitions == {(topic, key): partition_for(key.decode(), 4) for topic, key in ts}
    assert len(set(partitions.values())) == 4
    # The same events, read back by regen's own decoder (JSON Schema included).
    assert {k: e for k, (_, e, _) in ts.items()} == {k: e for k, (_, e, _) in py.items()}
    for event in events:
        topic = TOPIC_FOR_EVENT[type(event)].suffix
        _, _, headers = ts[(topic, event.key.encode())]
        assert header(headers, "ce_type") == event.ce_type
        assert header(headers, "ce_specversion") == "1.0"
        assert header(headers, "ce_source") == "tests/typescript"
        assert header(headers, "content-type") == "application/json"
        assert header(headers, "ce_id") and header(headers, "ce_time")


def test_the_worker_treats_typescript_events_as_python_events(node, start_worker, corpus, media):
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="1.5",
                          REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap, env = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"], worker.env
    photo = corpus / "photos" / "Landscape_5.jpg"
    ts_asset, py_asset = import_event(photo, corpus, "ts-photo"), import_event(photo, corpus, "py-photo")
    ts_edit, py_edit = edit("ts-annotation", 1, "ts-video", 2, 9), edit("py-annotation", 1, "py-video", 2, 9)

    answer = typescript(node, env, {"publish": [{"type": "AssetImported", "event": body(ts_asset)},
                                                {"type": "BoundaryChanged", "event": body(ts_edit)}]})
    assert [p["key"] for p in answer["published"]] == ["ts-photo", "ts-annotation"]

    async def publish_python() -> None:
        async with Publisher(settings, bootstrap, source="tests/python") as publisher:
            await publisher.publish_many([py_asset, py_edit])
    run(publish_python())

    # The annotation is dirty and counted pending on its video until the idle delay passes.
    for language in ("ts", "py"):
        video = eventually(lambda lang=language: (v := worker.get(f"/videos/{lang}-video")[1]).get("pending") == 1
                           and v, timeout=10)
        assert video and video["dirty_annotations"] == [f"{language}-annotation"], \
            worker.get(f"/videos/{language}-video")

    # The asset's thumbnail and the annotation's composite, for both languages.
    wanted = {"ts-photo", "py-photo", "ts-annotation", "py-annotation"}
    done = run(wait_for(settings, bootstrap, lambda c: c.target.id, wanted, timeout=90))
    assert all(isinstance(c, ImageGenerated) for c in done.values()), done
    assert done["ts-photo"].sha256 == done["py-photo"].sha256
    assert done["ts-annotation"].sha256 == done["py-annotation"].sha256
    assert done["ts-annotation"].frames_used == tuple(range(2, 10))

    def settled_asset(language: str):
        asset = worker.get(f"/assets/{language}-photo")[1]
        return asset.get("variants", {}).get("h400.jpg", {}).get("status") == "completed" and asset

    assert eventually(lambda: settled_asset("ts") and settled_asset("py")), worker.get("/assets/ts-photo")
    ts_projection, py_projection = worker.get("/assets/ts-photo")[1], worker.get("/assets/py-photo")[1]
    assert strip_times(ts_projection) == strip_times(json.loads(json.dumps(py_projection).replace("py-", "ts-")))
    for language in ("ts", "py"):
        annotation = eventually(lambda lang=language: (a := worker.get(f"/annotations/{lang}-annotation")[1])
                                .get("dirty") is False and a)
        assert annotation and (annotation["wanted_revision"], annotation["rendered_revision"]) == (1, 1), annotation
        assert eventually(lambda lang=language: worker.get(f"/videos/{lang}-video")[1]["pending"] == 0)
    assert strip_times(worker.get("/annotations/ts-annotation")[1]) == strip_times(
        json.loads(json.dumps(worker.get("/annotations/py-annotation")[1]).replace("py-", "ts-")))

    # A request resolves with the completion naming its request id; a failure rejects.
    answer = typescript(node, env, {"requests": [
        {"kind": "thumbnail", "id": "ts-photo", "variant": "h200.jpg", "timeoutMs": 60000},
        {"kind": "thumbnail", "id": "ts-photo", "variant": "h400.jpg", "timeoutMs": 60000},
        {"kind": "thumbnail", "id": "no-such-photo", "variant": "h400.jpg", "timeoutMs": 60000},
    ]})
    rendered, cached, unknown = answer["requests"]
    assert rendered["ok"] and cached["ok"], json.dumps(answer)
    assert rendered["completion"]["variant"] == "h200.jpg" and rendered["completion"]["cache_hit"] is False
    assert cached["completion"]["cache_hit"] is True
    for reply in (rendered, cached):
        assert reply["completion"]["target"] == {"kind": "thumbnail", "id": "ts-photo"}
        assert len(reply["completion"]["request_ids"]) == 1
    assert rendered["completion"]["request_ids"] != cached["completion"]["request_ids"]
    assert not unknown["ok"] and unknown["error"] == "ImageRequestFailed", unknown
    assert unknown["failure"]["target"]["id"] == "no-such-photo" and unknown["failure"]["reason"] == "permanent"
    # The answers are the ones on the results topic, under the request ids the TypeScript client made.
    results = [decode(r.value, r.headers, IMAGES_RESULTS.event_types)[0]
               for r in run(read_records(settings, bootstrap, IMAGES_RESULTS, idle_timeout=1.0))]
    for reply in (rendered, cached):
        (match,) = [c for c in results if tuple(reply["completion"]["request_ids"]) == c.request_ids]
        assert dataclasses.asdict(match)["sha256"] == reply["completion"]["sha256"]


def strip_times(projection: dict) -> dict:
    """A projection without what differs between two runs of the same work (times, durations, job ids)."""
    if isinstance(projection, dict):
        return {k: strip_times(v) for k, v in projection.items()
                if not (k.endswith("_at") or k.endswith("_ms") or k.endswith("_s") or k in ("offset", "partition"))}
    if isinstance(projection, list):
        return [strip_times(v) for v in projection]
    return projection


def test_a_malformed_event_from_typescript_is_dead_lettered(node, start_worker, corpus):
    worker = start_worker()
    settings, bootstrap, env = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"], worker.env
    bad_span = body(edit("bad-span", 1, start=9, end=3))
    raw = [
        {"topic": BOUNDARIES_CHANGED.suffix, "key": "bad-span", "value": json.dumps(bad_span),
         "headers": {"ce_type": BoundaryChanged.ce_type, "ce_id": "ts-bad-1"}},
        {"topic": ASSETS_IMPORTED.suffix, "key": "not-json", "value": "{not json",
         "headers": {"ce_type": AssetImported.ce_type}},
    ]
    # The client itself refuses to send the same event unchecked.
    refused = subprocess.run([node, "--input-type=module", "-e",
                              "import { encode } from './dist/src/index.js';"
                              f"try {{ encode('BoundaryChanged', {json.dumps(bad_span)}, 't') }}"
                              "catch (e) { console.log(e.name + ': ' + e.message) }"],
                             cwd=PACKAGE, capture_output=True, text=True, env={**os.environ})
    assert "InvalidEvent: BoundaryChanged: end_frame 3 is before start_frame 9" in refused.stdout, refused

    typescript(node, env, {"raw": raw})
    letters = eventually(lambda: (found := {r.key: r for r in run(read_records(settings, bootstrap, DEADLETTER,
                                                                               idle_timeout=1.0))})
                         and {b"bad-span", b"not-json"} <= set(found) and found, timeout=60)
    assert letters, f"not dead-lettered:\n{worker.tail(60)}"
    span = letters[b"bad-span"]
    assert header(span.headers, "kafka_dlt-original-topic") == topic_name(settings, BOUNDARIES_CHANGED)
    assert int(header(span.headers, "kafka_dlt-original-partition")) == partition_for("bad-span", settings.partitions)
    assert "end_frame 3 is before start_frame 9" in header(span.headers, "kafka_dlt-exception-message")
    assert header(span.headers, "ce_id") == "ts-bad-1"
    assert orjson.loads(span.value) == bad_span
    assert "not valid JSON" in header(letters[b"not-json"].headers, "kafka_dlt-exception-message")
    assert worker.get("/health")[1]["status"] == "ok"
    status, _ = worker.get("/annotations/bad-span")
    assert status == 404, "a refused event changes no table"
