"""``kiosk bench journey``: a short run of every journey (PayBy, Paysera and Rapyd cash-out and
cash-in, Cashii cash-out), the delay-free recycler, the customer who pays a Cashii payment
before the kiosk's first read, and an exit status that counts every journey."""

from __future__ import annotations

import asyncio

import pytest

from kiosk.bench_journey import InstantRecycler, PaysAtOnce, journey, report


def test_instant_recycler_pays_exactly_what_its_levels_make() -> None:
    async def scenario() -> None:
        rec = InstantRecycler({5000: 2, 1000: 1})
        assert await rec.can_pay(11000) and not await rec.can_pay(12000)
        result = await rec.payout(11000)
        assert (result.requested, result.dispensed, result.complete) == (11000, 11000, True)
        assert await rec.levels() == {5000: 0, 1000: 0}

    asyncio.run(scenario())


def test_the_customer_pays_each_payment_once_before_the_first_read() -> None:
    class Client:
        async def get(self, payment_id: str) -> str:
            return f"read {payment_id}"

    paid: list[tuple[str, str]] = []
    app = PaysAtOnce(Client(), lambda pid, account: paid.append((pid, account)))
    app.account = "A1"

    async def scenario() -> None:
        assert await app.get("1" * 16) == f"read {'1' * 16}"
        await app.get("1" * 16)

    asyncio.run(scenario())
    assert paid == [("1" * 16, "A1")] and app.app_cpu_s >= 0


def test_exit_status_counts_every_journey(capsys: pytest.CaptureFixture[str]) -> None:
    fast = [(10.0, 20.0)] * 3
    keys = ("payby", "cashout", "cashin", "rapyd_cashout", "rapyd_cashin", "cashii")
    every = dict.fromkeys(keys, fast)
    assert report(every) == 0
    assert report({**every, "cashout": [(80.0, 90.0)] * 3}) == 1
    assert report({**every, "rapyd_cashin": [(80.0, 90.0)] * 3}) == 1
    assert report({**every, "cashii": [(80.0, 90.0)] * 3}) == 1
    assert report({k: v for k, v in every.items() if k != "cashii"}) == 1
    assert report({k: v for k, v in every.items() if k != "rapyd_cashout"}) == 1  # never ran
    out = capsys.readouterr().out
    assert "Paysera cash-out" in out and "Rapyd cash-in" in out and "MISSED" in out
    assert "Rapyd cash-out (100.00 by OTP from the envelope, recycler pays out): no runs" in out


@pytest.mark.slow
def test_a_short_run_of_every_journey(capsys: pytest.CaptureFixture[str]) -> None:
    journey(journeys=2)  # the status depends on the machine's speed; the lines do not
    out = capsys.readouterr().out
    for title in (
        "PayBy Cash Top Up",
        "Paysera cash-out",
        "Paysera cash-in",
        "Rapyd cash-out",
        "Rapyd cash-in",
        "Cashii cash-out",
    ):
        assert title in out
    assert out.count("kiosk time") == 6
