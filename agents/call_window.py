"""How many calls a worker may make to one generator: a sliding window, pure.

A generator allows ``calls_per_minute``. Several workers share it through
the partitions of the generation lane: a worker owning ``k`` of ``n``
partitions takes ``k / n`` of the limit. Partitions of a consumer group are
disjoint, so the shares sum to the limit; each worker then keeps its own
share in every window of 60 s (the generator's ``rate_window_s``, shorter
only in tests) (a log of its call times, not a token bucket,
which would allow twice the limit across a minute's boundary).

Rebalances (the share is set from each assignment once it is complete, not
from the empty one a rebalance passes through): a share that shrinks
applies at once; one that grows applies one window later, because the
worker that gave up those partitions may have used their share in the last
minute (it stops calling before it lets them go: rule 10 of
streams/checkpoint.py). So while the same workers trade partitions, the
group keeps the limit in every window. A worker's first share after it
starts applies at once, since it cannot know what others did: in the minute
after a worker joins (or restarts), the group may exceed the limit by at
most that worker's share, the calls the previous owners of its partitions
made in that minute.

Shares are whole calls per window: a worker whose share is under one call
a minute makes one call per ``60 / share`` seconds instead, which keeps the
average but may exceed the limit within one window when the limit is below
the number of partitions (configure ``calls_per_minute`` >= the partitions).
A Retry-After from the generator holds every call of this worker until it
has passed.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW_S = 60.0
# A call is counted when it is sent, and the generator sees it a moment
# later, later the more its connection takes: a first call delayed by 5 ms
# and a call 60 s on delayed by 1 ms are 59.996 s apart at the server. So the
# window is kept this much longer than the generator's.
GUARD_S = 1.0


class CallWindow:
    def __init__(self, calls_per_window: int, window_s: float = WINDOW_S) -> None:
        self.limit, self.window_s = calls_per_window, window_s
        self._share: float | None = None  # calls per window this worker may make; None: never assigned
        self._growing: tuple[float, float] | None = None  # (from when, the larger share)
        self._calls: deque[float] = deque()
        self._held_until = 0.0

    def set_share(self, owned: int, total: int, now: float) -> None:
        """This worker now owns ``owned`` of the lane's ``total`` partitions."""
        share = self.limit * owned / total if total > 0 else 0.0
        if self._share is None and share == 0:
            return  # still starting: the first partitions it gets are its first share
        if self._share is None or share <= self._share:
            self._share, self._growing = share, None
        elif self._growing is None or self._growing[1] != share:
            self._growing = (now + self.window_s, share)

    def hold_until(self, until: float) -> None:
        """The generator said Retry-After: no call before ``until``."""
        self._held_until = max(self._held_until, until)

    def share(self, now: float) -> float:
        if self._growing is not None and now >= self._growing[0]:
            self._share, self._growing = self._growing[1], None
        return self._share or 0.0

    def take(self, now: float) -> float:
        """0: a call may start now, and is counted. Otherwise the seconds to
        wait before asking again."""
        if now < self._held_until:
            return self._held_until - now
        share = self.share(now)
        if share <= 0:
            return self.window_s  # no partition of the lane owned: nothing of ours to call for
        count, span = (math.floor(share), self.window_s) if share >= 1 else (1, self.window_s / share)
        span += GUARD_S
        while self._calls and self._calls[0] <= now - span:
            self._calls.popleft()
        if len(self._calls) < count:
            self._calls.append(now)
            return 0.0
        return max(1e-3, self._calls[-count] + span - now)
