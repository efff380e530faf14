"""The Rapyd journeys end to end against the sandbox: success, invalid and expired OTP, not
enough funds, a customer's cancel, a network timeout before and after Rapyd committed, a payout
that fails after the withdrawal (reversed), a failing close (retried); afterwards the journal
and the sandbox's ledger agree and every session is closed."""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path
from typing import Any

from drivers.panel import PanelState
from kiosk.flows.rapyd_cashin import RapydCashIn
from kiosk.flows.rapyd_cashout import RapydCashOut
from kiosk.journal import Tx
from kiosk.money import Money
from kiosk.providers.rapyd.codes import RapydCashIn as CashInRequest
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler

CONFIRM, CANCEL = 5, 6
PHONE = "+971501234567"


def wallet(r: Rig, balance: int, phone: str = PHONE) -> dict[str, Any]:
    return r.hook(  # type: ignore[no-any-return]
        "rapyd/wallets",
        {"phone_number": phone, "accounts": [{"currency": "AED", "balance": balance}]},
    )


def otp(r: Rig, phone: str = PHONE) -> str:
    return str(r.hook("rapyd/otps", {"phone_number": phone})["otp"])


def balance(r: Rig, phone: str = PHONE) -> int:
    got = r.hook(f"rapyd/wallets/{urllib.parse.quote(phone)}")
    (account,) = [a for a in got["accounts"] if a["currency"] == "AED"]
    return int(account["balance"])


def fault(r: Rig, op: str, mode: str, count: int = 1) -> None:
    r.hook("rapyd/faults", {"op": op, "mode": mode, "count": count})


def unclosed(r: Rig) -> list[Any]:
    return list(r.hook("rapyd/sessions")["unclosed"])


async def cash_out(r: Rig, code: str, amount: int | None = 10000, phone: str = PHONE) -> Tx:
    money = None if amount is None else Money.of(amount, "AED")
    return await RapydCashOut(r.ctx, code, phone, money).run()


def receipt(r: Rig, tx: Tx, kind: str) -> str:
    """The receipt's text with its line wrapping undone."""
    return " ".join((r.ctx.config.receipts_dir / f"{tx.ref}-{kind}.txt").read_text().split())


async def settle_outbox(r: Rig, *, rounds: int = 30, advance_s: int = 0) -> None:
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


async def agree(r: Rig, start: int) -> None:
    """Every transaction closed; the wallet moved by exactly what the journal says: a cash-out
    debits what it paid out (the rest reversed) or owes it; a cash-in credits what it took or
    owes it; and no session is left open."""
    j = r.ctx.journal
    out = inn = 0
    for tx in await j.call(j.sync.transactions, limit=1000):
        assert tx.closed, (tx.ref, tx.state)
        if tx.journey == "rapyd_cashout":
            out += tx.dispensed + tx.owed if tx.state != "refused" else 0
        elif tx.journey == "rapyd_cashin" and tx.state == "completed":
            inn += tx.credited
    assert balance(r) == start - out + inn
    assert unclosed(r) == []


# --- cash-out ------------------------------------------------------------------------------


def test_cash_out_pays_and_closes_the_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            wallet(r, 50000)
            tx = await cash_out(r, otp(r))
            assert (tx.state, tx.dispensed, tx.owed) == ("completed", 10000, 0)
            assert rec.payouts == [10000] and balance(r) == 40000
            assert "PAID OUT" in receipt(r, tx, "cashout") and PHONE not in receipt(
                r, tx, "cashout"
            )
            assert r.panel.state == PanelState.DONE
            await settle_outbox(r)
            await agree(r, 50000)

    run(scenario)


