"""The Paysera journeys end to end against the sandbox: every scenario of the seed (successful
cash-out, invalid code, insufficient funds, expired code, cancelled transaction, network
timeout before and after Paysera committed), the cash-in, and the journal agreeing with the
sandbox's ledger afterwards (what the kiosk paid or owes is exactly what the wallet lost)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from drivers.panel import PanelState
from kiosk.flows import amount, paysera_cashin, paysera_cashout
from kiosk.flows.paysera_cashout import PayseraCashOut
from kiosk.flows.recovery import recover
from kiosk.journal import Tx
from kiosk.money import Money
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler

CONFIRM, CANCEL = 5, 6


def wallet(r: Rig, balance: int) -> dict[str, Any]:
    return r.hook("paysera/wallets", {"currency": "AED", "balance": balance})  # type: ignore[no-any-return]


def code_for(r: Rig, w: dict[str, Any], **extra: Any) -> str:
    return str(r.hook("paysera/codes", {"wallet_id": w["wallet_id"], **extra})["code"])


def balance(r: Rig, w: dict[str, Any]) -> tuple[int, int]:
    got = r.hook(f"paysera/wallets/{w['wallet_id']}")
    return got["balance"], got["held"]


def fault(r: Rig, op: str, mode: str, count: int = 1) -> None:
    r.hook("paysera/faults", {"op": op, "mode": mode, "count": count})


async def cash_out(r: Rig, code: str, amount_minor: int | None = 10000) -> Tx:
    money = None if amount_minor is None else Money.of(amount_minor, "AED")
    return await PayseraCashOut(r.ctx, code, money).run()


def receipt(r: Rig, tx: Tx, kind: str) -> str:
    return (r.ctx.config.receipts_dir / f"{tx.ref}-{kind}.txt").read_text()


async def sandbox_tx(r: Rig, tx: Tx) -> dict[str, Any]:
    return r.hook(f"paysera/transactions/{tx.provider_ref}")  # type: ignore[no-any-return]


async def agree(r: Rig) -> None:
    """The journal and the sandbox's ledger agree on every Paysera transaction: confirmed at
    Paysera ⇔ the customer got it (paid out or credited) or is owed exactly what is missing;
    not confirmed ⇔ nothing moved (a cash-out paid and owes nothing; a cash-in's cash is owed)."""
    j = r.ctx.journal
    for tx in await j.call(j.sync.transactions, limit=1000):
        remote = r.hook(f"paysera/transactions/{tx.provider_ref}") if tx.provider_ref else None
        confirmed = remote is not None and remote["status"] == "confirmed"
        assert tx.closed, (tx.ref, tx.state)
        if tx.journey == "paysera_cashout":
            if confirmed:
                assert (
                    tx.dispensed + tx.owed
                    == tx.amount_due
                    == sum(p["price"] for p in remote["payments"])
                ), tx
            else:
                assert (tx.dispensed, tx.owed) == (0, 0), tx
        elif tx.journey == "paysera_cashin":
            if confirmed:
                assert (tx.state, tx.owed) == ("completed", 0), tx
                assert sum(p["price"] for p in remote["payments"]) == tx.credited
            else:
                assert tx.owed == tx.credited, tx


async def settle_outbox(r: Rig, *, rounds: int = 20, advance_s: int = 0) -> None:
    """Run the outbox's due rows (moving the sandbox clock on ``advance_s`` each round)."""
    j, fw = r.ctx.journal, r.ctx.outbox()
    for _ in range(rounds):
        if advance_s:
            r.hook("clock", {"advance_s": advance_s})
        rows = await j.call(j.sync.outbox_due, r.ctx.clock_ms() + 10**9)
        if not rows:
            return
        for row in rows:
            async with fw.hold(row["id"]):
                await fw.step(row["id"])


# --- the seed's scenarios ----------------------------------------------------------------------


def test_successful_cash_out_pays_once_and_the_ledger_agrees(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            w = wallet(r, 50000)
            tx = await cash_out(r, code_for(r, w))
            assert (tx.state, tx.dispensed, tx.owed) == ("completed", 10000, 0)
            assert rec.payouts == [10000]
            assert balance(r, w) == (40000, 0)
            assert (await sandbox_tx(r, tx))["status"] == "confirmed"
            text = receipt(r, tx, "cashout")
            assert "PAID OUT" in text and tx.provider_ref in text and "AED 100.00" in text
            assert r.panel.state == PanelState.DONE
            j = r.ctx.journal
            kinds = [e["kind"] for e in await j.call(j.sync.events, tx.id)]
            assert kinds.index("confirm.done") < kinds.index("payout.intent")

            await agree(r)

    run(scenario)


def test_invalid_code_is_declined_and_nothing_moves(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            wallet(r, 50000)
            tx = await cash_out(r, "1" * 28)
            assert (tx.state, tx.reason, tx.owed) == ("refused", "invalid_code", 0)
            assert rec.payouts == []
            text = receipt(r, tx, "declined")
            assert "not accepted" in text and "1" * 28 not in text
            assert r.panel.state == PanelState.REFUSED
            await settle_outbox(r)
            assert (await sandbox_tx(r, tx))["status"] == "revoked"

            await agree(r)

    run(scenario)


def test_insufficient_funds_is_declined(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            w = wallet(r, 5000)
            tx = await cash_out(r, code_for(r, w))
            assert (tx.state, tx.reason) == ("refused", "insufficient_funds")
            assert "Not enough funds" in receipt(r, tx, "declined")
            assert rec.payouts == [] and balance(r, w) == (5000, 0)

            await agree(r)

    run(scenario)


def test_expired_code_is_declined_as_expired(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            w = wallet(r, 50000)
            code = code_for(r, w)
            r.hook("paysera/codes/expire", {"code": code})
            tx = await cash_out(r, code)
            assert (tx.state, tx.reason) == ("refused", "code_expired")
            assert "expired" in receipt(r, tx, "declined")
            assert balance(r, w) == (50000, 0)

            await agree(r)

    run(scenario)


def test_cancelled_while_choosing_creates_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            w = wallet(r, 50000)
            task = asyncio.create_task(cash_out(r, code_for(r, w), None))
            await r.until_state(PanelState.CHOOSE)
            r.press(CANCEL)
            tx = await task
            assert (tx.state, tx.reason, tx.provider_ref) == ("refused", "cancel", None)
            assert "2 presses: AED 100.00" in receipt(r, tx, "choose")
            assert balance(r, w) == (50000, 0)

            await agree(r)

    run(scenario)


def test_preset_chosen_by_presses(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(amount, "QUIET_S", 0.2)

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            w = wallet(r, 50000)
            task = asyncio.create_task(cash_out(r, code_for(r, w), None))
            await r.until_state(PanelState.CHOOSE)
            r.press(CONFIRM)
            await asyncio.sleep(0.05)
            r.press(CONFIRM)  # twice: the second preset, 100.00
            tx = await task
            assert (tx.state, tx.amount_due, tx.dispensed) == ("completed", 10000, 10000)
            assert balance(r, w) == (40000, 0)

            await agree(r)

    run(scenario)


def test_timeout_before_paysera_committed_revokes_and_declines(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            w = wallet(r, 50000)
            fault(r, "confirm", "error_500")  # the confirm never took effect
            tx = await cash_out(r, code_for(r, w))
            assert tx.state == "refused" and tx.reason is not None
            assert tx.reason.startswith("not_confirmed")
            assert rec.payouts == [] and balance(r, w) == (50000, 0)
            assert (await sandbox_tx(r, tx))["status"] == "revoked"
            assert "NOT DONE" in receipt(r, tx, "declined")

            await agree(r)

    run(scenario)


def test_timeout_after_paysera_committed_still_pays_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            w = wallet(r, 50000)
            fault(r, "confirm", "drop_response")  # confirmed at Paysera, the reply lost
            tx = await cash_out(r, code_for(r, w))
            assert (tx.state, tx.dispensed) == ("completed", 10000)
            assert rec.payouts == [10000] and balance(r, w) == (40000, 0)

            await agree(r)

    run(scenario)


def test_paysera_unreachable_after_confirm_sent_pends_then_owes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            w = wallet(r, 50000)
            fault(r, "confirm", "drop_response")
            fault(r, "get", "error_500", count=1000)
            fault(r, "revoke", "error_500", count=1000)
            tx = await cash_out(r, code_for(r, w))
            assert tx.state == "pending" and rec.payouts == []
            assert "PENDING" in receipt(r, tx, "pending")
            r.hook("paysera/faults", {"clear": True})
            await settle_outbox(r)
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            # Paysera took the money once the customer had left: owed in full, never paid out
            assert (tx.state, tx.owed, tx.dispensed) == ("owed", 10000, 0)
            assert balance(r, w) == (40000, 0) and rec.payouts == []

            await agree(r)

    run(scenario)


def test_a_short_payout_owes_exactly_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
            w = wallet(r, 50000)
            tx = await cash_out(r, code_for(r, w))
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 5000, 5000)
            assert balance(r, w) == (40000, 0)
            assert "NOT FULLY PAID" in receipt(r, tx, "owed")

            await agree(r)

    run(scenario)


def test_recycler_that_cannot_pay_refuses_before_anything_is_created(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({2000: 1})
            w = wallet(r, 50000)
            tx = await cash_out(r, code_for(r, w))
            assert (tx.state, tx.reason, tx.provider_ref) == ("refused", "cannot_pay_amount", None)

            await agree(r)

    run(scenario)


def test_limits_and_approval_threshold(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 100})
            w = wallet(r, 500000)
            tx = await cash_out(r, code_for(r, w), 200000)  # cashout_max is 1000.00
            assert (tx.state, tx.reason) == ("refused", "over_limit")
            assert "at most AED 1000.00" in receipt(r, tx, "declined")
            import dataclasses

            p = r.ctx.config.providers["paysera"]
            providers = {**r.ctx.config.providers, "paysera": dataclasses.replace(
                p, approval_above=20000)}  # fmt: skip
            limits = dataclasses.replace(r.ctx.config.limits, approval_timeout_s=0.1)
            r.ctx.config = dataclasses.replace(r.ctx.config, providers=providers, limits=limits)
            tx = await cash_out(r, code_for(r, w), 50000)  # nobody approves (tests/test_limits.py)
            assert (tx.state, tx.reason) == ("refused", "approval_expired")
            assert "approved" in receipt(r, tx, "declined")
            assert balance(r, w) == (500000, 0)

            await agree(r)

    run(scenario)


def test_refused_codes_cool_the_kiosk_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            w = wallet(r, 50000)
            for n in range(3):
                tx = await cash_out(r, str(n) * 28)
                assert tx.reason == "invalid_code"
            tx = await cash_out(r, code_for(r, w))  # a good code, but the kiosk cools down
            assert (tx.state, tx.reason) == ("refused", "too_many_code_attempts")
            j = r.ctx.journal
            assert not await j.call(paysera_cashout.cooling_down, j.sync, 3, time.time() + 601)

            await agree(r)

    run(scenario)


def test_a_code_is_never_used_twice_nor_stored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            w = wallet(r, 50000)
            code = code_for(r, w)
            assert (await cash_out(r, code)).state == "completed"
            again = await cash_out(r, code)
            assert (again.state, again.reason) == ("refused", "code_already_used")
            db = r.ctx.config.journal_path.read_bytes()
            assert code.encode() not in db

            await agree(r)

    run(scenario)


# --- cash-in -----------------------------------------------------------------------------------


async def cash_in(r: Rig, wallet_id: int, notes: list[int]) -> Tx:
    task = asyncio.create_task(paysera_cashin.PayseraCashIn(r.ctx, wallet_id).run())
    await r.until(lambda: r.panel.state == PanelState.INSERT_NOTES or task.done())
    for value in notes:
        await r.insert(value)
    r.press(CONFIRM)
    return await task


def test_cash_in_credits_the_wallet(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = wallet(r, 0)
            tx = await cash_in(r, w["wallet_id"], [5000, 10000])
            assert (tx.state, tx.credited, tx.owed) == ("completed", 15000, 0)
            assert balance(r, w) == (15000, 0)
            assert "PAID IN" in receipt(r, tx, "cashin")

            await agree(r)

    run(scenario)


def test_cash_in_refused_by_paysera_leaves_the_cash_owed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await cash_in(r, 999999, [5000])  # no such wallet
            assert (tx.state, tx.owed) == ("owed", 5000)
            assert "NOT PAID" in receipt(r, tx, "owed")

            await agree(r)

    run(scenario)


def test_cash_in_confirm_lost_is_sent_again_and_credits_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = wallet(r, 0)
            fault(r, "confirm", "error_500", count=2)
            tx = await cash_in(r, w["wallet_id"], [5000])
            assert (tx.state, tx.owed) == ("completed", 0)
            assert balance(r, w) == (5000, 0)

            await agree(r)

    run(scenario)


def test_cash_in_lapsed_unconfirmed_is_owed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = wallet(r, 0)
            fault(r, "confirm", "error_500", count=1000)
            tx = await cash_in(r, w["wallet_id"], [5000])
            assert tx.state == "pending"
            await settle_outbox(r, advance_s=120)
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed) == ("owed", 5000)
            assert balance(r, w) == (0, 0)

            await agree(r)

    run(scenario)


def test_recovery_of_every_open_state_is_local(tmp_path: Path) -> None:
    from drivers.validator.base import PowerUpReport

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j = r.ctx.journal
            a = await j.call(j.sync.begin, "paysera_cashout", currency="AED")
            a = await j.call(j.sync.transition, a.id, "creating", amount_due=5000)
            a = await j.call(j.sync.transition, a.id, "reserving", provider_ref="abc")
            b = await j.call(j.sync.begin, "paysera_cashin", currency="AED")
            b = await j.call(j.sync.transition, b.id, "accepting")
            settled = {t.id: t for t in await recover(r.ctx, PowerUpReport())}
            assert settled[a.id].state == "refused"
            assert settled[b.id].state == "cancelled"
            rows = await j.call(j.sync.outbox_rows, a.id, queued_only=True)
            assert [row["op"] for row in rows] == ["paysera.revoke"]

    run(scenario)


def test_the_background_loop_keeps_off_a_customer_who_waits(tmp_path: Path) -> None:
    from kiosk.flows import paysera_ops

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j, fw = r.ctx.journal, r.ctx.outbox()
            tx = await j.call(j.sync.begin, "paysera_cashout", currency="AED")
            tx = await j.call(j.sync.transition, tx.id, "creating", amount_due=5000)
            tx = await j.call(j.sync.transition, tx.id, "reserving", provider_ref="abc")
            now = r.ctx.clock_ms()
            call = paysera_ops.confirm_call(
                tx, "abc", now_ms=now, created_ms=now, reserve_for_s=120
            )
            with fw.serving(tx.id):
                _, _, row_id = await j.call(j.sync.start_call, tx.id, "confirming", call)
                row = await j.call(j.sync.outbox_row, row_id)
                await fw._background(row)  # what the loop does with a due row
                assert (await j.call(j.sync.outbox_row, row_id))["attempts"] == 0
            await fw._background(row)
            assert (await j.call(j.sync.outbox_row, row_id))["attempts"] >= 1

    run(scenario)


def test_a_confirm_cut_short_by_a_crash_is_void_once_revoked_without_waiting(
    tmp_path: Path,
) -> None:
    """Killed after the confirm's row was committed, before it was sent: recovery never sends
    it; the outbox revokes, and a revoked transaction is final, so the customer's PENDING
    receipt is settled as void at once (not after the reservation's lifetime)."""
    from drivers.validator.base import PowerUpReport
    from kiosk.flows import paysera_ops

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = wallet(r, 50000)
            client, j = r.ctx.client("paysera"), r.ctx.journal
            created = await client.create(Money.of(10000, "AED"), "t", reserve_for_s=120)
            await client.reserve_with_code(created.key, code_for(r, w))
            tx = await j.call(j.sync.begin, "paysera_cashout", currency="AED")
            tx = await j.call(j.sync.transition, tx.id, "creating", amount_due=10000)
            tx = await j.call(j.sync.transition, tx.id, "reserving", provider_ref=created.key)
            now = r.ctx.clock_ms()
            call = paysera_ops.confirm_call(
                tx, created.key, now_ms=now, created_ms=now, reserve_for_s=120
            )
            await j.call(j.sync.start_call, tx.id, "confirming", call)
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert tx.state == "pending"
            await settle_outbox(r)  # the sandbox clock does not move
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.owed) == ("void", 0)
            assert balance(r, w) == (50000, 0)
            assert (await sandbox_tx(r, tx))["status"] == "revoked"

    run(scenario)
