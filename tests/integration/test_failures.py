"""Failures lose nothing: broken files end in ImageFailed, a killed worker loses no job."""

from __future__ import annotations

import signal
import time

import pytest
from PIL import Image

from regen.cli.importer import scan
from regen.schemas.events import ImageFailed, ImageGenerated
from regen.settings import Settings
from regen.streams import local_broker
from regen.streams.results import follow_completions, wait_for
from tests.helpers import (
    BAD_OUTCOMES,
    WorkerProcess,
    eventually,
    make_photos,
    publish_all,
    run,
    variant_key,
    wait_for_job_status,
)


def test_every_bad_corpus_file_ends_in_its_documented_outcome(start_worker, corpus):
    worker = start_worker(REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    files = [corpus / "bad" / name for name in sorted(BAD_OUTCOMES)]
    events = {scanned.path.name: scanned.event for scanned in scan(files, [corpus], "bad")}
    run(publish_all(settings, bootstrap, list(events.values())))
    seen = run(wait_for(settings, bootstrap, variant_key, {f"{e.asset_id}/h400.jpg" for e in events.values()}, 90))
    for name, expected in BAD_OUTCOMES.items():
        outcome = seen[f"{events[name].asset_id}/h400.jpg"]
        if isinstance(expected, type):
            assert isinstance(outcome, ImageFailed), name
            assert (outcome.reason, outcome.attempts) == ("permanent", 1), name
            assert outcome.error_code == expected.code, (name, outcome.error)
        else:
            assert isinstance(outcome, ImageGenerated), (name, getattr(outcome, "error", ""))


@pytest.mark.slow  # about 60 s: 300 photos, three SIGKILLs
def test_a_worker_killed_three_times_loses_no_job(start_worker, corpus, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, 300)
    # The sweeper's safety net stays out of reach (stuck_after 10 min): what
    # is proved here is that redelivery alone loses nothing. Each restarted
    # worker joins once the killed one's session has expired: 6 s, not 10.
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_RENDER_BATCH_SIZE="8",
                          REGEN_STUCK_AFTER="600", REGEN_SESSION_TIMEOUT="6")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    events = [s.event for s in scan(photos, [media], "bounce")]
    run(publish_all(settings, bootstrap, events))
    expected = {f"{e.asset_id}/{v}" for e in events for v in settings.pregenerate_variants}

    async def completions_so_far(at_least: int) -> int:
        seen = set()
        async for c in follow_completions(settings, bootstrap, idle_timeout=30):
            seen.add(variant_key(c))
            if len(seen) >= at_least:
                break
        return len(seen)

    kill_points = [len(expected) // 8, len(expected) * 3 // 8, len(expected) * 5 // 8]
    for point in kill_points:
        run(completions_so_far(point))
        worker.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        worker.start()
    try:
        seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=120))
    except TimeoutError as e:
        # No second restart: a partition that stops moving is a stall, and a
        # stall is a failure (the job states say which lane records are stuck).
        raise AssertionError(f"{e}: stalled or lost\n"
                             f"{run(lane_diagnostics(settings, bootstrap, job_states(worker, expected)))}"
                             f"\nlog tail:\n{worker.tail(40)}") from e
    recovery_s = time.monotonic() - killed_at
    print(f"bounce: {len(kill_points)} kills survived; last kill to all complete {recovery_s:.1f} s")

    assert all(isinstance(c, ImageGenerated) for c in seen.values())
    files = [p for p in settings.image_store.rglob("*") if p.is_file()]
    assert len(files) == len(expected), "exactly one file per asset and variant"
    assert not [p for p in files if p.name.endswith(".tmp")], "no partial files left behind"
    for path in files:
        with Image.open(path) as im:
            im.load()

    def unfinished() -> list[str]:
        left = []
        for e in events:
            status, asset = worker.get(f"/assets/{e.asset_id}")
            states = {v: asset.get("variants", {}).get(v, {}).get("status") for v in settings.pregenerate_variants}
            left += [f"{e.asset_id}/{v}:{s}" for v, s in states.items() if s != "completed"]
        return left

    deadline = time.monotonic() + 30
    while (left := unfinished()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"{len(left)} variants not completed in the projection, e.g. {left[:5]}"
    for e in events[:: 10]:
        for variant in settings.pregenerate_variants:
            status, job = worker.get(f"/jobs/thumbnail:{e.asset_id}:{variant}:r1")
            assert status == 200 and job["status"] == "completed", job


def test_a_worker_stopped_while_rendering_exits_cleanly_and_loses_nothing(start_worker, corpus, tmp_path):
    """SIGTERM mid-batch: the render lanes finish and commit their batch while
    the producer and tables still work, then the worker exits with 0."""
    media = tmp_path / "media"
    photos = make_photos(media, 80)
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    events = [s.event for s in scan(photos, [media], "stopped")]
    run(publish_all(settings, bootstrap, events))
    expected = {f"{e.asset_id}/h400.jpg" for e in events}
    run(wait_for(settings, bootstrap, variant_key, set(sorted(expected)[:1]), timeout=60))
    worker.stop(signal.SIGTERM)
    assert worker.proc is not None and worker.proc.returncode == 0, worker.tail(40)
    assert "Crashed" not in worker.log.read_text(errors="replace"), worker.tail(40)
    worker.start()
    seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=90))
    assert all(isinstance(c, ImageGenerated) for c in seen.values())


