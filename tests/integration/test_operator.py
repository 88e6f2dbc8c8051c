"""Operator commands end to end, through a real broker and real workers:
retry of a batch's failures across two workers, pause/resume with a cancel
of a batch queued behind the paused lane, the admin API's token, and a
redrive of dead letters once their cause is fixed."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import orjson

from regen.cli.importer import scan
from regen.schemas.events import GroupDeclared, ImageFailed, ImageGenerated, ImageRequested, Target
from regen.streams.codec import header, now_iso
from regen.streams.publisher import Publisher
from regen.streams.results import end_offsets, follow_completions, read_records
from regen.streams.topics import (
    ASSETS_IMPORTED,
    CONTROL,
    CONTROL_PARTITIONS,
    DEADLETTER,
    GROUP_PROGRESS,
    IMAGES_RESULTS,
    partition_for,
    topic_name,
)
from tests.helpers import eventually, free_port, make_photos, publish, publish_all, run
from tests.webhook_receiver import WebhookReceiver

SECRET = "a-long-random-test-secret"


def regen(worker, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "regen.cli.main", *args], env=worker.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"regen {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def ids_covering(partitions: int, count: int, prefix: str) -> list[str]:
    """``count`` (>= partitions) asset ids, at least one in every partition (so every worker owns some)."""
    by_partition: dict[int, str] = {}
    others: list[str] = []
    i = 0
    while len(by_partition) < partitions or len(by_partition) + len(others) < count:
        candidate = f"{prefix}{i}"
        by_partition.setdefault(partition_for(candidate, partitions), candidate)
        if candidate not in by_partition.values():
            others.append(candidate)
        i += 1
    return [*by_partition.values(), *others][:count]


async def outcomes_after(settings, bootstrap, start: dict[int, int], want: set[str], done, timeout: float = 90):
    """Completions published after ``start``, by "asset/variant", until ``done(seen)``."""
    seen: dict[str, ImageGenerated | ImageFailed] = {}
    async for completion in follow_completions(settings, bootstrap, start_offsets=start, idle_timeout=timeout):
        key = f"{completion.target.id}/{completion.variant}"
        if key in want:
            seen[key] = completion
            if done(seen):
                break
    return seen


def test_retry_failed_batch_turns_every_failure_into_a_success_on_two_workers(start_worker, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, 8)
    first = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_PREGENERATE_VARIANTS="h200.jpg",
                         REGEN_STATE_DIR=str(tmp_path / "state0"))
    second = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_PREGENERATE_VARIANTS="h200.jpg",
                          REGEN_STATE_DIR=str(tmp_path / "state1"), REGEN_WEB_PORT=str(free_port()))
    settings, bootstrap = first.settings, first.env["KAFKA_BOOTSTRAP_SERVERS"]
    ids = ids_covering(settings.partitions, len(photos), "retry-")
    events = [replace(s.event, asset_id=asset_id) for s, asset_id in zip(scan(photos, [media], "B"), ids, strict=True)]
    good = {path: path.read_bytes() for path in photos}
    for path in photos:  # corrupted on disk after the import read them: every render fails for good
        path.write_bytes(b"\xff\xd8 not a jpeg any more " * 40)
    want = {f"{e.asset_id}/h200.jpg" for e in events}
    start = run(end_offsets(settings, bootstrap, topic_name(settings, IMAGES_RESULTS)))
    run(publish_all(settings, bootstrap, events))
    failed = run(outcomes_after(settings, bootstrap, start, want, lambda seen: len(seen) == len(want)))
    assert {type(c) for c in failed.values()} == {ImageFailed}, failed
    assert {c.reason for c in failed.values()} == {"permanent"}

    for path, data in good.items():
        path.write_bytes(data)
    # --dry-run lists what the command would pick, from the worker's SQL read
    # model (which follows the changelogs asynchronously: wait until it holds
    # every failure), and publishes nothing.
    def previewed():
        shown = orjson.loads(regen(first, "retry", "--failed", "--batch", "B", "--dry-run", "--json").stdout)
        return len(shown["jobs"]) == len(want) and shown

    preview = eventually(previewed, timeout=30)
    assert preview, regen(first, "retry", "--failed", "--batch", "B", "--dry-run").stdout
    assert {f"{j['target_id']}/{j['variant']}" for j in preview["jobs"]} == want
    assert {j["status"] for j in preview["jobs"]} == {"failed"} and preview["would_publish"] == "RetryFailed"
    nothing = orjson.loads(regen(first, "retry", "--failed", "--batch", "other", "--dry-run", "--json").stdout)
    assert nothing["jobs"] == []
    start = run(end_offsets(settings, bootstrap, topic_name(settings, IMAGES_RESULTS)))
    published = regen(first, "retry", "--failed", "--batch", "B", "--reason", "sources restored")
    assert "published RetryFailed" in published.stdout and "regen status batch B" in published.stdout
    command_id = published.stdout.split()[2]

    retried = run(outcomes_after(settings, bootstrap, start, want,
                                 lambda seen: all(isinstance(c, ImageGenerated) for c in seen.values())
                                 and len(seen) == len(want)))
    assert {type(c) for c in retried.values()} == {ImageGenerated}, retried
    assert all(f"retry.{command_id}" in c.request_ids for c in retried.values())

    def batch_done():
        status, batch = first.get("/batches/B")
        return status == 200 and batch.get("completed") == len(want) and batch

    batch = eventually(batch_done, timeout=30)
    assert batch and batch["failed"] == 0 and batch["pending"] == 0, first.get("/batches/B")
    # Both workers applied the command to the partitions they own.
    for worker in (first, second):
        assert f"retry {command_id}" in worker.log.read_text(), worker.tail(30)


def import_batch(media: Path, photos: list[Path], batch: str):
    return [replace(s.event, asset_id=f"{batch}-{i}") for i, s in enumerate(scan(photos, [media], batch))]


def post(worker, path: str, body: dict | None, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.settings.web_port}{path}", method="POST",
                                     data=orjson.dumps(body) if body is not None else b"")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_pause_holds_background_work_cancel_empties_a_queued_batch_and_resume_finishes_the_rest(
        start_worker, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, 8)
    worker = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_PREGENERATE_VARIANTS="h200.jpg",
                          REGEN_WEB_TOKEN="reader", REGEN_ADMIN_TOKEN="commander")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]

    # The admin API: no token, the read token, a bad body; then a pause it publishes.
    assert post(worker, "/admin/pause", {"lane": "background"}, None)[0] == 401
    assert post(worker, "/admin/pause", {"lane": "background"}, "reader")[0] == 403
    status, answer = post(worker, "/admin/pause", {"lane": "background", "limit": 3}, "commander")
    assert status == 400 and "limit" in answer["error"]
    status, answer = post(worker, "/admin/pause", {"lane": "background", "reason": "disk swap"}, "commander")
    assert status == 202 and answer["command"]["requested_by"].startswith("http admin"), answer

    def switch():
        code, state = worker.get("/control/background", token="reader")
        assert code == 200, state
        return state if state["paused"] else None

    paused = eventually(switch, timeout=20)
    assert paused and paused["reason"] == "disk swap" and paused["command_id"] == answer["command_id"]
    assert worker.get("/health")[1]["background_paused"] is True
    shown = regen(worker, "status", "background").stdout
    assert "PAUSED" in shown and "disk swap" in shown

    # Batch C first, then batch P: in every partition C's jobs are ahead of P's.
    cancelled_batch, kept_batch = import_batch(media, photos[:4], "C"), import_batch(media, photos[4:], "P")
    start = run(end_offsets(settings, bootstrap, topic_name(settings, IMAGES_RESULTS)))
    run(publish_all(settings, bootstrap, [*cancelled_batch, *kept_batch]))
    eventually(lambda: worker.get("/assets/P-0", token="reader")[0] == 200, timeout=20)

    # An interactive request renders while background work is held.
    run(publish(settings, bootstrap, [ImageRequested(Target("thumbnail", "P-0"), "h400.jpg", "person-1")]))
    everything = {f"{e.asset_id}/{v}" for e in [*cancelled_batch, *kept_batch] for v in ("h200.jpg", "h400.jpg")}
    first = run(outcomes_after(settings, bootstrap, start, everything, lambda seen: "P-0/h400.jpg" in seen))
    assert set(first) == {"P-0/h400.jpg"} and isinstance(first["P-0/h400.jpg"], ImageGenerated), first

    # Cancel batch C while it waits; its jobs finish as cancelled, never rendered, and
    # nothing else of the background lane was rendered meanwhile.
    regen(worker, "cancel", "batch", "C", "--reason", "wrong folder")
    c_keys = {f"{e.asset_id}/h200.jpg" for e in cancelled_batch}
    ended = run(outcomes_after(settings, bootstrap, start, everything, lambda seen: c_keys <= seen.keys()))
    assert set(ended) == c_keys | {"P-0/h400.jpg"}, ended
    assert {(type(ended[k]), ended[k].reason) for k in c_keys} == {(ImageFailed, "cancelled")}, ended
    code, job = worker.get("/jobs/thumbnail:C-0:h200.jpg:r1", token="reader")
    assert code == 200 and job["status"] == "cancelled" and "wrong folder" in job["error"], job
    assert worker.get("/jobs/thumbnail:P-1:h200.jpg:r1", token="reader")[1]["status"] == "pending"

    # Resume (over HTTP): batch P renders, batch C stays cancelled.
    assert post(worker, "/admin/resume", {"lane": "background"}, "commander")[0] == 202
    p_keys = {f"{e.asset_id}/h200.jpg" for e in kept_batch}
    rendered = run(outcomes_after(settings, bootstrap, start, p_keys | c_keys,
                                  lambda seen: p_keys <= seen.keys()))
    assert all(isinstance(rendered[k], ImageGenerated) for k in p_keys), rendered
    # C's lane records were ahead of P's in every partition: they were read and skipped.
    assert all(isinstance(rendered[k], ImageFailed) for k in c_keys), rendered
    for i in range(4):
        assert worker.get(f"/jobs/thumbnail:C-{i}:h200.jpg:r1", token="reader")[1]["status"] == "cancelled"

    def batch_c_done():
        batch = worker.get("/batches/C", token="reader")[1]
        return batch if batch.get("failed") == 4 else None

    batch = eventually(batch_c_done, timeout=20)
    assert batch and (batch["completed"], batch["pending"]) == (0, 0), worker.get("/batches/C", token="reader")
    assert all(f["error"].startswith("cancelled: cancelled by") for f in batch["failures"]), batch
    assert worker.get("/control/background", token="reader")[1]["paused"] is False


def test_admin_commands_are_off_without_an_admin_token_and_poison_commands_are_dead_lettered(start_worker):
    worker = start_worker(REGEN_WEB_TOKEN="reader")
    status, answer = post(worker, "/admin/retry", {}, "reader")
    assert status == 404 and "REGEN_ADMIN_TOKEN" in answer["error"]

    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    forged = orjson.dumps({"command_id": "../x", "requested_at": "now", "requested_by": "x", "up_to": {"a": -1}})

    async def publish_poison() -> None:
        async with Publisher(settings, bootstrap, source="tests") as publisher:
            for spec in (CONTROL, CONTROL_PARTITIONS):
                await publisher.send_raw(spec, b"poison", forged, [("ce_type", b"dev.regen.DeadLettersRedriven.v1")])

    run(publish_poison())

    def dead_lettered():
        letters = run(read_records(settings, bootstrap, DEADLETTER, idle_timeout=1.0))
        return {header(r.headers, "kafka_dlt-original-topic") for r in letters} >= \
            {topic_name(settings, CONTROL), topic_name(settings, CONTROL_PARTITIONS)}

    assert eventually(dead_lettered, timeout=30, interval=1.0), worker.tail(40)
    assert worker.get("/health")[0] == 200


def test_redrive_publishes_dead_letters_again_once_their_cause_is_fixed(start_worker, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, 1)
    with WebhookReceiver(answer=503) as receiver:  # the receiver is down at first
        worker = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_PREGENERATE_VARIANTS="h200.jpg",
                              REGEN_WEBHOOK_HOSTS=receiver.host, REGEN_WEBHOOK_SECRET=SECRET,
                              REGEN_WEBHOOK_RETRIES="0")
        settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
        member = replace(next(scan(photos, [media], None)).event, asset_id="m1", group_id="case")
        run(publish(settings, bootstrap, [GroupDeclared("case", now_iso(), total=1, webhook_url=receiver.url()),
                                          member]))
        # Poison on a source topic: dead-lettered, and still poison when redriven.
        run(publish_raw(settings, bootstrap))

        def letters():
            records = run(read_records(settings, bootstrap, DEADLETTER, idle_timeout=1.0))
            return records if len(records) >= 2 else None

        before = eventually(letters, timeout=60, interval=1.0)
        assert before and len(before) == 2, worker.tail(40)
        assert len(receiver.of("GroupFinished")) == 1  # the one failed delivery

        receiver.answer = 200  # the cause is fixed
        dry = regen(worker, "deadletters", "--redrive", "--type", "dev.regen.GroupFinished.v1", "--dry-run")
        assert "would redrive 1 dead letter(s)" in dry.stdout and "groups.progress" in dry.stdout
        published = regen(worker, "deadletters", "--redrive", "--type", "dev.regen.GroupFinished.v1")
        command_id = published.stdout.split()[2]

        delivered = eventually(lambda: len(receiver.of("GroupFinished")) >= 2 and receiver.of("GroupFinished"),
                               timeout=30)
        assert delivered and len(delivered) == 2 and delivered[1].json["status"] == "completed"
        records = run(read_records(settings, bootstrap, GROUP_PROGRESS, idle_timeout=1.0))
        again = [r for r in records if header(r.headers, "regen_redriven-by") == command_id]
        assert len(again) == 1 and again[0].value == before_value(before, "GroupFinished")

        # The poison, redriven, comes back to the dead letters with its provenance and the
        # command that redrove it.
        everything = regen(worker, "deadletters", "--redrive", "--type", "dev.regen.AssetImported.v1").stdout.split()[2]

        def returned():
            records = run(read_records(settings, bootstrap, DEADLETTER, idle_timeout=1.0))
            return [r for r in records if header(r.headers, "regen_redriven-by") == everything] or None

        back = eventually(returned, timeout=30, interval=1.0)
        assert back and len(back) == 1
        assert header(back[0].headers, "kafka_dlt-original-topic") == topic_name(settings, ASSETS_IMPORTED)
        assert "not valid JSON" in header(back[0].headers, "kafka_dlt-exception-message")


def before_value(letters, kind: str) -> bytes:
    return next(r.value for r in letters if header(r.headers, "ce_type") == f"dev.regen.{kind}.v1")


async def publish_raw(settings, bootstrap) -> None:
    async with Publisher(settings, bootstrap, source="tests") as publisher:
        await publisher.send_raw(ASSETS_IMPORTED, b"broken", b"{not json", [("ce_type", b"dev.regen.AssetImported.v1")])
