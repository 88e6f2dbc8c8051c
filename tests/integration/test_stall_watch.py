"""A partition a worker reads that stops progressing is told (issue #12):
a WARNING in the log, regen_stalled_partitions on /metrics, its name in
/health; and a worker whose partitions merely end in transaction markers
tells nothing."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from dataclasses import replace

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from regen.cli.importer import scan
from regen.schemas.events import ImageFailed
from regen.streams.codec import encode
from regen.streams.connection import kafka_security
from regen.streams.results import wait_for
from regen.streams.topics import ASSETS_IMPORTED, topic_name
from tests.helpers import eventually, import_event, make_photos, publish, publish_all, run, variant_key

STALL_AFTER_S = 5  # the least REGEN_STALL_AFTER allows; the watch looks every 1.25 s then


def stalled_gauges(port: int) -> dict[str, float]:
    """regen_stalled_partitions per reader, as /metrics has it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^regen_stalled_partitions\{reader="([^"]+)"\} (\S+)$', text, re.MULTILINE)}


def test_a_hung_render_stalls_its_background_partition_and_the_worker_tells(start_worker, corpus):
    # The render hangs and is given 300 s before it is killed: the
    # background lane's batch holds its partition's committed offset.
    worker = start_worker(REGEN_FAULT_HANG_PATTERN="Landscape_3", REGEN_RENDER_TIMEOUT="300",
                          REGEN_STALL_AFTER=str(STALL_AFTER_S), REGEN_PREGENERATE_VARIANTS="h200.jpg",
                          REGEN_RENDER_PROCESSES="1")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    port = settings.web_port
    run(publish(settings, bootstrap, [import_event(corpus / "photos" / "Landscape_3.jpg", corpus,
                                                   asset_id="hung")]))

    def warning() -> str | None:
        return next((line for line in worker.log.read_text(errors="replace").splitlines()
                     if "render.background[" in line and "has not moved for" in line), None)

    line = eventually(warning, timeout=60, interval=0.5)
    assert line, worker.tail(60)
    assert "WARNING" in line and "records after it" in line and "in hand" in line, line
    assert "restart this worker" in line, line
    partition = re.search(r"render\.background\[(\d+)\]", line).group(1)  # type: ignore[union-attr]

    # Only the hung lane's partition stalls: everything Faust's consumer read
    # (the import, its batch-progress shard) was handled and committed.
    gauges = eventually(lambda: (g := stalled_gauges(port)) and g.get("background", 0) > 0 and g, timeout=10)
    assert gauges and gauges["background"] == 1, gauges
    assert gauges["interactive"] == gauges["generation"] == gauges["request-intake"] == gauges["faust"] == 0, gauges
    status, health = worker.get("/health")
    assert status == 200, "a stall alone does not make the worker unhealthy"
    assert f"render.background[{partition}]" in health["stalled_partitions"], health
    assert not any(name.startswith("render.") and name != f"render.background[{partition}]"
                   for name in health["stalled_partitions"]), health
    # Told once: the watch's next ticks say nothing new.
    time.sleep(3)
    warnings = [ln for ln in worker.log.read_text(errors="replace").splitlines()
                if "render.background[" in ln and "has not moved for" in ln]
    assert len(warnings) == 1, warnings