def test_a_hung_render_is_killed_and_the_job_next_to_it_completes(start_worker, corpus):
    worker = start_worker(REGEN_FAULT_HANG_PATTERN="Landscape_2", REGEN_RENDER_TIMEOUT="2",
                          REGEN_MAX_ATTEMPTS="2", REGEN_RETRY_FIRST_DELAY="0.2",
                          REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    hung, fine = (next(scan([corpus / "photos" / n], [corpus], "t")).event
                  for n in ("Landscape_2.jpg", "Landscape_3.jpg"))
    run(publish_all(settings, bootstrap, [hung, fine]))
    seen = run(wait_for(settings, bootstrap, lambda c: c.target.id, {hung.asset_id, fine.asset_id}, 60))
    assert isinstance(seen[fine.asset_id], ImageGenerated)
    failure = seen[hung.asset_id]
    assert isinstance(failure, ImageFailed)
    assert (failure.reason, failure.error_code, failure.attempts) == ("timeout", "timeout", 2)
    status, health = worker.get("/health")
    assert health["render_processes_replaced"] == 2, health
    assert health["render_processes"] == settings.render_processes, "every killed process was replaced"


def test_a_source_that_appears_late_succeeds_on_a_retry(start_worker, corpus, tmp_path):
    media = tmp_path / "incoming"
    media.mkdir()
    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_RETRY_FIRST_DELAY="1",
                          REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    original = corpus / "photos" / "Portrait_4.jpg"
    staged = next(scan([original], [corpus], "late")).event
    from dataclasses import replace

    event = replace(staged, uri="upload.jpg", asset_id="late-upload")
    run(publish_all(settings, bootstrap, [event]))
    # The upload lands after the first attempt has failed.
    run(wait_for_job_status(worker, "thumbnail:late-upload:h400.jpg:r1", "retrying"))
    (media / "upload.jpg").write_bytes(original.read_bytes())
    done = run(wait_for(settings, bootstrap, lambda c: c.target.id, {"late-upload"}, 60))["late-upload"]
    assert isinstance(done, ImageGenerated) and done.attempts == 2


def job_states(worker, expected: set[str]) -> dict[str, list[str]]:
    """Status -> the asset/variant keys whose job is in it, from the worker's projection."""
    states: dict[str, list[str]] = {}
    for item in sorted(expected):
        asset_id, variant = item.split("/")
        status, job = worker.get(f"/jobs/thumbnail:{asset_id}:{variant}:r1")
        states.setdefault(job.get("status", f"http {status}"), []).append(item)
    return states


async def lane_diagnostics(settings, bootstrap, states) -> str:
    """Where the unfinished jobs are: in the lane topic? before or after the
    group's committed offsets?"""
    from aiokafka.admin import AIOKafkaAdminClient

    from regen.streams.codec import decode as decode_message
    from regen.streams.results import read_records
    from regen.streams.topics import RENDER_BACKGROUND, topic_name

    missing = {"thumbnail:" + item.replace("/", ":") + ":r1" for item in states.get("pending", [])}
    records = await read_records(settings, bootstrap, RENDER_BACKGROUND, idle_timeout=1.0)
    found = {}
    for r in records:
        job, _ = decode_message(r.value, r.headers, RENDER_BACKGROUND.event_types)
        if job.job_id in missing:
            found.setdefault(job.job_id, []).append((r.partition, r.offset))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id)
        lane_offsets = await admin.list_consumer_group_offsets(f"{settings.app_id}.lanes")
    finally:
        await admin.close()
    lane = topic_name(settings, RENDER_BACKGROUND)
    committed = {tp.partition: meta.offset for tp, meta in lane_offsets.items() if tp.topic == lane}
    ends = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, -1), r.offset)
    # Imports that never became jobs: where are they in the assets topic?
    from regen.streams.topics import ASSETS_IMPORTED

    no_job = {item.split("/")[0] for item in states.get("http 404", [])}
    imports = await read_records(settings, bootstrap, ASSETS_IMPORTED, idle_timeout=1.0)
    import_positions = [(r.partition, r.offset) for r in imports if r.key.decode() in no_job]
    assets_topic = topic_name(settings, ASSETS_IMPORTED)
    assets_committed = {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == assets_topic}
    return (f"missing jobs in lane: {len(found)} of {len(missing)}; sample {list(found.items())[:4]}; "
            f"committed {committed}; last offsets {ends}; imports without a job at {import_positions}, "
            f"assets topic committed {assets_committed}")


