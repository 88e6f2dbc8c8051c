"""A bound on how fast one kind of log line can repeat.

A worker whose broker went away once wrote 1.6 GB of the same two reconnect
errors in 90 minutes. Whatever loop produces them next time (a library's, a
timer's), the log stays readable: records are grouped by logger, level and
message template (numbers ignored, so "partition 3" and "partition 7" are
alike, even in messages formatted before logging), the first ``burst`` of
each group in a window of ``window_s`` seconds are written, and the rest are
counted and summed up in one line once the window is over:

    ... 1843 similar messages suppressed in the last 60 s; the last: Unable to ...

The summary is written when the next record of any kind passes, so a
flood that stops entirely is summed up by the next line the worker logs.

Installed on the handlers of the root logger (:func:`limit_repeats`): a
filter on a logger would not see the records of its children.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Ten lines of a kind a minute tell what is happening; more only hide the rest.
BURST = 10
WINDOW_S = 60.0
# Expired groups are summed up and forgotten at most this often.
SWEEP_EVERY_S = 1.0
_NUMBERS = re.compile(r"\d+")


@dataclass
class _Group:
    started: float
    passed: int = 0
    suppressed: int = 0
    last: logging.LogRecord | None = None


class RepeatLimit(logging.Filter):
    def __init__(self, handler: logging.Handler, burst: int = BURST, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._handler = handler
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._groups: dict[tuple[str, int, str], _Group] = {}
        self._lock = threading.Lock()  # Faust's consumer thread logs too
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "regen_summary", False):
            return True
        now = self._clock()
        with self._lock:
            summaries = self._sweep(now) if now >= self._next_sweep else []
            key = (record.name, record.levelno, _NUMBERS.sub("#", str(record.msg)))
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(started=now)
            if group.passed < self.burst:
                group.passed += 1
                keep = True
            else:
                group.suppressed += 1
                group.last = record
                keep = False
        for summary in summaries:  # outside the lock: the handler filters it again
            self._handler.handle(summary)
        return keep

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        self._next_sweep = now + SWEEP_EVERY_S
        summaries = []
        for key, group in list(self._groups.items()):
            if now - group.started < self.window_s:
                continue
            del self._groups[key]
            if group.suppressed and group.last is not None:
                summaries.append(_summary(group, now))
        return summaries


def _summary(group: _Group, now: float) -> logging.LogRecord:
    last = group.last
    assert last is not None
    try:
        example = last.getMessage()
    except Exception:  # noqa: BLE001 - a record whose arguments do not format still gets counted
        example = str(last.msg)
    record = logging.LogRecord(last.name, last.levelno, last.pathname, last.lineno,
                               "… %d similar messages suppressed in the last %.0f s; the last: %s",
                               (group.suppressed, now - group.started, example[:300]), None)
    setattr(record, "regen_summary", True)  # noqa: B010 - LogRecord declares no such field
    return record


def limit_repeats(logger: logging.Logger | None = None, **options) -> None:
    """Put a :class:`RepeatLimit` on every handler of ``logger`` (the root
    logger by default) that has none yet."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RepeatLimit) for f in handler.filters):
            handler.addFilter(RepeatLimit(handler, **options))
