"""The money rules as mechanisms (issue 9's findings, each a test that failed before):

1. owing is one commit: the liability, the state and the receipt together; recovery owes once;
2. a pay request still in flight is never settled as not paid;
3. an HTTP 429 or an unsigned error head after sending never decides the outcome;
4. recovery never waits on the provider (tests/flows/test_recovery.py);
5. receipts around a crash: printed once, reprints say COPY, and say when a debt was settled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.validator.base import Note, PowerUpReport
from kiosk import receipts
from kiosk.flows.cashout import end_payout
from kiosk.flows.payby_cashin import finish_paid, owe
from kiosk.flows.recovery import recover
from kiosk.journal import Journal
from tests.flows.recovery_helpers import at_state
from tests.flows.rig import Rig, rig, run
from tests.flows.test_payby_cashin import start

NOTE = Note(channel=2, value=5000, currency="AED")


async def liabilities(r: Rig, tx_id: int) -> list[int]:
    j = r.ctx.journal
    return [row["amount"] for row in await j.call(j.sync.liabilities) if row["tx_id"] == tx_id]


# --- 1. owing is one commit --------------------------------------------------------------------


def test_a_crash_inside_the_owe_decision_leaves_nothing_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await at_state(r, "accepting", credited=10000)

            def power_cut(*args: object, **kwargs: object) -> None:
                raise RuntimeError("power cut between the liability and the state")

            with monkeypatch.context() as m:
                m.setattr(Journal, "transition", power_cut)
                with pytest.raises(RuntimeError):
                    await owe(r.ctx, tx, "ended_by_cancel")
            j = r.ctx.journal
            again = await j.call(j.sync.get, tx.id)
            assert (again.state, again.owed) == ("accepting", 0)  # all or nothing
            assert await liabilities(r, tx.id) == []
            assert not await j.call(j.sync.receipts, tx.id)
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert (tx.state, tx.owed) == ("owed", 10000)
            assert await liabilities(r, tx.id) == [10000]

    run(scenario)


def test_recovery_twice_owes_an_unconfirmed_note_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await at_state(r, "accepting", credited=10000, in_flight=5000)
            await recover(r.ctx, PowerUpReport())
            (tx,) = await r.ctx.journal.call(r.ctx.journal.sync.transactions)
            assert (tx.state, tx.owed) == ("owed", 15000)
            assert await recover(r.ctx, PowerUpReport()) == []  # nothing left open
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert tx.owed == 15000 and sorted(await liabilities(r, tx.id)) == [5000, 10000]
            receipt = (r.ctx.config.receipts_dir / f"{tx.ref}-owed.txt").read_text()
            assert "OWED TO YOU: AED 150.00" in receipt  # not 200.00

    run(scenario)


def test_owing_an_unconfirmed_note_is_idempotent_per_note(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await at_state(r, "accepting", credited=0, in_flight=5000)
            j = r.ctx.journal
            (eff,) = await j.call(j.sync.effects, tx.id, kind="stack")
            await j.call(j.sync.outcome, eff.id, "unknown")
            for _ in range(3):  # the same decision asked again owes nothing more
                await j.call(j.sync.decide, tx.id, None, owe_unconfirmed=True)
            assert await liabilities(r, tx.id) == [5000]

    run(scenario)


def test_a_short_payout_is_owed_in_the_same_commit_as_its_outcome(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j = r.ctx.journal
            tx = await j.call(j.sync.begin, "local_cashout", currency="AED", amount_due=7000)
            tx = await j.call(j.sync.transition, tx.id, "dispensing")
            eff = await j.call(j.sync.intent, tx.id, "payout", f"{tx.ref}-payout", amount=7000)
            from kiosk.journal import Outcome

            outcome = Outcome(eff.id, "failed", dispensed=5000, outcome={"dispensed": 5000})
            tx = await end_payout(r.ctx, tx, 5000, "stopped", outcome=outcome)
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 5000, 2000)
            steps = [e for e in await j.call(j.sync.events, tx.id)]
            kinds = [e["kind"] for e in steps]
            # outcome, liability, transition and receipt: consecutive events of one commit
            i = kinds.index("payout.failed")
            assert kinds[i : i + 4] == [
                "payout.failed",
                "liability",
                "transition",
                "receipt.queued",
            ]
            assert await recover(r.ctx, PowerUpReport()) == []
            assert (await j.call(j.sync.get, tx.id)).owed == 2000

    run(scenario)


# --- 2. a pay still in flight ------------------------------------------------------------------


def test_a_pay_held_past_the_timeout_is_pending_never_owed_then_paid(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("50.00")
            # The first delivery is held by a slow network past the client's 2 s timeout and
            # lands later; every re-send meanwhile fails with a 500 (nothing applied).
            r.hook("payby/faults", {"op": "payOrder", "mode": "hold", "delay_s": 3.5})
            r.hook("payby/faults", {"op": "payOrder", "mode": "error_500", "count": 50})
            task = await start(r, order["tokenUrl"])
            await r.insert(5000)
            tx = await task
            assert (tx.state, tx.owed) == ("pending", 0)  # getOrder said CREATED: not decisive
            assert (r.ctx.config.receipts_dir / f"{tx.ref}-pending.txt").exists()
            assert await liabilities(r, tx.id) == []
            await asyncio.sleep(2.0)  # the held request lands: PayBy pays the order
            assert r.hook(f"payby/orders/{order['orderNo']}")["status"] == "PAID_SUCCESS"
            j = r.ctx.journal
            (row,) = await j.call(j.sync.outbox_rows, tx.id)
            forwarder = r.ctx.outbox()
            async with forwarder.hold(row["id"]):
                await forwarder.step(row["id"])
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed) == ("completed", 0)
            assert r.balance() == "950.00"  # debited once
            assert await liabilities(r, tx.id) == []

    run(scenario)


# --- 3. errors after sending -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["http_429", "unsigned_402", "unsigned_404", "drop_response"])
def test_an_error_after_sending_never_decides_the_outcome(tmp_path: Path, mode: str) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("50.00")
            r.hook("payby/faults", {"op": "payOrder", "mode": mode})  # applied, then that reply
            task = await start(r, order["tokenUrl"])
            await r.insert(5000)
            tx = await task
            assert (tx.state, tx.owed) == ("completed", 0)  # paid at PayBy: never owed too
            assert r.balance() == "950.00"
            j = r.ctx.journal
            (row,) = await j.call(j.sync.outbox_rows, tx.id)
            assert row["result"]["in_doubt"] is True and row["status"] == "done"

    run(scenario)


def test_unsigned_errors_for_good_leave_the_pay_pending_not_owed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("50.00")
            r.hook("payby/faults", {"op": "payOrder", "mode": "error_500", "count": 50})
            r.hook("payby/faults", {"op": "getOrder", "mode": "unsigned_404", "count": 50})
            task = await start(r, order["tokenUrl"])
            await r.insert(5000)
            tx = await task
            assert (tx.state, tx.owed) == ("pending", 0)
            r.hook("payby/faults", {"clear": True})

    run(scenario)


# --- 5. receipts around a crash ----------------------------------------------------------------


def test_a_receipt_queued_before_a_crash_is_printed_once_after_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await at_state(r, "paid", credited=15000)
            j = r.ctx.journal
            doc = receipts.for_kiosk(
                r.ctx.config, tx, "cashin", provider_name="PayBy", status_text="PAID"
            )
            await j.call(j.sync.queue_receipt, tx.id, "cashin", receipts.to_json(doc))
            # -- the crash: the receipt never reached the printer --
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert tx.state == "completed"
            assert await receipts.print_left_at_start(j, r.printer) == 1
            assert await receipts.print_left_at_start(j, r.printer) == 0
            rows = await j.call(j.sync.receipts, tx.id)
            assert [(x["kind"], x["status"]) for x in rows] == [("cashin", "printed")]

    run(scenario)


def test_a_receipt_cut_short_mid_print_comes_out_as_a_copy(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await at_state(r, "paid", credited=15000)
            j = r.ctx.journal
            doc = receipts.for_kiosk(
                r.ctx.config, tx, "cashin", provider_name="PayBy", status_text="PAID"
            )
            rid = await j.call(j.sync.queue_receipt, tx.id, "cashin", receipts.to_json(doc))
            await j.call(j.sync.receipt_printing, rid)  # -- the crash, mid-print --
            await finish_paid(r.ctx, tx)  # recovery of `paid`: no second receipt queued
            assert len(await j.call(j.sync.receipts, tx.id)) == 1
            assert await receipts.print_left_at_start(j, r.printer) == 1
            text = (r.ctx.config.receipts_dir / f"{tx.ref}-cashin-copy.txt").read_text()
            assert "*** COPY ***" in text

    run(scenario)


def test_a_reprint_says_copy_and_says_when_the_debt_was_settled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            from kiosk import technician

            tx = await at_state(r, "accepting", credited=10000)
            tx = await owe(r.ctx, tx, "ended_by_cancel")
            j = r.ctx.journal
            (row,) = await j.call(j.sync.liabilities)
            await j.call(j.sync.settle_liability, row["id"], "cash refunded by T-7")
            await technician.reprint(r.ctx, tx.ref)
            text = (r.ctx.config.receipts_dir / f"{tx.ref}-owed-copy.txt").read_text()
            assert "*** COPY ***" in text
            assert "SETTLED" in text and "cash refunded" in text

    run(scenario)


# --- offline -----------------------------------------------------------------------------------


def test_a_journey_needing_an_unreachable_provider_is_refused_before_any_note(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("50.00")
            r.ctx.reachability.record("payby", False)  # the last call got nothing back
            tx = await (await start(r, order["tokenUrl"]))
            assert (tx.state, tx.reason) == ("refused", "provider_offline")
            assert r.validator.state()["enabled"] is False  # no note could go in
            assert r.sleeps == []  # refused at once, not after timeouts
            r.hook("clock", {"advance_s": 61})  # past the hold: the next customer may try
            task = await start(r, order["tokenUrl"])
            await r.insert(5000)
            assert (await task).state == "completed"
            assert r.ctx.reachability.status()["payby"]["reachable"] is True

    run(scenario)


async def _allow_offline(r: Rig, per_tx: int, outstanding: int) -> None:
    import dataclasses

    from kiosk.config import OfflineConfig

    policy = OfflineConfig(cashin_max_per_tx=per_tx, cashin_max_outstanding=outstanding)
    r.ctx.config = dataclasses.replace(r.ctx.config, offline=policy)


@pytest.mark.parametrize(
    ("amount", "ends", "owed"), [("50.00", "completed", 0), ("70.00", "owed", 5000)]
)
def test_offline_cash_in_within_the_limits_is_pending_then_settled(
    tmp_path: Path, amount: str, ends: str, owed: int
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await _allow_offline(r, per_tx=10000, outstanding=20000)
            order = r.order(amount)
            r.ctx.reachability.record("payby", False)  # PayBy unreachable
            task = await start(r, order["tokenUrl"])
            await r.insert(5000)
            r.press(5)  # confirm: that is the amount
            tx = await task
            assert (tx.state, tx.reason, tx.credited) == ("pending", "offline", 5000)
            assert (r.ctx.config.receipts_dir / f"{tx.ref}-pending.txt").exists()
            j = r.ctx.journal
            forwarder = r.ctx.outbox()
            for _ in range(2):  # PayBy answers: the order is read, then (if payable) paid
                for row in await j.call(j.sync.outbox_rows, tx.id, queued_only=True):
                    async with forwarder.hold(row["id"]):
                        await forwarder.step(row["id"])
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed) == (ends, owed)
            paid = r.hook(f"payby/orders/{order['orderNo']}")["status"] == "PAID_SUCCESS"
            assert paid is (ends == "completed")
            assert r.balance() == ("950.00" if paid else "1000.00")

    run(scenario)


def test_offline_cash_in_is_refused_beyond_the_outstanding_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await _allow_offline(r, per_tx=10000, outstanding=5000)
            r.ctx.reachability.record("payby", False)
            task = await start(r, r.order("50.00")["tokenUrl"])
            await r.insert(5000)  # the cap: the journey ends by itself
            assert (await task).state == "pending"
            tx = await (await start(r, r.order("50.00")["tokenUrl"]))
            assert (tx.state, tx.reason) == ("refused", "provider_offline")  # 50.00 held: full

    run(scenario)
