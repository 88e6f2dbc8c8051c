"""How long the broker may hold a reader's fetch: not at all when it is idle,
long enough to gather a batch when it is busy.

A Kafka fetch returns when ``min_bytes`` of records are there or
``max_wait_ms`` has passed. With ``min_bytes`` = 1 (aiokafka's default) a
busy reader sends a fetch for nearly every record written: measured with
two workers rendering 8.6 MP photos, 8.5 fetches per thumbnail, and on a
machine shared with the broker each request costs CPU on both sides (on
loopback the sender's write also runs the receiving network stack). Paced
as below, the same work took 2.7 fetches per thumbnail and the fleet
rendered 27 % more per second. But a fetch held for a batch delays a single
record by up to the wait, and an idle reader would ask the broker at that
rate all day long.

So each reader is paced by what it delivered lately:

1. A reader starts idle: the broker answers as soon as one record is there
   (``min_bytes`` 1), and holds an empty fetch for the reader's own idle
   wait, which sets only how often an idle reader asks.
2. It becomes busy once it delivered at least ``busy_from`` records a second
   over a window: the broker then holds a fetch until ``BUSY_MIN_BYTES`` are
   there or ``BUSY_WAIT_MS`` have passed. Each record waits at most that
   long more, and the reader sends at most ``1000 / BUSY_WAIT_MS`` fetches a
   second, however many records are written.
3. It is idle again once it delivered fewer than ``idle_below`` records a
   second over a window (fewer than ``busy_from``, so a reader near the
   threshold does not flip at every window).
4. The pace is decided once a window, from every delivery in it, empty ones
   included: a reader calls :meth:`FetchPacer.observe` after each fetch,
   which for an idle reader is at least once per idle wait.

A reader that must answer a person at once (the interactive lane, the
requests topic) is not paced: a batch of requests is never what it gets.
The pace reaches aiokafka through two attributes of its fetcher, read each
time it builds a fetch request (pinned by tests/unit/test_fetch_pacing.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# What a busy reader's fetch waits for: enough records to be worth a request,
# or this long. The wait bounds the latency paced readers add per hop.
BUSY_MIN_BYTES = 64 * 1024
BUSY_WAIT_MS = 100
# Rules 2 and 3: records a second that make a reader busy, and idle again.
BUSY_FROM = 40.0
IDLE_BELOW = 10.0
WINDOW_S = 1.0


@dataclass(frozen=True)
class Pace:
    min_bytes: int
    max_wait_ms: int


class FetchPacer:
    """Rules 1-4 for one reader; ``observe`` returns the pace for its next fetch."""

    def __init__(self, idle_wait_ms: int, *, busy_from: float = BUSY_FROM, idle_below: float = IDLE_BELOW,
                 window_s: float = WINDOW_S) -> None:
        if not 0 <= idle_below <= busy_from:
            raise ValueError(f"idle_below ({idle_below}) must be between 0 and busy_from ({busy_from})")
        self.idle = Pace(1, idle_wait_ms)  # rule 1
        self.busy = Pace(BUSY_MIN_BYTES, min(BUSY_WAIT_MS, idle_wait_ms))
        self.busy_from, self.idle_below, self.window_s = busy_from, idle_below, window_s
        self.pace = self.idle
        self._window_start: float | None = None
        self._records = 0

    @property
    def is_busy(self) -> bool:
        return self.pace is self.busy

    def observe(self, records: int, now: float) -> Pace:
        """``records`` were delivered by one fetch (0 for an empty one) at ``now`` (monotonic seconds)."""
        if self._window_start is None:
            self._window_start = now
        self._records += records
        elapsed = now - self._window_start
        if elapsed >= self.window_s:  # rule 4
            rate = self._records / elapsed
            if rate >= self.busy_from:
                self.pace = self.busy  # rule 2
            elif rate < self.idle_below:
                self.pace = self.idle  # rule 3
            self._window_start, self._records = now, 0
        return self.pace


def apply_pace(consumer: Any, pace: Pace) -> None:
    """Give an aiokafka consumer's next fetch requests ``pace``. A consumer
    not started yet has no fetcher: it starts with its constructor's values."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None:
        fetcher._fetch_min_bytes = pace.min_bytes
        fetcher._fetch_max_wait_ms = pace.max_wait_ms


def after_fetch(pacer: FetchPacer, consumer: Any, records: int) -> None:
    """Rule 4 for a reader that just delivered ``records``: its next fetch
    gets the pace they call for. Set every time, so a consumer whose fetcher
    was started again meanwhile gets it too."""
    apply_pace(consumer, pacer.observe(records, time.monotonic()))
