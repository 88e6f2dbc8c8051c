"""Batches of a Faust stream's events, costing nothing while no event comes.

Faust's ``Stream.take_events(max_, within)`` waits at most ``within`` for a
full batch, and starts that wait again as soon as it ends, events or none.
regen's batch agents take a 5 ms window (a lone event must not wait for
company), so each woke 200 times a second all day: on an idle worker, its
batch agents used three quarters of the CPU it used in all (measured over
20 s: 1.64 CPU s with the 5 ms window, 0.44 with a 0.5 s one).

:func:`take_batches` yields the same batches, acked the same way (after the
agent is done with each), but a batch's window opens with its first event:
with no event coming, the agent sleeps until one does.

It drives the stream the way ``take_events`` does (a processor fills the
buffer while the stream is consumed passively), through two private parts of
Faust's ``Stream``; tests/unit/test_batches.py pins them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def take_batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    """Up to ``max_`` events of ``stream`` at a time: those that came within
    ``within`` seconds of the first. Each batch is acked once the agent asks
    for the next one (or stops)."""
    events: list[Any] = []
    arrived = asyncio.Event()  # the buffer holds an event: the batch's window is open
    full = asyncio.Event()  # the buffer holds max_ events
    emptied = asyncio.Event()  # a full buffer was taken: adding may go on
    handling: asyncio.Future[None] | None = None  # while the agent handles a batch, adding waits

    async def add(value: Any) -> Any:
        nonlocal handling
        if handling is not None:
            try:
                await handling
            finally:
                handling = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("a batch's event is missing: the stream has no current event")
        events.append(event)
        arrived.set()
        if len(events) >= max_:
            full.set()
            emptied.clear()
            await stream.wait(emptied)  # never more than max_ in a batch
        return value

    acks_before = stream.enable_acks
    stream.enable_acks = False  # acked here, after the agent handled them
    stream.add_processor(add)
    stream._enable_passive(stream.channel)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(arrived)  # no timeout: an idle agent sleeps
            await stream.wait_for_stopped(full, timeout=within)
            if not events:
                continue  # stopping
            handling = asyncio.get_running_loop().create_future()
            batch = list(events)
            try:
                yield batch
            finally:
                events.clear()
                for event in batch:
                    await stream.ack(event)
                arrived.clear()  # before adding resumes: an event added next opens a new window
                full.clear()
                if not handling.done():
                    handling.set_result(None)
                emptied.set()
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(add)