@pytest.mark.slow  # about 25 s: a broker of its own, killed and restarted
def test_a_broker_restart_during_processing_loses_nothing(regen_env, tmp_path, corpus):
    """Its own broker (the session's is shared), SIGKILLed and restarted on the
    same ports and data while the worker renders."""
    broker_state = tmp_path / "own-broker"
    bootstrap = local_broker.start(broker_state, progress=lambda m: None).bootstrap
    try:
        media = tmp_path / "media"
        photos = make_photos(media, 150)
        env = {**regen_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REGEN_MEDIA_ROOTS": f"{corpus}:{media}",
               "REGEN_PREGENERATE_VARIANTS": "h400.jpg"}
        worker = WorkerProcess(env=env, settings=Settings.from_env(env), log=tmp_path / "worker.log").start()
        try:
            settings = worker.settings
            events = [s.event for s in scan(photos, [media], "broker-restart")]
            run(publish_all(settings, bootstrap, events))
            expected = {f"{e.asset_id}/h400.jpg" for e in events}
            run(wait_for(settings, bootstrap, variant_key, set(list(expected)[:1]), 60))  # it is rendering
            local_broker.restart(broker_state, progress=lambda m: None, kill=True)
            try:
                seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=180))
            except TimeoutError as e:
                raise AssertionError(f"{e}\nworker log:\n{worker.tail(60)}") from e
            assert all(isinstance(c, ImageGenerated) for c in seen.values())
            assert worker.proc.poll() is None, "the worker survived the broker's restart"
            files = [p for p in settings.image_store.rglob("*") if p.is_file()]
            assert len(files) == len(expected)
            for e in events[::15]:
                # eventually() calls the probe before the loop moves on.
                assert eventually(lambda: worker.get(f"/jobs/thumbnail:{e.asset_id}:h400.jpg:r1")[1]  # noqa: B023
                                  .get("status") == "completed"), e.asset_id
        finally:
            worker.stop()
    finally:
        local_broker.stop(broker_state)
