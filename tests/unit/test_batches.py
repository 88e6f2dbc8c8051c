"""Batch agents' batches (streams/batches.py): the same batches Faust's
take_events makes, acked after they are handled, and no wake-ups while no
event comes.

The stream here plays the part of Faust's: a drainer task runs each event
through the stream's processors while the stream is consumed passively,
with the event as the current one. The real stream is driven by every
integration test of a batch agent (source intake, output references); the
Faust methods relied on are pinned below.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from regen.streams.batches import take_batches
from tests.helpers import source_digest


@dataclass
class Ev:
    value: int


class PassiveStream:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Ev] = asyncio.Queue()
        self.channel = object()
        self.enable_acks = True
        self.current_event: Ev | None = None
        self._processors: list = []
        self.acked: list[int] = []
        self.waits = 0  # calls of wait_for_stopped: how often the agent woke
        self.should_stop = False
        self._stopped = asyncio.Event()
        self._drainer: asyncio.Task | None = None

    def add_processor(self, processor) -> None:
        self._processors.append(processor)

    def _enable_passive(self, channel) -> None:
        assert channel is self.channel
        self._drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while True:
            event = await self.queue.get()
            self.current_event = event
            value = event.value
            for processor in self._processors:
                value = await processor(value)

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def wait_for_stopped(self, event: asyncio.Event, *, timeout: float | None = None) -> None:
        self.waits += 1
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stopped.wait())]
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def ack(self, event: Ev) -> None:
        self.acked.append(event.value)

    def stop(self) -> None:
        self.should_stop = True
        self._stopped.set()
        if self._drainer:
            self._drainer.cancel()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_events_come_in_batches_of_at_most_max_and_each_is_acked_after_it_was_handled():
    async def scenario():
        stream = PassiveStream()
        for n in range(7):
            stream.queue.put_nowait(Ev(n))
        batches, acked_when_handled = [], []
        async for batch in take_batches(stream, 3, within=0.05):
            batches.append([e.value for e in batch])
            acked_when_handled.append(list(stream.acked))
            if sum(map(len, batches)) == 7:
                break
        stream.stop()
        return batches, acked_when_handled, stream

    batches, acked_when_handled, stream = run(scenario())
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert acked_when_handled == [[], [0, 1, 2], [0, 1, 2, 3, 4, 5]]  # a batch is acked once handled
    assert stream.acked == list(range(7))  # the last one too, when the agent left the loop
    assert stream.enable_acks is True and stream._processors == []  # the stream is left as it was


def test_a_lone_event_waits_only_its_window():
    async def scenario():
        stream = PassiveStream()
        agen = take_batches(stream, 100, within=0.02)
        first = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0.3)
        assert not first.done()  # nothing came: nothing yielded
        stream.queue.put_nowait(Ev(1))
        batch = await asyncio.wait_for(first, 2)  # 20 ms window, not a full batch of 100
        await agen.aclose()
        stream.stop()
        return [e.value for e in batch], stream.acked

    batch, acked = run(scenario())
    assert batch == [1]
    assert acked == [1]


def test_an_idle_agent_does_not_wake():
    # Faust's take_events with a 5 ms window wakes 200 times a second with
    # no event: here the agent waits once for the first event, however long.
    async def scenario():
        stream = PassiveStream()
        agen = take_batches(stream, 10, within=0.005)
        pending = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0.5)
        waits = stream.waits
        stream.queue.put_nowait(Ev(1))
        await asyncio.wait_for(pending, 2)
        await agen.aclose()
        stream.stop()
        return waits

    assert run(scenario()) == 1


def test_events_that_come_while_a_batch_is_handled_make_the_next_batch():
    async def scenario():
        stream = PassiveStream()
        stream.queue.put_nowait(Ev(0))
        batches = []
        async for batch in take_batches(stream, 5, within=0.01):
            batches.append([e.value for e in batch])
            if len(batches) == 1:
                for n in (1, 2):
                    stream.queue.put_nowait(Ev(n))
                await asyncio.sleep(0.05)  # handling: the drainer must not add to this batch
                assert [e.value for e in batch] == [0]
            if sum(map(len, batches)) == 3:
                break
        stream.stop()
        return batches

    assert run(scenario()) == [[0], [1, 2]]


# Faust's parts take_batches relies on: the passive drainer that runs the
# processors with the current event set, and take_events, whose batching and
# acking it keeps. A changed method fails here; re-read streams/batches.py.
WATCHED = {
    "faust.streams.Stream.take_events": "607d48aead118ba8",
    "faust.streams.Stream._enable_passive": "64da8ce9f729e30e",
    "faust.streams.Stream._passive_drainer": "8ac3eef0bc6626ab",
    "faust.streams.Stream.add_processor": "3bb6686bc255f121",
}


@pytest.mark.parametrize("name", sorted(WATCHED))
def test_a_watched_upstream_method_is_unchanged(name):
    assert source_digest(name) == WATCHED[name], f"{name} changed upstream: compare it with streams/batches.py"