# Also the test that every Faust-read partition's commit moves past what was
# handled: before streams/consumer.py made every ack reach Consumer.ack (and
# marked a record delivered before its hand-over), the first records of
# images.results and batches.progress stayed uncommitted for good, and this
# watch rightly told them.
def test_partitions_ending_in_transaction_markers_are_not_stalled(start_worker, corpus, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, 3)
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_PREGENERATE_VARIANTS="h200.jpg",
                          REGEN_STALL_AFTER=str(STALL_AFTER_S))
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    # No batch: batch progress would bring the race told of in the test above.
    events = [replace(s.event, asset_id=f"tx-{n}") for n, s in enumerate(scan(photos, [media], None))]
    imported = topic_name(settings, ASSETS_IMPORTED)

    async def publish_in_transactions() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"publisher-{uuid.uuid4().hex}",
                                    enable_idempotence=True, **kafka_security(settings))
        await producer.start()
        try:
            for event in events:
                envelope = encode(event, "tests.stalls")
                async with producer.transaction():
                    await producer.send(imported, envelope.value, key=envelope.key, headers=envelope.headers)
        finally:
            await producer.stop()
        await wait_for(settings, bootstrap, variant_key, {f"{e.asset_id}/h200.jpg" for e in events}, timeout=60)

    run(publish_in_transactions())

    async def marker_gaps() -> dict[int, int]:
        """Per partition of the imports topic: end offset minus the group's committed offset."""
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security(settings))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_security(settings))
        await admin.start()
        await consumer.start()
        try:
            tps = [TopicPartition(imported, p) for p in range(settings.partitions)]
            committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=tps)
            ends = await consumer.end_offsets(tps)
            return {tp.partition: ends[tp] - committed[tp].offset for tp in tps
                    if tp in committed and committed[tp].offset >= 0}
        finally:
            await consumer.stop()
            await admin.close()

    # Everything was handled, and the commits stop at each last marker: the
    # offsets a naive "committed < end" would take for waiting work.
    gaps = eventually(lambda: (g := run(marker_gaps())) and all(v <= 1 for v in g.values()) and g, timeout=15)
    assert gaps and any(v == 1 for v in gaps.values()), f"no partition ends in a marker: {gaps}"
    # The watch has looked (it sets the gauge of every reader each time it
    # does); then, watched for longer than REGEN_STALL_AFTER (plus two
    # ticks), nothing is told.
    assert eventually(lambda: "faust" in stalled_gauges(settings.web_port), timeout=15), worker.tail(40)
    deadline = time.monotonic() + STALL_AFTER_S + 3
    samples = 0
    while time.monotonic() < deadline:
        gauges = stalled_gauges(settings.web_port)
        assert gauges.get("faust") == 0 and gauges.get("background") == 0, gauges
        assert sum(gauges.values()) == 0, gauges
        status, health = worker.get("/health")
        assert status == 200 and health["stalled_partitions"] == [], health
        samples += 1
        time.sleep(0.5)
    assert samples > 5
    assert "has not moved for" not in worker.log.read_text(errors="replace"), worker.tail(40)


def _post(worker, path: str, body: dict, token: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.settings.web_port}{path}", method="POST",
                                     data=orjson.dumps(body), headers={"Content-Type": "application/json",
                                                                       "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_a_long_batch_whose_renders_keep_finishing_is_not_stalled(start_worker, tmp_path):
    # Every render hangs until the 2.5 s render timeout kills it (one attempt:
    # each ends as ImageFailed), one render process: a batch of 6 holds its
    # partitions' committed offsets for 15 s or more, three times
    # REGEN_STALL_AFTER, while one of its renders finishes every few seconds.
    media = tmp_path / "media"
    photos = make_photos(media, 6)
    worker = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_PREGENERATE_VARIANTS="h200.jpg",
                          REGEN_FAULT_HANG_PATTERN=".jpg", REGEN_RENDER_TIMEOUT="2.5", REGEN_MAX_ATTEMPTS="1",
                          REGEN_RENDER_PROCESSES="1", REGEN_STALL_AFTER=str(STALL_AFTER_S),
                          REGEN_ADMIN_TOKEN="commander")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    # Held while the jobs queue, so the lane takes all six in one batch.
    assert _post(worker, "/admin/pause", {"lane": "background"}, "commander") == 202
    assert eventually(lambda: worker.get("/health")[1]["background_paused"], timeout=20)
    events = [replace(s.event, asset_id=f"slow-{n}") for n, s in enumerate(scan(photos, [media], None))]
    run(publish_all(settings, bootstrap, events))
    assert eventually(lambda: all(worker.get(f"/assets/{e.asset_id}")[0] == 200 for e in events), timeout=20)
    resumed = time.monotonic()
    assert _post(worker, "/admin/resume", {"lane": "background"}, "commander") == 202

    outcomes = run(wait_for(settings, bootstrap, variant_key, {f"{e.asset_id}/h200.jpg" for e in events},
                            timeout=120))
    took = time.monotonic() - resumed
    assert all(isinstance(o, ImageFailed) and o.reason == "timeout" for o in outcomes.values()), outcomes
    assert took > 3 * STALL_AFTER_S, f"the batch took {took:.1f} s: too short to tell anything"
    assert "has not moved for" not in worker.log.read_text(errors="replace"), worker.tail(60)
    assert stalled_gauges(settings.web_port).get("background") == 0
