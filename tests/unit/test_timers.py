"""A timer's exception is counted and logged at a bounded rate, never raised."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from regen.agents.metrics import Metrics
from regen.agents.timers import run_guarded
from regen.projections.throttled_log import ThrottledLog


def test_a_failing_tick_is_counted_and_does_not_raise(caplog):
    ctx = SimpleNamespace(metrics=Metrics())

    async def tick():
        raise AttributeError("'int' object has no attribute 'replace'")

    for _ in range(3):
        asyncio.run(run_guarded(ctx, "sweeper-test", tick))
    assert b'regen_timer_errors_total{timer="sweeper-test"} 3.0' in ctx.metrics.exposition()
    assert caplog.text.count("timer sweeper-test failed") == 1, "one line a minute per timer"


def test_cancellation_still_stops_a_timer():
    async def tick():
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_guarded(SimpleNamespace(metrics=Metrics()), "t", tick))


def test_the_throttled_log_counts_what_it_did_not_log(caplog):
    now = [0.0]
    throttled = ThrottledLog(logging.getLogger("t"), every_s=60, clock=lambda: now[0])
    assert throttled.log("a", logging.WARNING, "first")
    assert not throttled.log("a", logging.WARNING, "again")
    assert throttled.log("b", logging.WARNING, "another key")
    now[0] = 61
    assert throttled.log("a", logging.WARNING, "later")
    assert "later (1 more like it not logged in the last 60 s)" in caplog.text
