"""The broker watch: when the broker counts as unreachable, what it logs, who asks it;
and the backoff everything regen retries against the broker waits."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from regen.agents.metrics import Metrics
from regen.agents.timers import run_guarded
from regen.streams.backoff import Backoff
from regen.streams.broker_watch import GRACE_S, BrokerWatch, servers, watch_broker


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watch():
    clock = Clock()
    return BrokerWatch("k1:9092", Backoff(0.1, 5.0), clock=clock), clock


def test_a_broker_that_keeps_failing_is_unreachable_after_the_grace_and_said_so_once(watch, caplog):
    watch, clock = watch
    watch.failed()
    assert watch.unreachable_s() is None, "one failed connection is no outage yet"
    for _ in range(100):
        clock.now += 0.5
        watch.failed()
    assert watch.unreachable_s() == pytest.approx(50.0)
    assert not watch.reachable
    went = [r for r in caplog.records if "unreachable since" in r.getMessage()]
    assert len(went) == 1 and went[0].levelno == logging.ERROR
    assert "broker at k1:9092 unreachable since" in went[0].getMessage()
    assert "backoff up to 5 s (REGEN_BROKER_BACKOFF_MAX)" in went[0].getMessage()
    clock.now += 10
    watch.succeeded()
    assert watch.unreachable_s() is None and watch.reachable
    assert [r.getMessage() for r in caplog.records if "back after" in r.getMessage()] == [
        "broker at k1:9092 back after 60 s"]


def test_a_failure_followed_by_a_success_is_not_an_outage(watch, caplog):
    watch, clock = watch
    watch.failed()
    clock.now += GRACE_S / 2
    watch.succeeded()
    clock.now += 10
    assert watch.unreachable_s() is None
    assert caplog.records == []


def test_asking_is_enough_to_notice_an_outage_when_no_client_retries_meanwhile(watch, caplog):
    watch, clock = watch
    watch.failed()
    clock.now += 3
    assert watch.unreachable_s() == pytest.approx(3.0)
    assert len([r for r in caplog.records if "unreachable since" in r.getMessage()]) == 1


def test_one_watch_per_broker_address_however_it_is_spelled():
    assert servers("k2:9093, k1") == ("k1:9092", "k2:9093")
    assert watch_broker("test-watch-a:1,test-watch-b:2") is watch_broker(" test-watch-b:2,test-watch-a:1")
    assert watch_broker("test-watch-a:1") is not watch_broker("test-watch-b:2")


def test_the_backoff_doubles_up_to_its_cap_and_jitter_only_shortens():
    backoff = Backoff(first_s=0.1, cap_s=5.0, jitter=0.2)
    assert [backoff.delay(n, rand=lambda: 0.0) for n in range(1, 9)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert backoff.delay(10, rand=lambda: 1.0) == pytest.approx(4.0)
    assert backoff.delay(10_000) <= 5.0, "no overflow however long the outage"


def test_a_timer_skips_its_tick_while_the_broker_is_unreachable(watch):
    watch, clock = watch
    ticks = []

    async def tick():
        ticks.append(clock.now)

    ctx = SimpleNamespace(metrics=Metrics())
    asyncio.run(run_guarded(ctx, "t", tick, watch))
    watch.failed()
    clock.now += 5
    asyncio.run(run_guarded(ctx, "t", tick, watch))
    watch.succeeded()
    asyncio.run(run_guarded(ctx, "t", tick, watch))
    assert len(ticks) == 2
