from __future__ import annotations

import pytest

from regen.agents.lane_share import LaneShare


def grants(share: LaneShare, n: int, interactive: bool = True, background: bool = True) -> list[str]:
    return [share.choose(interactive, background) for _ in range(n)]


def test_interactive_goes_first_while_background_holds_no_credit():
    assert grants(LaneShare(0.2), 4) == ["interactive"] * 4


@pytest.mark.parametrize("min_share", [0.1, 0.2, 0.25, 0.5])
def test_background_gets_its_minimum_share_while_both_wait(min_share):
    chosen = grants(LaneShare(min_share), 1000)
    assert chosen.count("background") / len(chosen) == pytest.approx(min_share, abs=0.002)


def test_background_alone_gets_every_slot_and_interactive_alone_too():
    assert grants(LaneShare(0.2), 5, interactive=False) == ["background"] * 5
    assert grants(LaneShare(0.2), 5, background=False) == ["interactive"] * 5
    assert LaneShare(0.2).choose(False, False) is None


def test_an_idle_background_lane_cannot_bank_slots():
    share = LaneShare(0.5)
    grants(share, 3)  # builds credit while background waits
    share.choose(True, False)  # background queue drained: credit is gone
    assert grants(share, 2) == ["interactive", "background"]


def test_zero_share_means_strict_priority():
    assert set(grants(LaneShare(0.0), 100)) == {"interactive"}


def test_a_share_of_one_or_more_is_refused():
    with pytest.raises(ValueError):
        LaneShare(1.0)
