"""Reachability: which providers answer, and how their clocks compare with ours (shown by
``kiosk status``)."""

from __future__ import annotations

from kiosk.reachability import Reachability


def test_status_shows_reachability_and_the_measured_clock() -> None:
    now = [100.0]
    reach = Reachability(clock=lambda: now[0])
    reach.recorder("payby")(True)
    now[0] = 130.0
    assert reach.status() == {"payby": {"reachable": True, "for_s": 30.0}}
    reach.clock_recorder("payby")(-301.24, False)
    assert reach.status()["payby"] == {
        "reachable": True,
        "for_s": 30.0,
        "clock_skew_s": -301.2,
        "clock_refused": False,
    }
    reach.clock_recorder("payby")(None, True)  # refused outright, skew not measurable
    assert reach.status()["payby"]["clock_refused"] is True
    assert "clock_skew_s" not in reach.status()["payby"]
