"""The Cashii cash-out end to end against the sandbox: paid, rejected, canceled, timed out
(then paid after all, or not), the red button, a network timeout while creating (no second
payment) and while polling, a payout that fails after paid; afterwards the journal and the
sandbox agree (one payment per transaction, paid ⇔ the customer got the cash or is owed it)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from drivers.panel import PanelState
from kiosk.flows.cashii_cashout import CashiiCashOut
from kiosk.journal import Tx
from kiosk.money import Money
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler

CANCEL = 6
PAYER = "5550001112223334"


def account(r: Rig, balance: int = 100000, number: str = PAYER) -> None:
    r.hook("cashii/accounts", {"account": number, "balance": balance, "currency": "AED"})


def payments(r: Rig) -> list[dict[str, Any]]:
    got = r.hook("cashii/payments")
    return list(got["payments"] if isinstance(got, dict) else got)


def fault(r: Rig, op: str, mode: str, count: int = 1) -> None:
    r.hook("cashii/faults", {"op": op, "mode": mode, "count": count})


def fast(r: Rig, timeout_s: float = 3.0) -> None:
    p = r.ctx.config.providers["cashii"]
    quick = dataclasses.replace(p, poll_interval_s=0.2, pay_timeout_s=timeout_s)
    providers = {**r.ctx.config.providers, "cashii": quick}
    r.ctx.config = dataclasses.replace(r.ctx.config, providers=providers)


async def start(r: Rig, amount: int = 10000) -> asyncio.Task[Tx]:
    before = len(payments(r))
    task = asyncio.create_task(CashiiCashOut(r.ctx, Money.of(amount, "AED")).run())
    await r.until(lambda: len(payments(r)) > before or task.done())
    return task


def the_payment(r: Rig) -> dict[str, Any]:
    (p,) = payments(r)
    return p


def receipt(r: Rig, tx: Tx, kind: str) -> str:
    return " ".join((r.ctx.config.receipts_dir / f"{tx.ref}-{kind}.txt").read_text().split())


async def settle_outbox(r: Rig, *, rounds: int = 10, advance_s: int = 0) -> None:
    j, fw = r.ctx.journal, r.ctx.outbox()
    for _ in range(rounds):
        if advance_s:
            r.hook("clock", {"advance_s": advance_s})
        rows = await j.call(j.sync.outbox_due, r.ctx.clock_ms() + 10**12)
        if not rows:
            return
        for row in rows:
            async with fw.hold(row["id"]):
                await fw.step(row["id"])


async def agree(r: Rig) -> None:
    """Closed transactions; at most one payment per transaction; a paid payment ⇔ the
    customer was paid out or is owed exactly the rest; no payout without a paid payment."""
    j = r.ctx.journal
    by_ref = {p["metadata"]["reference"]: p for p in payments(r)}
    assert len(by_ref) == len(payments(r))
    for tx in await j.call(j.sync.transactions, limit=1000):
        assert tx.closed, (tx.ref, tx.state)
        p = by_ref.get(tx.ref)
        if p is not None and p["status"] == "paid":
            assert tx.dispensed + tx.owed == tx.amount_due == p["amount"], tx
        else:
            assert (tx.dispensed, tx.owed) == (0, 0), tx


def test_paid_in_the_app_pays_out_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            account(r)
            task = await start(r)
            pid = the_payment(r)["id"]
            slip = await r.until(lambda: list(r.ctx.config.receipts_dir.glob("*-slip.txt")))
            text = " ".join(slip[0].read_text().split())
            assert f"{pid[:4]} {pid[4:8]}" in text and "AED 100.00" in text
            r.hook(f"cashii/payments/{pid}/pay", {"account": PAYER})
            tx = await task
            assert (tx.state, tx.dispensed, tx.provider_ref) == ("completed", 10000, pid)
            assert rec.payouts == [10000]
            assert the_payment(r)["metadata"] == {"kiosk_id": "KSK-DEMO", "reference": tx.ref}
            await agree(r)

    run(scenario)


def test_rejected_and_canceled_pay_out_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            for hook in ("reject", "cancel"):
                task = await start(r)
                pid = payments(r)[-1]["id"]
                r.hook(f"cashii/payments/{pid}/{hook}", {})
                tx = await task
                assert tx.state == "void" and tx.reason in ("payment_rejected", "payment_canceled")
                assert "no cash was paid out" in receipt(r, tx, "declined")
            assert rec.payouts == []
            await agree(r)

    run(scenario)


def test_insufficient_balance_in_the_app_is_rejected(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            account(r, balance=100)
            task = await start(r)
            r.hook(f"cashii/payments/{the_payment(r)['id']}/pay", {"account": PAYER})
            tx = await task
            assert (tx.state, tx.reason) == ("void", "payment_rejected")
            assert rec.payouts == []

    run(scenario)


def test_timed_out_then_paid_after_all_is_owed_never_paid_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r, timeout_s=1.0)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            account(r)
            tx = await (await start(r))
            assert (tx.state, tx.reason) == ("pending", "pay_timeout")
            assert "VOID" in receipt(r, tx, "pending")
            r.hook(f"cashii/payments/{the_payment(r)['id']}/pay", {"account": PAYER})
            await settle_outbox(r)
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed, tx.dispensed) == ("owed", 10000, 0)
            assert rec.payouts == []
            await agree(r)

    run(scenario)


def test_timed_out_and_never_paid_is_void_after_the_watch(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r, timeout_s=1.0)
            r.ctx.dispenser = Recycler({5000: 4})
            tx = await (await start(r))
            assert tx.state == "pending"
            await settle_outbox(r)
            j = r.ctx.journal
            assert (await j.call(j.sync.get, tx.id)).state == "pending"  # still watched
            await settle_outbox(r, advance_s=31 * 24 * 3600)
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed) == ("void", 0)
            await agree(r)

    run(scenario)


def test_the_red_button_voids_the_slip(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r, timeout_s=30.0)
            r.ctx.dispenser = Recycler({5000: 4})
            task = await start(r)
            await r.until_state(PanelState.WAIT)
            r.press(CANCEL)
            tx = await task
            assert (tx.state, tx.reason) == ("pending", "cancelled_at_kiosk")
            r.hook(f"cashii/payments/{the_payment(r)['id']}/cancel", {})
            await settle_outbox(r)
            j = r.ctx.journal
            assert (await j.call(j.sync.get, tx.id)).state == "void"
            await agree(r)

    run(scenario)


def test_a_create_whose_answer_is_lost_is_never_sent_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            fault(r, "create", "drop_response")  # created at Cashii, the id never came
            tx = await CashiiCashOut(r.ctx, Money.of(10000, "AED")).run()
            assert tx.state == "refused" and (tx.reason or "").startswith("create_unconfirmed")
            assert len(payments(r)) == 1  # one payment, nobody can pay it (no slip)
            assert not list(r.ctx.config.receipts_dir.glob("*-slip.txt"))
            assert rec.payouts == []
            j = r.ctx.journal
            (eff,) = await j.call(j.sync.effects, tx.id, kind="create")
            assert eff.status == "unknown"

    run(scenario)


def test_reads_that_fail_while_polling_are_read_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            account(r)
            fault(r, "get", "error_500", count=3)
            task = await start(r)
            r.hook(f"cashii/payments/{the_payment(r)['id']}/pay", {"account": PAYER})
            tx = await task
            assert (tx.state, tx.dispensed) == ("completed", 10000)
            assert rec.payouts == [10000]

    run(scenario)


def test_a_payout_that_fails_after_paid_owes_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
            account(r)
            task = await start(r)
            r.hook(f"cashii/payments/{the_payment(r)['id']}/pay", {"account": PAYER})
            tx = await task
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 5000, 5000)
            assert "NOT FULLY PAID" in receipt(r, tx, "owed")
            await agree(r)

    run(scenario)


def test_recovery_never_pays_out_a_paid_payment_again(tmp_path: Path) -> None:
    from drivers.validator.base import PowerUpReport
    from kiosk.flows.recovery import recover

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j = r.ctx.journal
            tx = await j.call(j.sync.begin, "cashii_cashout", currency="AED", amount_due=10000)
            tx = await j.call(j.sync.transition, tx.id, "creating")
            tx = await j.call(j.sync.transition, tx.id, "waiting", provider_ref="1" * 16)
            tx = await j.call(j.sync.transition, tx.id, "paid")
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert (tx.state, tx.owed, tx.dispensed) == ("owed", 10000, 0)

    run(scenario)
