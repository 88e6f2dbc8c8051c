"""Capped exponential backoff with jitter, for everything regen retries
against the broker (reconnects, metadata updates, durable sends).

Jitter only shortens a delay, so the cap is a real upper bound; it spreads
out the retries of clients and tasks that failed at the same moment (every
one of them sees a broker go away at once)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first_s: float
    cap_s: float
    factor: float = 2.0
    jitter: float = 0.2  # a delay is drawn from [base * (1 - jitter), base]

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        exponent = min(max(attempt, 1) - 1, 64)  # 2**64 times any first delay is past every cap
        base = min(self.cap_s, self.first_s * self.factor ** exponent)
        return base * (1.0 - self.jitter * rand())
