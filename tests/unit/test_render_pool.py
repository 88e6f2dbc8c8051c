"""The render pool kills and replaces hung or crashed processes; others go on."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from regen.agents.render_pool import RenderPool, TaskFailed, TaskTimedOut, WorkerDied
from regen.imaging.errors import CorruptImage, SourceMissing


def _double(x: int) -> int:
    return x * 2


def _hang(seconds: float) -> None:
    time.sleep(seconds)


def _crash(_: object) -> None:
    os._exit(3)


def _permanent(_: object) -> None:
    raise CorruptImage("bad.jpg: cannot decode")


def _retriable(_: object) -> None:
    raise SourceMissing("not there yet")


@pytest.fixture
async def pool():
    p = RenderPool(2, timeout=5.0)
    await p.start()
    yield p
    await p.stop()


async def test_results_come_back(pool):
    assert await asyncio.gather(*(pool.run(_double, i) for i in range(10))) == [i * 2 for i in range(10)]


async def test_a_hung_task_is_killed_and_its_process_replaced_while_others_complete(pool):
    before = set(pool.live_pids())
    hung, ok = await asyncio.gather(pool.run(_hang, 30, timeout=0.5), pool.run(_double, 21), return_exceptions=True)
    assert isinstance(hung, TaskTimedOut)
    assert ok == 42
    assert pool.replaced == 1
    after = set(pool.live_pids())
    assert len(after) == 2 and after != before
    assert await pool.run(_double, 1) == 2


async def test_a_crashed_process_is_replaced(pool):
    with pytest.raises(WorkerDied, match="exit code 3"):
        await pool.run(_crash, None)
    assert pool.replaced == 1
    assert await pool.run(_double, 4) == 8


async def test_typed_errors_keep_their_kind(pool):
    with pytest.raises(TaskFailed) as permanent:
        await pool.run(_permanent, None)
    assert (permanent.value.code, permanent.value.permanent) == ("corrupt", True)
    with pytest.raises(TaskFailed) as retriable:
        await pool.run(_retriable, None)
    assert (retriable.value.code, retriable.value.permanent) == ("source_missing", False)
    assert pool.replaced == 0, "an error raised by the task is no reason to replace the process"


def _record(item: tuple[str, float]) -> str:
    name, seconds = item
    time.sleep(seconds)
    return name


async def test_interactive_work_overtakes_queued_background_work():
    pool = RenderPool(1, timeout=5.0, background_min_share=0.0)
    await pool.start()
    try:
        finished: list[str] = []

        async def run(name: str, lane: str, seconds: float = 0.05) -> None:
            finished.append(await pool.run(_record, (name, seconds), lane=lane))

        running = asyncio.ensure_future(run("running", "background", 0.3))
        await asyncio.sleep(0.1)  # it holds the only process now
        queued = [asyncio.ensure_future(run(f"bg{i}", "background")) for i in range(5)]
        await asyncio.sleep(0)
        assert pool.waiting("background") == 5
        request = asyncio.ensure_future(run("request", "interactive"))
        await asyncio.gather(running, request, *queued)
        assert finished[:2] == ["running", "request"]
    finally:
        await pool.stop()


async def test_background_keeps_its_minimum_share_under_a_stream_of_requests():
    pool = RenderPool(1, timeout=5.0, background_min_share=0.25)
    await pool.start()
    try:
        finished: list[str] = []

        async def run(name: str, lane: str) -> None:
            finished.append(await pool.run(_record, (name, 0.005), lane=lane))

        blocker = asyncio.ensure_future(run("blocker", "background"))
        await asyncio.sleep(0.05)
        tasks = [asyncio.ensure_future(run(f"bg{i}", "background")) for i in range(20)]
        tasks += [asyncio.ensure_future(run(f"rq{i}", "interactive")) for i in range(30)]
        await asyncio.gather(blocker, *tasks)
        # While both lanes waited (the first 40 grants), one in four went to background.
        contended = finished[1:41]
        assert sum(name.startswith("bg") for name in contended) == 10
    finally:
        await pool.stop()


def _allocate(megabytes: int) -> int:
    import numpy as np

    block = np.ones(megabytes * 1024 * 1024, dtype=np.uint8)  # touched: really allocated
    return int(block[-1])


def _bug(_: object) -> None:
    raise KeyError("a bug met on this input")


async def test_the_memory_cap_fails_a_bomb_permanently_and_keeps_the_process():
    from regen.agents.render_pool import MemoryCap

    pool = RenderPool(1, timeout=20.0, initializer=MemoryCap(512))
    await pool.start()
    try:
        with pytest.raises(TaskFailed) as info:
            await pool.run(_allocate, 1024)
        assert (info.value.code, info.value.permanent) == ("resource_limit", True)
        assert "REGEN_RENDER_MEMORY_MB" in info.value.message
        assert await pool.run(_allocate, 64) == 1, "an allocation under the cap still works"
        assert pool.replaced == 0
    finally:
        await pool.stop()


async def test_an_unexpected_error_is_permanent_not_retried(pool):
    with pytest.raises(TaskFailed) as info:
        await pool.run(_bug, None)
    assert (info.value.code, info.value.permanent) == ("render_error", True)
    assert "KeyError" in info.value.message
