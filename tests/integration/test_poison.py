"""Poison on every topic regen consumes: each record ends as a dead letter with
its provenance, and the same worker process goes on to render a normal import."""

from __future__ import annotations

import hashlib
import time

import orjson

from regen.agents.deadletter_fit import CUT_HEADER
from regen.schemas.events import ImageGenerated, Target
from regen.streams.codec import header
from regen.streams.publisher import Publisher
from regen.streams.results import read_records, wait_for
from regen.streams.topics import ALL_TOPICS, ASSETS_IMPORTED, DEADLETTER, IMAGES_RESULTS, topic_name
from tests.helpers import import_event, run

CONSUMED = [spec for spec in ALL_TOPICS if spec.consumed]  # every topic but the dead letters and alerts
NOT_OBJECTS = [b"[]", b"null", b"7", b'"x"']
SHA = "ab" * 32
# An object with no required field, near the broker's limit: its dead letter
# (value plus headers) would exceed the worker's maximum message size.
BIG = b'{"pad":"' + b"x" * 1_040_000 + b'"}'


def forged_completion(**changes) -> bytes:
    event = ImageGenerated(target=Target("thumbnail", "forged"), variant="h400.jpg", revision=1,
                           job_id="thumbnail:forged:h400.jpg:r1", uri="fo/forged.h400.jpg", sha256=SHA, width=10,
                           height=10, bytes=100, render_ms=1.0, attempts=1, cache_hit=False,
                           generated_at="2026-11-21T10:00:00Z")
    return orjson.dumps({**event.to_dict(), **changes})


def poison_records() -> list[tuple[object, bytes, bytes, list]]:
    """(topic spec, key, value, headers) for every consumed topic."""
    records = []
    for spec in CONSUMED:
        for i, body in enumerate(NOT_OBJECTS):
            records.append((spec, f"{spec.suffix}/not-object-{i}".encode(), body, []))
        ce_type = [("ce_type", spec.event_types[-1].ce_type.encode())]
        records.append((spec, f"{spec.suffix}/wrong-types".encode(),
                        orjson.dumps({"revision": "1", "target": [], "batch_id": 7, "at": True}), ce_type))
    records.append((ASSETS_IMPORTED, b"big", BIG, [("ce_id", b"big-1")]))
    completion = [("ce_type", ImageGenerated.ce_type.encode())]
    records.append((IMAGES_RESULTS, b"forged-time", forged_completion(generated_at=123), completion))
    records.append((IMAGES_RESULTS, b"forged-uri", forged_completion(uri="/dev/zero"), completion))
    return records


def test_poison_on_every_topic_is_dead_lettered_and_the_worker_carries_on(start_worker, corpus):
    # The sweeper runs every second over the tables (stuck_after 2 s).
    worker = start_worker(REGEN_STUCK_AFTER="2", REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    process = worker.proc
    uptime = worker.get("/health")[1]["uptime_s"]
    records = poison_records()

    async def publish() -> None:
        async with Publisher(settings, bootstrap, source="tests") as publisher:
            for spec, key, value, headers in records:
                await publisher.send_raw(spec, key, value, headers)

    run(publish())
    expected = {key: spec for spec, key, _, _ in records}
    deadline = time.monotonic() + 90
    while True:
        letters = {r.key: r for r in run(read_records(settings, bootstrap, DEADLETTER, idle_timeout=1.0))}
        if set(expected) <= set(letters) or time.monotonic() > deadline:
            break
        time.sleep(1)
    missing = sorted(k.decode() for k in set(expected) - set(letters))
    assert not missing, f"not dead-lettered: {missing}\n{worker.tail(60)}"

    for key, spec in expected.items():
        letter = letters[key]
        assert header(letter.headers, "kafka_dlt-original-topic") == topic_name(settings, spec), key
        assert header(letter.headers, "kafka_dlt-original-partition") is not None, key
        assert int(header(letter.headers, "kafka_dlt-original-offset")) >= 0, key
        assert header(letter.headers, "kafka_dlt-exception-message"), key
    assert "generated_at" in header(letters[b"forged-time"].headers, "kafka_dlt-exception-message")
    assert "uri" in header(letters[b"forged-uri"].headers, "kafka_dlt-exception-message")
    assert "expected a JSON object" in header(letters[b"images.results/not-object-0"].headers,
                                              "kafka_dlt-exception-message")

    big = letters[b"big"]
    assert header(big.headers, CUT_HEADER) == "value"
    assert header(big.headers, "ce_id") == "big-1", "original headers are kept when they fit"
    summary = orjson.loads(big.value)
    assert summary["original_size"] == len(BIG)
    assert summary["sha256"] == hashlib.sha256(BIG).hexdigest()

    time.sleep(3)  # a few sweeps over the tables
    status, health = worker.get("/health")
    assert worker.proc is process and process.poll() is None, "the same worker process, still running"
    assert status == 200 and health["status"] == "ok" and health["uptime_s"] > uptime, health
    status, job = worker.get("/jobs/thumbnail:forged:h400.jpg:r1")
    assert status == 404, f"a refused completion is not folded: {job}"

    photo = import_event(corpus / "photos" / "Landscape_5.jpg", corpus)

    async def publish_photo() -> None:
        async with Publisher(settings, bootstrap, source="tests") as publisher:
            await publisher.publish(photo)

    run(publish_photo())
    done = run(wait_for(settings, bootstrap, lambda c: c.target.id, {photo.asset_id}, 60))[photo.asset_id]
    assert isinstance(done, ImageGenerated)
    assert worker.proc is process and process.poll() is None
    log = worker.log.read_text(errors="replace")
    assert "timer sweeper failed" not in log and "Crashed reason" not in log, worker.tail(80)