def test_invalid_and_expired_otps_are_declined(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            wallet(r, 50000)
            tx = await cash_out(r, "000000")
            assert (tx.state, tx.reason) == ("refused", "invalid_otp")
            code = otp(r)
            r.hook("clock", {"advance_s": 31})  # the OTP lives 30 seconds
            tx = await cash_out(r, code)
            assert (tx.state, tx.reason) == ("refused", "otp_expired")
            assert "expired" in receipt(r, tx, "declined")
            assert rec.payouts == []
            await settle_outbox(r)
            await agree(r, 50000)

    run(scenario)


def test_not_enough_funds_is_declined_before_any_withdraw(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            wallet(r, 5000)
            tx = await cash_out(r, otp(r))
            assert (tx.state, tx.reason) == ("refused", "insufficient_funds")
            assert "Not enough funds" in receipt(r, tx, "declined")
            await settle_outbox(r)
            await agree(r, 5000)

    run(scenario)


def test_a_customer_cancel_while_choosing_opens_no_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            wallet(r, 50000)
            task = asyncio.create_task(cash_out(r, otp(r), None))
            await r.until_state(PanelState.CHOOSE)
            r.press(CANCEL)
            tx = await task
            assert (tx.state, tx.reason) == ("refused", "cancel")
            assert r.hook("rapyd/sessions") == {"unclosed": [], "closed": 0}
            await agree(r, 50000)

    run(scenario)


def test_timeout_before_rapyd_committed_is_replayed_under_the_same_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            wallet(r, 50000)
            fault(r, "withdraw", "error_500", count=1)  # not applied at Rapyd
            tx = await cash_out(r, otp(r))
            # the replay under the same key performs it once: paid out, debited once
            assert (tx.state, tx.dispensed) == ("completed", 10000)
            assert rec.payouts == [10000]
            await settle_outbox(r)
            await agree(r, 50000)

    run(scenario)


def test_timeout_after_rapyd_committed_pays_out_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            wallet(r, 50000)
            fault(r, "withdraw", "drop_response")  # debited at Rapyd, the answer lost
            tx = await cash_out(r, otp(r))
            assert (tx.state, tx.dispensed) == ("completed", 10000)
            assert rec.payouts == [10000] and balance(r) == 40000
            await settle_outbox(r)
            await agree(r, 50000)

    run(scenario)


def test_rapyd_unreachable_after_the_withdraw_pends_then_reverses_all(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = rec = Recycler({5000: 4})
            wallet(r, 50000)
            fault(r, "withdraw", "drop_response", count=1000)
            tx = await cash_out(r, otp(r))
            assert tx.state == "pending" and rec.payouts == []
            assert "PENDING" in receipt(r, tx, "pending")
            assert balance(r) == 40000  # debited, nothing paid out yet
            r.hook("rapyd/faults", {"clear": True})
            await settle_outbox(r)
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.dispensed, tx.owed) == ("void", 0, 0)
            assert balance(r) == 50000 and rec.payouts == []
            await agree(r, 50000)

    run(scenario)


def test_a_payout_that_stops_short_reverses_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
            wallet(r, 50000)
            tx = await cash_out(r, otp(r))
            assert (tx.state, tx.dispensed, tx.owed, tx.reason) == (
                "completed",
                5000,
                0,
                "reversed",
            )
            assert balance(r) == 45000
            assert "went back to your Rapyd wallet" in receipt(r, tx, "cashout")
            await settle_outbox(r)
            await agree(r, 50000)

    run(scenario)


def test_a_reversal_refused_for_good_owes_the_rest(tmp_path: Path) -> None:
    from kiosk.providers.rapyd.client import Session

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4}, stop_after=1)
            wallet(r, 50000)
            fault(r, "reversal", "error_500", count=1000)
            tx = await cash_out(r, otp(r))
            assert tx.state == "pending" and tx.dispensed == 5000
            # Rapyd ends the session behind the kiosk's back: the reversal can never land
            (s,) = unclosed(r)
            await r.ctx.client("rapyd").logout(Session(s["token_id"], s["operation_id"], PHONE))
            r.hook("rapyd/faults", {"clear": True})
            await settle_outbox(r)  # a closed session takes nothing: final, no wait
            j = r.ctx.journal
            tx = await j.call(j.sync.get, tx.id)
            assert (tx.state, tx.dispensed, tx.owed) == ("owed", 5000, 5000)
            assert balance(r) == 40000  # debited in full: half paid out, half owed
            await agree(r, 50000)

    run(scenario)


def test_a_failing_close_is_retried_from_the_outbox(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 4})
            wallet(r, 50000)
            fault(r, "logout", "error_500", count=2)
            tx = await cash_out(r, otp(r))
            assert tx.state == "completed"
            assert len(unclosed(r)) == 1
            await settle_outbox(r)
            assert unclosed(r) == []
            await agree(r, 50000)

    run(scenario)


# --- cash-in -------------------------------------------------------------------------------


async def cash_in(r: Rig, notes: list[int], codes: list[str]) -> Tx:
    task = asyncio.create_task(RapydCashIn(r.ctx, CashInRequest()).run())
    await r.until(lambda: r.panel.state == PanelState.INSERT_NOTES or task.done())
    for value in notes:
        await r.insert(value)
    r.press(CONFIRM)
    await r.until(lambda: r.panel.state == PanelState.READY or task.done())
    for code in codes:
        r.codes.put_nowait(code)
    return await task


def otp_envelope(code: str, phone: str = PHONE) -> str:
    return f"kiosk:cashin?v=1&provider=rapyd&otp={code}&phone={urllib.parse.quote(phone)}"


def test_cash_in_deposits_after_the_notes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            wallet(r, 1000)
            tx = await cash_in(r, [5000, 10000], [otp_envelope(otp(r))])
            assert (tx.state, tx.credited, tx.owed) == ("completed", 15000, 0)
            assert balance(r) == 16000
            assert "PAID IN" in receipt(r, tx, "cashin")
            await settle_outbox(r)
            await agree(r, 1000)

    run(scenario)


def test_cash_in_takes_a_new_otp_after_a_wrong_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            wallet(r, 0)
            tx = await cash_in(r, [5000], [otp_envelope("111111"), otp_envelope(otp(r))])
            assert (tx.state, tx.credited) == ("completed", 5000)
            assert balance(r) == 5000

    run(scenario)


def test_cash_in_without_an_otp_leaves_the_cash_owed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            wallet(r, 0)
            task = asyncio.create_task(RapydCashIn(r.ctx, CashInRequest()).run())
            await r.until_state(PanelState.INSERT_NOTES)
            await r.insert(5000)
            r.press(CONFIRM)
            await r.until_state(PanelState.READY)
            r.press(CANCEL)
            tx = await task
            assert (tx.state, tx.owed) == ("owed", 5000)
            assert "NOT PAID" in receipt(r, tx, "owed")
            assert balance(r) == 0

    run(scenario)


def test_cash_in_deposit_in_doubt_is_replayed_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            wallet(r, 0)
            fault(r, "deposit", "drop_response")
            tx = await cash_in(r, [5000], [otp_envelope(otp(r))])
            assert (tx.state, tx.owed) == ("completed", 0)
            assert balance(r) == 5000  # credited once
            await settle_outbox(r)
            await agree(r, 0)

    run(scenario)


def test_a_start_code_with_an_otp_is_refused_before_any_note(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await RapydCashIn(r.ctx, CashInRequest("123456", PHONE)).run()
            assert (tx.state, tx.reason, tx.credited) == ("refused", "otp_too_early", 0)

    run(scenario)
