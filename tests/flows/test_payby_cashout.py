"""PayBy cash-out with a kiosk order (DYNQR) end to end against the sandbox: paid and paid out,
not paid in time (cancelled), a short payout (the rest refunded), a refund FAILURE (owed), the
QR paid after the kiosk stopped waiting (refunded in full), a lost create asked again (one
order); afterwards the journal and the sandbox agree."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from drivers.panel import PanelState
from kiosk.flows.payby_cashout import PayByCashOut
from kiosk.journal import Tx
from kiosk.money import Money
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler

CANCEL = 6
PAYER = "100000777777"


def fast(r: Rig, timeout_s: float = 3.0) -> None:
    p = r.ctx.config.providers["payby"]
    quick = dataclasses.replace(p, poll_interval_s=0.2, cashout_pay_timeout_s=timeout_s)
    r.ctx.config = dataclasses.replace(
        r.ctx.config, providers={**r.ctx.config.providers, "payby": quick}
    )


async def start(r: Rig, amount: int = 10000) -> tuple[asyncio.Task[Tx], str]:
    task = asyncio.create_task(PayByCashOut(r.ctx, Money.of(amount, "AED")).run())
    j = r.ctx.journal

    async def order_no() -> str | None:
        (tx,) = await j.call(j.sync.transactions, limit=1) or [None]
        return tx.provider_ref if tx is not None and tx.state == "waiting" else None

    deadline = asyncio.get_running_loop().time() + 5
    while (no := await order_no()) is None and not task.done():
        assert asyncio.get_running_loop().time() < deadline, "no order"
        await asyncio.sleep(0.02)
    return task, no or ""


def app_pay(r: Rig, order_no: str) -> None:
    r.hook(f"payby/orders/{order_no}/app-pay", {"payer": PAYER})


def remote(r: Rig, order_no: str) -> dict[str, Any]:
    return r.hook(f"payby/orders/{order_no}")  # type: ignore[no-any-return]


def receipt(r: Rig, tx: Tx, kind: str) -> str:
    return " ".join((r.ctx.config.receipts_dir / f"{tx.ref}-{kind}.txt").read_text().split())


async def settle_outbox(r: Rig, rounds: int = 10) -> None:
    j, fw = r.ctx.journal, r.ctx.outbox()
    for _ in range(rounds):
        rows = await j.call(j.sync.outbox_due, r.ctx.clock_ms() + 10**12)
        if not rows:
            return
        for row in rows:
            async with fw.hold(row["id"]):
                await fw.step(row["id"])


def test_paid_in_the_app_pays_out_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            task, order_no = await start(r)
            tx = await r.tx()
            await r.until(lambda: (r.ctx.config.receipts_dir / f"{tx.ref}-slip.txt").exists())
            assert "Amount to pay: AED 100.00" in receipt(r, tx, "slip")
            app_pay(r, order_no)
            tx = await task
            assert (tx.state, tx.dispensed, tx.owed) == ("completed", 10000, 0)
            assert rec.payouts == [10000]
            assert remote(r, order_no)["status"] == "PAID_SUCCESS"
            assert r.panel.state == PanelState.DONE

    run(scenario)


def test_not_paid_in_time_is_cancelled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r, timeout_s=1.0)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            task, order_no = await start(r)
            tx = await task
            assert (tx.state, tx.reason) == ("pending", "pay_timeout")
            assert "VOID" in receipt(r, tx, "pending")
            await settle_outbox(r)
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed, tx.dispensed) == ("void", 0, 0)
            assert remote(r, order_no)["status"] == "FAILURE"
            assert rec.payouts == []

    run(scenario)


def test_a_short_payout_refunds_exactly_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
            task, order_no = await start(r)
            app_pay(r, order_no)
            tx = await task
            assert (tx.state, tx.dispensed, tx.owed, tx.reason) == (
                "completed",
                5000,
                0,
                "refunded",
            )
            assert "AED 50.00 refunded to your PayBy account" in receipt(r, tx, "cashout")

    run(scenario)


def test_a_refund_failure_owes_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
            task, order_no = await start(r)
            r.hook("payby/refunds/fail-next", {"originOrderNo": order_no})
            app_pay(r, order_no)
            tx = await task
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 5000, 5000)
            assert (tx.reason or "").startswith("refund_failed:")

    run(scenario)


def test_paid_after_the_kiosk_stopped_waiting_is_refunded_in_full(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r, timeout_s=30.0)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            task, order_no = await start(r)
            await r.until_state(PanelState.WAIT)
            r.press(CANCEL)
            tx = await task
            assert (tx.state, tx.reason) == ("pending", "cancelled_at_kiosk")
            # the customer paid just as the kiosk gave up: the cancel is refused, the order paid
            j = r.ctx.journal
            rows = await j.call(j.sync.outbox_rows, tx.id, queued_only=True)
            assert [row["op"] for row in rows] == ["payby.cancel"]
            app_pay(r, order_no)
            await settle_outbox(r)
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.dispensed, tx.owed, tx.reason) == ("void", 0, 0, "refunded_all")
            assert rec.payouts == []

    run(scenario)


def test_a_lost_create_is_asked_again_and_makes_one_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = Recycler({5000: 4})
            r.hook("payby/faults", {"op": "placeOrder", "mode": "drop_response"})
            task, order_no = await start(r)
            app_pay(r, order_no)
            tx = await task
            assert (tx.state, tx.dispensed) == ("completed", 10000)

    run(scenario)


def test_recovery_after_paid_refunds_rather_than_pays_again(tmp_path: Path) -> None:
    from drivers.validator.base import PowerUpReport
    from kiosk.flows.recovery import recover

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            task, order_no = await start(r)
            task.cancel()  # the daemon dies while the customer pays
            j = r.ctx.journal
            app_pay(r, order_no)
            tx = await r.tx()
            tx = await j.call(j.sync.transition, tx.id, "paid")
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert tx.state == "refunding"
            await settle_outbox(r)
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.dispensed, tx.owed) == ("void", 0, 0)
            assert rec.payouts == []

    run(scenario)
