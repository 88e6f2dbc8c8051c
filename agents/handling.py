"""Decoding one message and running its handler so that nothing crashes an agent.

A poison message (undecodable, invalid) goes to the dead-letter topic; so does
one whose handler raised something unexpected. Either way the agent goes on
with the next message and the offset advances: a bad event must not stall a
partition forever.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from faust import streams as faust_streams

from regen.agents.context import WorkerContext
from regen.agents.deadletter import send_to_deadletter
from regen.schemas.events import Event
from regen.streams.batches import take_batches
from regen.streams.codec import decode
from regen.streams.exceptions import PoisonEvent

log = logging.getLogger(__name__)

# How long a batch agent waits, from a batch's first event, to fill it:
# short, so a lone event is not held back waiting for company. While no event
# comes, the agent does not wake at all (streams/batches.py).
BATCH_WINDOW_S = 0.005


async def handle_message(
    ctx: WorkerContext,
    message: Any,
    expected: Sequence[type[Event]],
    handler: Callable[[WorkerContext, Any], Awaitable[None]],
) -> None:
    try:
        event, _ce_id = decode(message.value, message.headers, expected)
    except PoisonEvent as e:
        await send_to_deadletter(ctx, message, e)
        return
    ctx.metrics.events_in.labels(type(event).__name__).inc()
    ctx.activity.event_in(time.time())
    try:
        await handler(ctx, event)
    except Exception as e:  # noqa: BLE001 - the point is that nothing escapes
        log.exception("handling %s from %s failed", type(event).__name__, message.topic)
        await send_to_deadletter(ctx, message, e)


def register_event_agent(ctx: WorkerContext, spec, name: str,
                         handler: Callable[[WorkerContext, Any], Awaitable[None]], *, batch: int = 0) -> None:
    """One agent on ``spec``'s topic that handles its events one at a time.

    With ``batch``, it takes up to that many events at once (waiting at most
    a few milliseconds for them), handles them in order, and sends what they
    emitted together: for agents whose handlers are quick and whose cost is
    the round trip of each send (intake of a large import, a replay's burst
    of requests answered from the store).
    """

    async def agent(stream):
        async for event in stream.events():
            await handle_message(ctx, event.message, spec.event_types, handler)

    async def batch_agent(stream):
        async for events in take_batches(stream, batch, BATCH_WINDOW_S):
            async with ctx.emitting_together():
                for event in events:
                    with as_current_event(event):
                        await handle_message(ctx, event.message, spec.event_types, handler)

    if batch:
        agent = batch_agent

    agent.__name__ = agent.__qualname__ = name.replace("-", "_")
    ctx.app.agent(ctx.topic(spec), name=name)(agent)


@contextlib.contextmanager
def as_current_event(event: Any) -> Iterator[None]:
    """Make Faust attribute table writes to ``event``'s partition.

    Faust sends a table's changelog record to the partition of the event being
    processed (``faust.streams.current_event``). A batch from ``take_events``
    mixes partitions, so each job's writes must run under its own event.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
