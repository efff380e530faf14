"""PayBy refunds after the journey: a technician's ``kiosk refund REF [--amount A]`` (what is
owed by default, a part, the crypto refund of a BUSD order, the same refund twice, the
refusals), and the network timing out around the order's reads, the payout's refund and the
create; afterwards the journal and the sandbox agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.flows import payby_cashout
from kiosk.journal import Tx
from kiosk.money import Money
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler
from tests.flows.test_payby_cashout import app_pay, fast, receipt, remote, settle_outbox, start
from tests.test_daemon_events import _daemon


async def owed_half(r: Rig) -> tuple[Tx, str]:
    """A cash-out of AED 100.00 that paid AED 50.00 and whose refund failed: AED 50.00 owed."""
    fast(r)
    r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
    task, order_no = await start(r)
    r.hook("payby/refunds/fail-next", {"originOrderNo": order_no})
    app_pay(r, order_no)
    tx = await task
    assert (tx.state, tx.owed) == ("owed", 5000)
    return tx, order_no


def refunded(r: Rig, order_no: str) -> str:
    """What the sandbox says it refunded of the order, as the kiosk prints money."""
    amount = remote(r, order_no)["refundedAmount"]
    return str(Money.from_decimal(str(amount["amount"]), amount["currency"]))


def test_a_technician_refunds_what_is_owed_and_the_liability_is_settled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx, order_no = await owed_half(r)
            reply = await payby_cashout.refund(r.ctx, tx, None, "ana")
            assert reply["status"] == "refunded"
            assert (reply["amount"], reply["owed"]) == ("AED 50.00", "AED 0.00")
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed) == ("owed", 0)
            (row,) = await j.call(j.sync.liabilities, open_only=False)
            assert row["status"] == "settled" and "ana" in row["settled_note"]
            assert "AED 50.00 refunded to your PayBy account" in receipt(r, tx, "refund")
            assert refunded(r, order_no) == "AED 50.00"  # the journal and the sandbox agree

    run(scenario)


def test_a_partial_refund_settles_and_owes_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx, order_no = await owed_half(r)
            reply = await payby_cashout.refund(r.ctx, tx, "20.00", "ana")
            assert (reply["status"], reply["owed"]) == ("refunded", "AED 30.00")
            j = r.ctx.journal
            rows = await j.call(j.sync.liabilities, open_only=False)
            assert [(x["amount"], x["status"]) for x in rows] == [(5000, "settled"), (3000, "open")]
            assert refunded(r, order_no) == "AED 20.00"
            again = await payby_cashout.refund(r.ctx, tx, None, "ana")  # the rest, a new key
            assert (again["refund_no"], again["owed"]) == (f"{tx.ref}-refund-t2", "AED 0.00")
            assert refunded(r, order_no) == "AED 50.00"
            with pytest.raises(ValueError, match=r"at most AED 50\.00"):
                await payby_cashout.refund(r.ctx, tx, "50.01", "ana")

    run(scenario)


def test_the_same_refund_sent_twice_refunds_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx, order_no = await owed_half(r)
            r.hook("payby/faults", {"op": "refund", "mode": "drop_response", "count": 1})
            reply = await payby_cashout.refund(r.ctx, tx, None, "ana")
            # the answer was lost: the query finds the refund, or it is sent again (same key)
            if reply["status"] == "pending":
                await settle_outbox(r)
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert tx.owed == 0
            assert refunded(r, order_no) == "AED 50.00"
            (eff,) = [
                e
                for e in await j.call(j.sync.effects, tx.id, kind="refund")
                if "technician" in e.request
            ]
            assert eff.status == "done"

    run(scenario)


def test_a_technician_refund_that_fails_leaves_the_liability_open(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx, order_no = await owed_half(r)
            r.hook(
                "payby/refunds/fail-next",
                {"originOrderNo": order_no, "failCode": "62045", "failDes": "balance too low"},
            )
            reply = await payby_cashout.refund(r.ctx, tx, None, "ana")
            assert (reply["status"], reply["why"], reply["owed"]) == (
                "failed",
                "62045",
                "AED 50.00",
            )
            j = r.ctx.journal
            (row,) = await j.call(j.sync.liabilities)
            assert row["status"] == "open"
            assert refunded(r, order_no) == "AED 0.00"

    run(scenario)


def test_a_busd_order_gets_the_crypto_refund(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j, payby = r.ctx.journal, r.ctx.client("payby")
            tx = await j.call(j.sync.begin, "payby_cashout", currency="BUSD")
            due = 12_345_678_901  # BUSD 123.45678901
            order, _ = await payby.place_order(
                f"{tx.ref}-order",
                "Cash out",
                Money.of(due, "BUSD"),
                expired_time_ms=r.ctx.clock_ms() + 600_000,
                scene="DYNQR",
            )
            app_pay(r, order.order_no)
            for state, fields in (
                ("creating", {"amount_due": due}),
                ("waiting", {"provider_ref": order.order_no}),
                ("paid", {}),
                ("dispensing", {}),
            ):
                tx = await j.call(j.sync.transition, tx.id, state, **fields)
            tx, _ = await j.call(
                j.sync.decide, tx.id, "owed", owe=[(due, "refund_failed:62002")], reason="x"
            )
            reply = await payby_cashout.refund(r.ctx, tx, "100.00000001", "ana")
            assert (reply["status"], reply["amount"]) == ("refunded", "BUSD 100.00000001")
            assert reply["owed"] == "BUSD 23.45678900"
            assert refunded(r, order.order_no) == "BUSD 100.00000001"

    run(scenario)


def test_refusals_say_why_and_send_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = Recycler({5000: 4})
            task, order_no = await start(r)
            tx = await r.tx()
            with pytest.raises(ValueError, match="still waiting"):
                await payby_cashout.refund(r.ctx, tx, "1.00", "ana")
            app_pay(r, order_no)
            tx = await task
            assert tx.state == "completed"
            with pytest.raises(ValueError, match="nothing is owed"):
                await payby_cashout.refund(r.ctx, tx, None, "ana")
            for bad in ("0", "-1", "1.001", "abc", "1e3"):
                with pytest.raises(ValueError):
                    await payby_cashout.refund(r.ctx, tx, bad, "ana")
            assert refunded(r, order_no) == "AED 0.00"
            # through the daemon's admin socket: a journey with nothing to refund, no such ref
            d, _, _ = _daemon(r)
            handlers = d._admin_handlers(r.ctx)
            with pytest.raises(ValueError, match="no transaction"):
                await handlers["refund"]({"cmd": "refund", "ref": "NOPE"})
            with pytest.raises(ValueError, match="expected"):
                await handlers["refund"]({"cmd": "refund", "ref": tx.ref, "amount": 5})
            reply = await handlers["refund"]({"cmd": "refund", "ref": tx.ref, "amount": "5.00"})
            assert reply["status"] == "refunded"  # a complaint: a technician's decision
            assert refunded(r, order_no) == "AED 5.00"

    run(scenario)


def test_reads_timing_out_while_polling_still_pay_out_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            task, order_no = await start(r)
            r.hook("payby/faults", {"op": "getOrder", "mode": "drop_response", "count": 3})
            app_pay(r, order_no)
            tx = await task
            assert (tx.state, tx.dispensed) == ("completed", 10000)
            assert rec.payouts == [10000]

    run(scenario)


def test_a_refund_timing_out_after_a_short_payout_is_settled_by_the_query(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
            task, order_no = await start(r)
            r.hook("payby/faults", {"op": "refund", "mode": "drop_response", "count": 5})
            r.hook("payby/faults", {"op": "getRefund", "mode": "error_500", "count": 5})
            app_pay(r, order_no)
            tx = await task
            if tx.state == "pending":  # the customer left; the outbox follows the refund
                await r.ctx.journal.call(r.ctx.journal.sync.get, tx.id)
                r.hook("payby/faults", {"clear": True})
                await settle_outbox(r)
                j = r.ctx.journal
                tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.dispensed, tx.owed) == ("completed", 5000, 0)
            assert refunded(r, order_no) == "AED 50.00"  # once, whatever was lost

    run(scenario)


def test_both_creates_lost_prints_no_qr_and_nobody_can_pay(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            r.hook("payby/faults", {"op": "placeOrder", "mode": "drop_response", "count": 2})
            tx = await payby_cashout.PayByCashOut(r.ctx, Money.of(10000, "AED")).run()
            assert (tx.state, tx.reason) == ("refused", "order_unconfirmed")
            assert not (r.ctx.config.receipts_dir / f"{tx.ref}-slip.txt").exists()
            assert rec.payouts == []

    run(scenario)


def test_a_cancel_refused_as_order_paid_refunds_at_once_even_when_reads_fail(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            fast(r, timeout_s=0.6)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            task, order_no = await start(r)
            app_pay(r, order_no)  # paid just as the kiosk stops waiting…
            r.hook("payby/faults", {"op": "getOrder", "mode": "error_500", "count": 50})
            tx = await task
            assert (tx.state, tx.reason) == ("pending", "pay_timeout")
            # …PayBy's signed ORDER_PAID to the cancel is enough: no read needed
            await settle_outbox(r, rounds=3)
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.reason, tx.owed, rec.payouts) == ("void", "refunded_all", 0, [])
            assert refunded(r, order_no) == "AED 100.00"

    run(scenario)
