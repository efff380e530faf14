"""Validator events no stack() waits for (issue 8): a note that reaches escrow after the
journey stopped listening, a credit the device makes by itself, a note it gives back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drivers.errors import PortError
from drivers.validator.base import FaultKind, PayoutResult, PowerUpReport
from kiosk.flows import device_events
from kiosk.flows.recovery import recover
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler
from tests.flows.test_payby_cashin import start

CANCEL = 6  # the panel's cancel button (BCM)


async def _jammed_journey(r: Rig) -> int:
    """A journey whose only note jams mid-stack: it ends owed with an unconfirmed note."""
    task = await start(r, r.order("150.00")["tokenUrl"])
    r.validator.stack_time = 0.2
    r.validator.insert(5000)
    await r.until(lambda: r.validator.state()["escrow"] is None or r.validator._stacking)
    r.validator.fault(FaultKind.JAM)
    tx = await task
    assert (tx.state, tx.owed) == ("owed", 5000)
    j = r.ctx.journal
    (eff,) = await j.call(j.sync.effects, tx.id, kind="stack")
    assert eff.status == "unknown"
    return tx.id


def test_a_note_escrowed_as_the_customer_cancels_is_returned(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            task = await start(r, r.order("150.00")["tokenUrl"])
            r.press(CANCEL)
            await asyncio.sleep(0.05)  # the journey stopped listening ...
            r.validator.escrow_unasked(5000)  # ... as a note goes in
            tx = await task
            assert tx.state == "cancelled"
            assert r.validator.state()["escrow"] is None
            j = r.ctx.journal
            kinds = [e["kind"] for e in await j.call(j.sync.events, tx.id)]
            assert "note.returned" in kinds

    run(scenario)


def test_a_credit_after_a_jam_settles_the_unconfirmed_note(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx_id = await _jammed_journey(r)
            r.validator.clear_fault()
            r.validator.credit_unasked(5000)
            await device_events.drain(r.ctx, 0.05)
            j = r.ctx.journal
            (eff,) = await j.call(j.sync.effects, tx_id, kind="stack")
            assert eff.status == "done" and eff.outcome["settled_by"] == "device_credit"
            tx = await j.call(j.sync.get, tx_id)
            assert (tx.credited, tx.owed) == (5000, 5000)  # still owed: PayBy was not paid
            (row,) = await j.call(j.sync.liabilities)
            assert row["reason"] == "unconfirmed_note"
            kinds = [e["kind"] for e in await j.call(j.sync.events, tx_id)]
            assert "note.found_stacked" in kinds
            assert [n.value for n in r.validator.acked_credits] == [5000]
            assert not r.ctx.out_of_service.is_set()  # the fault cleared: back in service

    run(scenario)


def test_a_late_credit_settles_an_older_transactions_note_not_a_stray(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx_id = await _jammed_journey(r)
            r.validator.clear_fault()
            j = r.ctx.journal
            later = await j.call(j.sync.begin, "payby_cashin", currency="AED")  # a next customer
            await j.call(j.sync.transition, later.id, "refused", reason="order_expired")
            r.validator.credit_unasked(5000)  # the device reports the jammed note only now
            await device_events.drain(r.ctx, 0.05)
            (eff,) = await j.call(j.sync.effects, tx_id, kind="stack")
            assert eff.status == "done"  # the older transaction's note, not a stray one
            rows = await j.call(j.sync.liabilities)
            assert [(x["tx_id"], x["reason"]) for x in rows] == [(tx_id, "unconfirmed_note")]

    run(scenario)


def test_a_note_returned_after_a_jam_cancels_the_unconfirmed_liability(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx_id = await _jammed_journey(r)
            r.validator.return_unasked(5000)
            await device_events.drain(r.ctx, 0.05)
            j = r.ctx.journal
            (eff,) = await j.call(j.sync.effects, tx_id, kind="stack")
            assert eff.status == "failed"
            assert await j.call(j.sync.liabilities) == []
            assert (await j.call(j.sync.get, tx_id)).owed == 0

    run(scenario)


def test_enable_failing_ends_the_journey_out_of_service(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.validator.fail["enable"] = PortError("escrow busy")
            tx = await asyncio.wait_for(
                __import__("kiosk.flows.payby_cashin", fromlist=["PayByCashIn"])
                .PayByCashIn(r.ctx, r.order("150.00")["tokenUrl"])
                .run(),
                10,
            )
            assert (tx.state, tx.reason) == ("cancelled", "fault")
            assert r.ctx.out_of_service.is_set()

    run(scenario)


def test_recovery_settles_a_payout_from_the_devices_incomplete_payout_report(
    tmp_path: Path,
) -> None:
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
            r.ctx.dispenser = Recycler({2000: 5})  # levels would say nothing was paid
            r.validator.incomplete_payout = PayoutResult(6000, 4000, "incomplete")  # type: ignore[attr-defined]
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 4000, 2000)
            (eff,) = await j.call(j.sync.effects, tx.id, kind="payout")
            assert eff.outcome["settled_by"] == "device_incomplete_payout"

    run(scenario)
