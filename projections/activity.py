"""What a worker has just done, for the dashboard: event rates over the last
minutes, the latest thumbnails and failures. In memory, per worker; pure."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RATE_HISTORY_S = 300
RECENT = 12


@dataclass
class Activity:
    # (whole second, events in that second), oldest first
    _per_second: deque = field(default_factory=lambda: deque(maxlen=RATE_HISTORY_S))
    recent_images: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    recent_failures: deque = field(default_factory=lambda: deque(maxlen=RECENT * 2))

    def event_in(self, now: float) -> None:
        second = int(now)
        if self._per_second and self._per_second[-1][0] == second:
            self._per_second[-1] = (second, self._per_second[-1][1] + 1)
        else:
            self._per_second.append((second, 1))

    def rates(self, now: float, seconds: int = 120) -> list[int]:
        """Events per second for each of the last ``seconds`` seconds (oldest first, zeros included)."""
        counts = dict(self._per_second)
        end = int(now)
        return [counts.get(s, 0) for s in range(end - seconds + 1, end + 1)]

    def generated(self, target: str, variant: str, uri: str, width: int, height: int, at: str) -> None:
        self.recent_images.appendleft({"target": target, "variant": variant, "uri": uri, "width": width,
                                       "height": height, "at": at})

    def failed(self, target: str, variant: str, reason: str, error: str, at: str) -> None:
        self.recent_failures.appendleft({"target": target, "variant": variant, "reason": reason, "error": error,
                                         "at": at})
