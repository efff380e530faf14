"""The cash-out core: intent with levels, one payout, exact dispensed, levels settle the rest.

The recycler here is a stand-in for the flow's logic only; the same flow runs over the wire
against the eSSP simulator in the daemon tests.
"""

from __future__ import annotations

from pathlib import Path

from drivers.errors import PortError
from drivers.validator.base import PayoutResult, PowerUpReport
from kiosk.flows.cashout import local_cashout
from kiosk.flows.recovery import recover
from tests.flows.rig import rig, run


class Recycler:
    def __init__(
        self,
        levels: dict[int, int],
        *,
        stop_after: int | None = None,
        lose_report: bool = False,
        unreadable_after: bool = False,
    ) -> None:
        self.stored = dict(levels)
        self.stop_after, self.lose_report = stop_after, lose_report
        self.unreadable_after = unreadable_after
        self.payouts: list[int] = []

    async def levels(self) -> dict[int, int]:
        if self.unreadable_after and self.payouts:
            raise PortError("recycler gone")
        return dict(self.stored)

    def _plan(self, amount: int) -> list[int] | None:
        notes, left = [], amount
        for value in sorted(self.stored, reverse=True):
            take = min(self.stored[value], left // value)
            notes += [value] * take
            left -= take * value
        return notes if left == 0 else None

    async def can_pay(self, amount: int) -> bool:
        return self._plan(amount) is not None

    async def payout(self, amount: int) -> PayoutResult:
        self.payouts.append(amount)
        notes = self._plan(amount) or []
        if self.stop_after is not None:
            notes = notes[: self.stop_after]
        for value in notes:
            self.stored[value] -= 1
        if self.lose_report:
            raise PortError("port lost mid-payout")
        return PayoutResult(amount, sum(notes), "" if sum(notes) == amount else "jammed")

    async def halt(self) -> None: ...

    async def smart_empty(self) -> dict[int, int]:
        return {}


def test_full_payout_completes_with_a_receipt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({2000: 5, 5000: 2})
            tx = await local_cashout(r.ctx, 9000)
            assert (tx.state, tx.dispensed, tx.owed) == ("completed", 9000, 0)
            assert rec.payouts == [9000] and rec.stored == {2000: 3, 5000: 1}
            text = (r.ctx.config.receipts_dir / f"{tx.ref}-cashout.txt").read_text()
            assert "Cash paid out: AED 90.00" in text
            j = r.ctx.journal
            (eff,) = await j.call(j.sync.effects, tx.id, kind="payout")
            assert eff.request["levels_before"] == {"2000": 5, "5000": 2}
            assert eff.status == "done"

    run(scenario)


def test_an_amount_the_recycler_cannot_make_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 1})
            tx = await local_cashout(r.ctx, 2000)
            assert (tx.state, tx.reason) == ("refused", "cannot_pay_amount")
            assert rec.payouts == []
            r.ctx.dispenser = None
            assert (await local_cashout(r.ctx, 2000)).reason == "no_recycler"

    run(scenario)


def test_incomplete_payout_records_exactly_and_owes_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({2000: 5}, stop_after=2)
            tx = await local_cashout(r.ctx, 8000)
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 4000, 4000)
            assert rec.payouts == [8000]  # never retried
            (liability,) = await r.ctx.journal.call(r.ctx.journal.sync.liabilities)
            assert liability["reason"] == "incomplete_payout:jammed"

    run(scenario)


def test_a_lost_report_is_settled_by_the_levels(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({2000: 5}, stop_after=3, lose_report=True)
            tx = await local_cashout(r.ctx, 8000)
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 6000, 2000)
            j = r.ctx.journal
            (eff,) = await j.call(j.sync.effects, tx.id, kind="payout")
            assert eff.outcome["settled_by"] == "levels"

    run(scenario)


def test_unreadable_levels_leave_the_payout_open_until_recovery_decides(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({2000: 5}, lose_report=True, unreadable_after=True)
            tx = await local_cashout(r.ctx, 4000)
            # The unit is gone: nothing is decided blind; its report will settle it.
            assert (tx.state, tx.reason) == ("dispensing", None)
            assert r.ctx.out_of_service.is_set()
            from drivers.validator.base import PowerUpReport
            from kiosk.flows.recovery import recover

            (tx,) = await recover(r.ctx, PowerUpReport())  # back, and still unreadable
            assert (tx.state, tx.reason) == ("unknown", "payout_unknown")

    run(scenario)


def test_recovery_of_a_payout_in_flight_counts_the_recycler(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j = r.ctx.journal
            tx = await j.call(j.sync.begin, "local_cashout", currency="AED", amount_due=6000)
            tx = await j.call(j.sync.transition, tx.id, "dispensing")
            await j.call(
                j.sync.intent,
                tx.id,
                "payout",
                f"{tx.ref}-payout",
                amount=6000,
                request={"levels_before": {"2000": 5}},
            )
            r.ctx.dispenser = Recycler({2000: 2})  # three notes left before the power cut
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert (tx.state, tx.dispensed, tx.owed) == ("completed", 6000, 0)

    run(scenario)
