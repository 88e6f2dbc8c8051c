"""Which lane gets the next free render process.

Interactive work (someone is waiting for the image) goes first. Background
work (imports, pre-generation, idle composites) is never starved: while
both lanes wait, background still gets at least ``background_min_share`` of
the render slots handed out.

The mechanism is a credit counter, a one-queue form of deficit round robin:
every slot granted to the interactive lane while background work waits
earns the background lane ``share / (1 - share)`` of a slot; once it holds a
whole slot it gets the next one. Over any stretch where both lanes wait,
background gets ``share`` of the grants (within one slot), and interactive
latency grows by at most one background render in ``1 / share``. Credit
only accrues while background waits, so an idle background lane cannot
bank slots and later starve a burst of requests.
"""

from __future__ import annotations

from typing import Literal

Lane = Literal["interactive", "background"]


class LaneShare:
    def __init__(self, background_min_share: float) -> None:
        if not 0 <= background_min_share < 1:
            raise ValueError("background_min_share must be in [0, 1)")
        self._credit_per_grant = background_min_share / (1 - background_min_share)
        self._background_credit = 0.0

    def choose(self, interactive_waiting: bool, background_waiting: bool) -> Lane | None:
        """The lane to grant the slot that just became free, or None if nobody waits."""
        if not background_waiting:
            self._background_credit = 0.0
            return "interactive" if interactive_waiting else None
        if not interactive_waiting:
            return "background"
        if self._background_credit >= 1.0:
            self._background_credit -= 1.0
            return "background"
        self._background_credit += self._credit_per_grant
        return "interactive"
