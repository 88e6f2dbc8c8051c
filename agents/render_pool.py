"""A pool of render processes with a per-job timeout that kills and replaces
a hung process.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot cancel a running
call, and a worker killed under it breaks the whole pool. Here each slot is one
process behind a pipe; the event loop waits on the pipe's file descriptor
(``loop.add_reader``), so no thread blocks and no CPU work touches the loop.

The pool knows nothing of Kafka: it takes a picklable task and a function name
and returns the function's result or a typed failure.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import resource
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from regen.agents.lane_share import Lane, LaneShare
from regen.imaging.errors import printable

log = logging.getLogger(__name__)

# How long a replaced process gets to exit after SIGTERM before SIGKILL. A
# render that hangs in C code ignores nothing but SIGKILL, so keep this short.
KILL_GRACE_S = 0.5


@dataclass(frozen=True)
class TaskFailed(Exception):
    """The task raised: ``code`` and ``permanent`` come from ImagingError."""

    code: str
    message: str
    permanent: bool

    def __str__(self) -> str:
        return self.message


class TaskTimedOut(Exception):
    pass


class WorkerDied(Exception):
    """The render process exited mid-task (a crash in a C decoder, OOM kill)."""

    def __init__(self, message: str, signal_number: int | None = None):
        super().__init__(message)
        self.signal_number = signal_number  # the signal that ended it, if one did


@dataclass(frozen=True)
class MemoryCap:
    """Initializer of a render process: caps its data memory (RLIMIT_DATA:
    heap and private mappings, where numpy's and Pillow's buffers live).

    Not RLIMIT_AS: libav's decoder threads reserve hundreds of MB of address
    space they never touch (malloc arenas), so an address-space cap would
    either refuse ordinary videos or be set so high it caps nothing. Past the
    cap an allocation fails with MemoryError in the render process, which
    fails the job with ``resource_limit``, instead of the kernel's OOM
    killer choosing a victim, which may be the worker or the broker."""

    megabytes: int

    def __call__(self) -> None:
        if self.megabytes > 0:
            limit = self.megabytes * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _child_main(conn: Connection, limits_init: Callable[[], None] | None) -> None:
    # The parent handles Ctrl-C and shuts the pool down; a child that also
    # reacted to SIGINT would die mid-write and look like a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if limits_init is not None:
        limits_init()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, task = message
        try:
            conn.send(("ok", fn(task)))
        except BaseException as e:  # report everything; the parent decides
            conn.send(("error", _describe_failure(e)))


def _describe_failure(e: BaseException) -> tuple[str, str, bool]:
    """(code, message, permanent) of an exception raised by a task.

    Typed imaging errors say themselves. MemoryError is the memory cap:
    the same input hits it again, so it is permanent. Anything else is a
    bug met on this input, and the same input meets it again: permanent
    too, logged once with its traceback, instead of being retried with a
    traceback each time."""
    if hasattr(e, "code") and hasattr(e, "permanent"):
        return str(e.code), printable(str(getattr(e, "message", None) or e)), bool(e.permanent)
    if isinstance(e, MemoryError):
        return "resource_limit", "the render needed more memory than a render process may use " \
                                 "(REGEN_RENDER_MEMORY_MB)", True
    log.error("unexpected error in render process:\n%s", traceback.format_exc())
    return "render_error", printable(f"unexpected {type(e).__name__}: {e}"), True


class _Slot:
    def __init__(self, ctx, initializer):
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.process = ctx.Process(target=_child_main, args=(child, initializer), daemon=True)
        self.process.start()
        child.close()
        self.jobs_done = 0

    def kill(self) -> None:
        if self.process.is_alive():
            try:
                self.process.terminate()
                self.process.join(KILL_GRACE_S)
                if self.process.is_alive():
                    self.process.kill()
                    self.process.join(KILL_GRACE_S)
            except (OSError, ValueError):
                pass
        self.conn.close()


class RenderPool:
    """``size`` render processes; ``run()`` waits for a free one.

    Callers waiting for a process queue per lane, and a freed process goes
    to the lane :class:`LaneShare` picks: interactive first, background never
    starved. This is where the priority between lanes lives: the lanes are
    separate topics and agents, so a backlog of background jobs in Kafka
    never sits in front of a request, and here a request waits for at most
    the renders already running.
    """

    def __init__(self, size: int, timeout: float, initializer: Callable[[], None] | None = None,
                 background_min_share: float = 0.2):
        # forkserver: children start from a clean interpreter, not a copy of a
        # Faust worker with its sockets and event loop.
        self._ctx = multiprocessing.get_context("forkserver")
        self._size = size
        self._timeout = timeout
        self._initializer = initializer
        self._share = LaneShare(background_min_share)
        self._free: list[_Slot] = []
        self._waiting: dict[Lane, deque[asyncio.Future[_Slot]]] = {
            "interactive": deque(), "background": deque()}
        self._all: set[_Slot] = set()
        self._started = False
        self.replaced = 0

    @property
    def size(self) -> int:
        return self._size

    def describe(self) -> str:
        """One line for logs: free processes, live ones, who waits."""
        return (f"{len(self._free)} free of {len(self._all)} ({len(self.live_pids())} alive, "
                f"{self.replaced} replaced), waiting: {self.waiting('interactive')} interactive, "
                f"{self.waiting('background')} background")

    def waiting(self, lane: Lane) -> int:
        """Callers of this lane waiting for a render process."""
        return sum(1 for f in self._waiting[lane] if not f.done())

    async def start(self) -> None:
        self._started = True
        for _ in range(self._size):
            self._add_slot()

    def _add_slot(self) -> None:
        slot = _Slot(self._ctx, self._initializer)
        self._all.add(slot)
        self._release(slot)

    async def _acquire(self, lane: Lane) -> _Slot:
        if self._free and not self.waiting("interactive") and not self.waiting("background"):
            return self._free.pop()
        granted: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self._waiting[lane].append(granted)
        try:
            return await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(granted.result())  # granted, then cancelled: pass it on
            raise

    def _release(self, slot: _Slot) -> None:
        while True:
            for queue in self._waiting.values():
                while queue and queue[0].done():
                    queue.popleft()  # cancelled waiters
            lane = self._share.choose(bool(self._waiting["interactive"]), bool(self._waiting["background"]))
            if lane is None:
                self._free.append(slot)
                return
            waiter = self._waiting[lane].popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return

    async def run(self, fn: Callable[[Any], Any], task: Any, timeout: float | None = None,
                  lane: Lane = "background", on_start: Callable[[], None] | None = None) -> Any:
        if not self._started:
            raise RuntimeError("RenderPool.start() was not awaited")
        slot = await self._acquire(lane)
        if on_start is not None:
            on_start()
        healthy = False
        try:
            result = await self._call(slot, fn, task, timeout or self._timeout)
            healthy = True
            return result
        except TaskFailed:
            healthy = True
            raise
        finally:
            if healthy:
                self._release(slot)
            else:
                self._replace(slot)

    async def _call(self, slot: _Slot, fn, task, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = slot.conn.fileno()
        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        started = time.monotonic()
        try:
            slot.conn.send((fn, task))
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            raise TaskTimedOut(f"render did not finish within {timeout:g} s (process killed and replaced)") from None
        except (BrokenPipeError, OSError) as e:
            raise WorkerDied(f"render process is gone: {e}") from e
        finally:
            loop.remove_reader(fd)
        try:
            kind, payload = slot.conn.recv()
        except (EOFError, OSError) as e:
            slot.process.join(KILL_GRACE_S)  # reap it, so the exit code can be reported
            code = slot.process.exitcode
            signal_number = -code if code is not None and code < 0 else None
            raise WorkerDied(
                f"render process died after {time.monotonic() - started:.1f} s (exit code {code})",
                signal_number,
            ) from e
        if kind == "ok":
            slot.jobs_done += 1
            return payload
        code, message, permanent = payload
        raise TaskFailed(code, message, permanent)

    def _replace(self, slot: _Slot) -> None:
        self._all.discard(slot)
        slot.kill()
        self.replaced += 1
        log.warning("replaced render process %s (%d replaced so far)", slot.process.pid, self.replaced)
        self._add_slot()

    def live_pids(self) -> list[int]:
        """Process ids of the live render processes (health checks, tests)."""
        return [s.process.pid for s in self._all if s.process.pid is not None and s.process.is_alive()]

    async def stop(self) -> None:
        for slot in list(self._all):
            try:
                slot.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 2.0
        for slot in list(self._all):
            slot.process.join(max(0.0, deadline - time.monotonic()))
            slot.kill()
        self._all.clear()
