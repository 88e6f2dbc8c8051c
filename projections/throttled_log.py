"""Logging a recurring problem at a bounded rate.

A forged row read on every sweep, or a timer failing every second, must not
flood the log: the first occurrence of each key is logged, then at most one
line per ``every_s`` seconds saying how many were not logged meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledLog:
    def __init__(self, logger: logging.Logger, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, key: str, level: int, message: str, *args: object, exc_info: bool = False) -> bool:
        """Log unless ``key`` was logged less than ``every_s`` ago. True if logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            message += f" ({skipped} more like it not logged in the last {self._every_s:.0f} s)"
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True
