"""Timers that never crash the app.

Faust lets an exception out of a timer stop the whole worker, and a cause
that comes back after a restart (a malformed table row) would stop it again
every time. A timer's tick is a retry by nature, so an error is logged (one
line per timer per minute, with a count of the ones not logged), counted in
``regen_timer_errors_total{timer}``, and the next tick runs as usual.

While the broker is unreachable a tick is skipped: it would only wait for
the broker (every one of them sends), hold on to what it took meanwhile, and
have Faust warn each interval that the timer overlaps itself; the first tick
after the broker is back does the work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from regen.agents.context import WorkerContext
from regen.projections.throttled_log import ThrottledLog
from regen.streams.broker_watch import BrokerWatch, watch_of_app

log = logging.getLogger(__name__)
_errors = ThrottledLog(log)


def guarded_timer(ctx: WorkerContext, interval: float, name: str
                  ) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """``@guarded_timer(ctx, 1.0, "sweeper")`` in place of ``@ctx.app.timer(1.0, name="sweeper")``."""

    def register(tick: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        broker = watch_of_app(ctx.app)

        async def guarded() -> None:
            await run_guarded(ctx, name, tick, broker)

        guarded.__name__ = guarded.__qualname__ = tick.__name__
        ctx.app.timer(interval, name=name)(guarded)
        return tick

    return register


async def run_guarded(ctx: WorkerContext, name: str, tick: Callable[[], Awaitable[None]],
                      broker: BrokerWatch | None = None) -> None:
    if broker is not None and not broker.reachable:
        return
    try:
        await tick()
    except Exception as e:  # noqa: BLE001 - the point: CancelledError (a BaseException) still stops it
        ctx.metrics.timer_errors.labels(name).inc()
        _errors.log(name, logging.ERROR, "timer %s failed; it runs again at its next tick: %s: %s", name,
                    type(e).__name__, e, exc_info=True)
