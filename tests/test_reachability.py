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


def test_the_outbox_waits_for_the_providers_clock_before_a_request_is_void() -> None:
    """Our clock 5 minutes ahead of PayBy's (measured from its replies): a row whose void
    moment has passed by our clock but not by PayBy's is not void yet; behind: no change."""
    from kiosk.outbox import Forwarder

    reach = Reachability()
    reach.clock("payby", 300.0)
    reach.clock("rapyd", -40.0)
    fw = Forwarder(None, {}, clock_ms=lambda: 1_000_000, ahead_ms=reach.ahead_ms)  # type: ignore[arg-type]
    assert fw.provider_now_ms({"op": "payby.pay"}) == 1_000_000 - 300_000
    assert fw.provider_now_ms({"op": "rapyd.withdraw"}) == 1_000_000
    assert fw.provider_now_ms({"op": "cashii.watch"}) == 1_000_000  # not measured
