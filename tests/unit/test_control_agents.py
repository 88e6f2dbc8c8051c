"""The control agents' decisions against in-memory tables: the fan-out
sends one copy per partition, retry and cancel touch only their partition's
rows and change nothing more when a copy arrives twice, and a held lane
fetches nothing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from regen.agents import control as agents_control
from regen.agents import lanes
from regen.agents.context import WorkerContext
from regen.projections.control import retry_marker
from regen.projections.state import AssetState, JobState
from regen.schemas.events import (
    BackgroundPaused,
    CancelRequested,
    ImageFailed,
    ImageRequested,
    RetryFailed,
)
from regen.settings import Settings
from regen.streams.codec import encode
from regen.streams.topics import CONTROL_PARTITIONS, IMAGES_REQUESTED, IMAGES_RESULTS, RENDER_BACKGROUND, partition_for

AT = "2026-11-22T10:00:00.000Z"
PARTITIONS = 4


class Tables:
    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.assets: dict[str, dict] = {}

    def of(self, name: str) -> dict:
        return getattr(self, name)


class FakeCtx:
    def __init__(self) -> None:
        self.settings = Settings(partitions=PARTITIONS)
        self.tables = Tables()
        self.emitted: list[tuple[str, object]] = []
        self.sent: list[tuple[str, int, bytes | None]] = []
        ctx = self

        class Producer:
            async def send_and_wait(self, topic, key, value, *, partition, timestamp, headers):
                ctx.sent.append((topic, partition, value))

        self.app = SimpleNamespace(producer=Producer())

    # The real one: it sends through the fake producer above.
    send_durably = WorkerContext.send_durably

    async def emit(self, spec, event) -> None:
        # What was in the table when the event was sent: marks must come after sends.
        self.emitted.append((spec.suffix, event, {k: dict(v) for k, v in self.tables.jobs.items()}))


def ids_in(partition: int, count: int) -> list[str]:
    found, i = [], 0
    while len(found) < count:
        if partition_for(f"a{i}", PARTITIONS) == partition:
            found.append(f"a{i}")
        i += 1
    return found


def add_asset(ctx: FakeCtx, asset_id: str, batch: str, status: str = "failed") -> str:
    ctx.tables.assets[asset_id] = AssetState(asset_id, f"{asset_id}.jpg", "image", "ab" * 32, 1, AT,
                                             batch_id=batch).to_dict()
    job_id = f"thumbnail:{asset_id}:h400.jpg:r1"
    ctx.tables.jobs[job_id] = JobState(job_id, "thumbnail", asset_id, "h400.jpg", 1, "background", status, AT, AT,
                                       attempts=1, finished_at=AT if status == "failed" else None).to_dict()
    return job_id


def run(coro):
    return asyncio.run(coro)


def test_a_command_is_copied_to_every_partition_unchanged():
    ctx = FakeCtx()
    command = RetryFailed("c1", AT, "ops", batch_id="B")
    envelope = encode(command, "t")
    message = SimpleNamespace(key=envelope.key, value=envelope.value, headers=envelope.headers)
    run(agents_control._fan_out(ctx, message, command))
    assert sorted(p for _, p, _ in ctx.sent) == list(range(PARTITIONS))
    assert {(topic, value) for topic, _, value in ctx.sent} == {(f"regen.{CONTROL_PARTITIONS.suffix}", envelope.value)}


def test_pause_and_resume_are_not_copied():
    ctx = FakeCtx()
    run(agents_control._fan_out(ctx, SimpleNamespace(), BackgroundPaused("p1", AT, "ops", "background")))
    assert ctx.sent == []


def test_retry_requests_its_partitions_failed_jobs_once_and_marks_them_after_sending():
    ctx = FakeCtx()
    mine = [add_asset(ctx, a, "B") for a in ids_in(1, 3)]
    other_partition = add_asset(ctx, ids_in(2, 1)[0], "B")
    other_batch = add_asset(ctx, ids_in(1, 4)[3], "other")
    running = add_asset(ctx, ids_in(1, 5)[4], "B", status="running")
    command = RetryFailed("c1", AT, "ops", batch_id="B")

    run(agents_control.apply_command(ctx, command, 1, "unused"))
    requests = [(topic, event) for topic, event, _ in ctx.emitted]
    assert {topic for topic, _ in requests} == {IMAGES_REQUESTED.suffix}
    assert sorted(f"thumbnail:{e.target.id}:h400.jpg:r1" for _, e in requests) == sorted(mine)
    assert all(isinstance(e, ImageRequested) and e.force and e.priority == "background"
               and e.request_id == retry_marker("c1") for _, e in requests)
    # Marked only after the send: the table as it was at each send has no marker yet.
    assert all(retry_marker("c1") not in row.get("request_ids", ()) for _, _, table in ctx.emitted
               for row in table.values())
    assert all(retry_marker("c1") in ctx.tables.jobs[j]["request_ids"] for j in mine)
    for untouched in (other_partition, other_batch, running):
        assert retry_marker("c1") not in ctx.tables.jobs[untouched]["request_ids"]

    ctx.emitted.clear()
    run(agents_control.apply_command(ctx, command, 1, "unused"))  # the same copy again
    assert ctx.emitted == []


def test_cancel_marks_before_sending_and_a_second_copy_only_sends_again():
    ctx = FakeCtx()
    pending = [add_asset(ctx, a, "C", status="pending") for a in ids_in(0, 2)]
    running = add_asset(ctx, ids_in(0, 3)[2], "C", status="running")
    command = CancelRequested("k1", AT, "ops", "batch", "C", reason="wrong folder")

    run(agents_control.apply_command(ctx, command, 0, "unused"))
    sent = [(topic, event, table) for topic, event, table in ctx.emitted]
    assert sorted(e.job_id for _, e, _ in sent) == sorted(pending)
    assert all(topic == IMAGES_RESULTS.suffix and isinstance(e, ImageFailed) and e.reason == "cancelled"
               for topic, e, _ in sent)
    # Each job was already cancelled in the table when its failure was sent: no lane can start it.
    assert all(table[e.job_id]["status"] == "cancelled" for _, e, table in sent)
    assert ctx.tables.jobs[running]["status"] == "running"

    ctx.emitted.clear()
    run(agents_control.apply_command(ctx, command, 0, "unused"))
    assert sorted(e.job_id for _, e, _ in ctx.emitted) == sorted(pending)  # told again, nothing else changes
    assert all(ctx.tables.jobs[j]["status"] == "cancelled" for j in pending)


def test_cancel_of_one_job_applies_in_its_partition_only():
    ctx = FakeCtx()
    asset = ids_in(3, 1)[0]
    job_id = add_asset(ctx, asset, "C", status="pending")
    command = CancelRequested("k2", AT, "ops", "job", job_id)
    run(agents_control.apply_command(ctx, command, 2, "unused"))
    assert ctx.tables.jobs[job_id]["status"] == "pending" and ctx.emitted == []
    run(agents_control.apply_command(ctx, command, 3, "unused"))
    assert ctx.tables.jobs[job_id]["status"] == "cancelled" and len(ctx.emitted) == 1


class FetchCounter:
    def __init__(self) -> None:
        self.fetches = 0

    async def getmany(self, *args, **kwargs):
        self.fetches += 1
        return {}


@pytest.mark.parametrize("held, fetches", [(True, 0), (False, 1)])
def test_a_held_lane_fetches_nothing(monkeypatch, held, fetches):
    monkeypatch.setattr(lanes, "FETCH_WAIT_S", 0.0)

    async def handle(ctx, events):
        raise AssertionError("nothing to handle")

    follower = lanes.PartitionFollower(SimpleNamespace(settings=Settings()), RENDER_BACKGROUND, "unused", handle,
                                       name="background", batch_size=1)
    follower.owned = lambda: frozenset({0})  # type: ignore[method-assign]
    follower.assigned, follower._assigned_at = frozenset({0}), follower.rebalances
    follower.held = lambda: held
    consumer = FetchCounter()
    run(follower._step(consumer))
    assert consumer.fetches == fetches


def test_background_is_held_until_the_history_is_read_and_while_paused():
    watch = agents_control.BackgroundWatch(SimpleNamespace(settings=Settings()), "unused")
    assert watch.held() and watch.describe()["known"] is False
    watch.caught_up = True
    assert not watch.held()
    watch.state = watch.state.__class__(paused=True, since=AT, by="ops", command_id="p1")
    assert watch.held() and watch.describe()["by"] == "ops"
