"""``kiosk bench crashpoints``: the invariant checker on hand-made journals, and short sweeps
of SIGKILLs before and after the durable steps of real journeys."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.crashpoints import (
    INVARIANTS,
    JOURNEYS,
    Bench,
    JourneyReport,
    Observed,
    Violation,
    check_invariants,
    rapyd_orphans,
    render_json,
    render_text,
    run_journey,
)
from kiosk.journal import Journal
from kiosk.money import Money
from kiosk.providers.payby.wire import money_out

STORE = "200009990777"
ORDER = "ORD-1"


def _paid_view(total: int = 15000, payer: str = STORE) -> dict[str, Any]:
    return {
        "status": "PAID_SUCCESS",
        "paymentInfo": {"payerMid": payer},
        "totalAmount": money_out(Money.of(total, "AED")),
    }


def _created_view(total: int = 15000) -> dict[str, Any]:
    return {"status": "CREATED", "totalAmount": money_out(Money.of(total, "AED"))}


def _cash_in(journal: Journal, notes: tuple[int, ...] = (10000, 5000)) -> int:
    """A PayBy cash-in that took ``notes`` and sits in ``accepting``."""
    tx = journal.begin("payby_cashin", currency="AED")
    journal.transition(tx.id, "accepting", amount_due=15000, provider_ref=ORDER)
    for i, value in enumerate(notes, start=1):
        eff = journal.intent(tx.id, "stack", f"{tx.ref}-note{i}", amount=value)
        journal.outcome(eff.id, "done", credit=value)
    return tx.id


def _completed(journal: Journal) -> int:
    tx_id = _cash_in(journal)
    journal.transition(tx_id, "paying")
    journal.transition(tx_id, "paid")
    journal.transition(tx_id, "completed")
    return tx_id


def _owed(journal: Journal) -> int:
    tx_id = _cash_in(journal)
    journal.owe(tx_id, 15000, "ended_by_cancel")
    journal.transition(tx_id, "owed")
    return tx_id


def _obs(journal: Journal, **kw: Any) -> Observed:
    fields: dict[str, Any] = {
        "journal": Path(journal.db.conn.execute("PRAGMA database_list").fetchone()[2]),
        "held_after": 15000,
        "wallet_before": 100000,
        "wallet_after": 85000,
        "orders": {ORDER: _paid_view()},
        "store": STORE,
    }
    return Observed(**{**fields, **kw})


def _kinds(found: list[tuple[str, str]]) -> list[str]:
    return sorted(k for k, _ in found)


def test_a_paid_cash_in_holds_every_invariant(journal: Journal) -> None:
    _completed(journal)
    assert check_invariants(_obs(journal)) == []


def test_a_cancel_that_owes_the_notes_holds_every_invariant(journal: Journal) -> None:
    _owed(journal)
    obs = _obs(journal, wallet_after=100000, orders={ORDER: _created_view()})
    assert check_invariants(obs) == []


def test_a_liability_that_does_not_match_owed_is_reported(journal: Journal) -> None:
    tx_id = _owed(journal)
    journal.db.execute("UPDATE transactions SET owed = 5000 WHERE id = ?", [tx_id])
    obs = _obs(journal, wallet_after=100000, orders={ORDER: _created_view()})
    found = check_invariants(obs)
    assert ("liabilities", "KT1-000001: open liabilities 15000 != owed 5000") in found
    assert "unpaid" in _kinds(found)  # owed 5000 of the 15000 taken


def test_cash_owed_twice_is_reported(journal: Journal) -> None:
    tx_id = _owed(journal)
    journal.owe(tx_id, 15000, "interrupted")  # a recovery that owes once more
    obs = _obs(journal, wallet_after=100000, orders={ORDER: _created_view()})
    assert check_invariants(obs) == [
        ("liabilities", "KT1-000001: owed 30000 for 15000 taken, ended owed")
    ]


def test_a_short_payout_must_owe_exactly_the_rest(journal: Journal) -> None:
    tx = journal.begin("local_cashout", currency="AED", amount_due=7000)
    journal.transition(tx.id, "dispensing")
    eff = journal.intent(tx.id, "payout", f"{tx.ref}-payout", amount=7000)
    journal.outcome(eff.id, "failed", dispensed=2000)
    journal.owe(tx.id, 5000, "incomplete_payout")
    journal.transition(tx.id, "owed")
    obs = _obs(journal, held_before=80000, held_after=78000, wallet_after=100000, orders={})
    assert check_invariants(obs) == []
    journal.owe(tx.id, 5000, "incomplete_payout")
    assert check_invariants(obs) == [
        ("liabilities", "KT1-000001: owed 10000, not paid out 5000, ended owed")
    ]


def test_paid_at_the_provider_and_owed_is_reported(journal: Journal) -> None:
    tx_id = _owed(journal)
    found = check_invariants(_obs(journal))
    assert _kinds(found) == ["paid+owed", "paid+owed"]  # the liability, and the end state
    assert any("owed 15000 (ended_by_cancel)" in d for _, d in found)
    # an unconfirmed note may stay owed on a paid order: the cash count settles it
    journal.db.execute(
        "UPDATE liabilities SET reason = 'unconfirmed_note' WHERE tx_id = ?", [tx_id]
    )
    assert [d for _, d in check_invariants(_obs(journal))] == [
        "KT1-000001: PAID_SUCCESS at PayBy, ended owed"
    ]


def test_completed_but_not_paid_is_reported(journal: Journal) -> None:
    _completed(journal)
    obs = _obs(journal, wallet_after=100000, orders={ORDER: _created_view()})
    assert _kinds(check_invariants(obs)) == ["unpaid"]


def test_an_effect_left_in_intent_and_a_transaction_left_open_are_reported(
    journal: Journal,
) -> None:
    tx_id = _cash_in(journal, notes=(10000,))
    journal.intent(tx_id, "stack", "KT1-000001-note2", amount=5000)
    obs = _obs(journal, held_after=10000, wallet_after=100000, orders={})
    assert _kinds(check_invariants(obs)) == ["intent", "open"]


def test_notes_missing_from_the_journal_are_reported(journal: Journal) -> None:
    _owed(journal)
    base = {"wallet_after": 100000, "orders": {ORDER: _created_view()}}
    assert check_invariants(_obs(journal, held_after=15000, **base)) == []
    (found,) = check_invariants(_obs(journal, held_after=20000, **base))
    assert found == ("cashbox", "the device took in 20000; credited 15000, unconfirmed 0")
    assert _kinds(check_invariants(_obs(journal, held_after=10000, **base))) == ["cashbox"]


def test_a_wallet_debited_twice_is_reported(journal: Journal) -> None:
    _completed(journal)
    (found,) = check_invariants(_obs(journal, wallet_after=70000))
    assert found == ("wallet", "the store wallet went down by 30000; orders it paid: 15000")
    # another payer's payment is no payment of ours
    orders = {ORDER: _paid_view(payer="200009990001")}
    assert "unpaid" in _kinds(check_invariants(_obs(journal, orders=orders)))


def test_a_repeated_payout_is_reported(journal: Journal) -> None:
    tx = journal.begin("local_cashout", currency="AED", amount_due=7000)
    journal.transition(tx.id, "dispensing")
    for n in (1, 2):
        eff = journal.intent(tx.id, "payout", f"{tx.ref}-payout{n}", amount=7000)
        journal.outcome(eff.id, "done", dispensed=7000)
    journal.transition(tx.id, "completed")
    obs = _obs(journal, held_before=80000, held_after=66000, wallet_after=100000, orders={})
    found = check_invariants(obs)
    assert ("payout", "KT1-000001: 2 payouts done") in found
    assert ("payout", "KT1-000001: dispensed 14000 > 7000") in found
    # the recycler paid 14000; had it paid 21000, the journal would not say so
    obs = _obs(journal, held_before=80000, held_after=59000, wallet_after=100000, orders={})
    assert any("the recycler paid out 21000" in d for _, d in check_invariants(obs))


# --- Paysera, judged by the transaction's journey ---------------------------------------------

KEY, WALLET = "PsKey1", 14471


def _paysera_view(
    status: str, total: int = 10000, kind: str = "reservation_code"
) -> dict[str, Any]:
    payments = [{"id": 1, "status": status, "price": total, "currency": "AED"}]
    return {"transaction_key": KEY, "status": status, "payments": payments, "type": kind,
            "wallet": WALLET}  # fmt: skip


def _paysera_obs(journal: Journal, **kw: Any) -> Observed:
    fields: dict[str, Any] = {
        "journal": Path(journal.db.conn.execute("PRAGMA database_list").fetchone()[2]),
        "held_before": 80000,
        "held_after": 70000,
        "paysera_wallets": {WALLET: (50000, 40000)},
        "paysera": {KEY: _paysera_view("confirmed")},
    }
    return Observed(**{**fields, **kw})


def _paysera_cashout(journal: Journal, *, paid: int | None = 10000) -> int:
    """A Paysera cash-out of 100.00 confirmed and paid out ``paid`` (None: no payout)."""
    import kiosk.flows.paysera_cashout  # noqa: F401 - defines the journey

    tx = journal.begin("paysera_cashout", currency="AED")
    journal.transition(tx.id, "creating", amount_due=10000)
    journal.transition(tx.id, "reserving", provider_ref=KEY)
    journal.transition(tx.id, "confirming")
    journal.transition(tx.id, "confirmed")
    if paid is None:
        return tx.id
    journal.transition(tx.id, "dispensing")
    eff = journal.intent(tx.id, "payout", f"{tx.ref}-payout", amount=10000)
    journal.outcome(eff.id, "done" if paid == 10000 else "failed", dispensed=paid)
    if paid == 10000:
        journal.transition(tx.id, "completed")
    else:
        journal.owe(tx.id, 10000 - paid, "incomplete_payout")
        journal.transition(tx.id, "owed")
    return tx.id


def test_a_paysera_cash_out_paid_or_owed_the_rest_holds_every_invariant(
    journal: Journal,
) -> None:
    _paysera_cashout(journal)
    assert check_invariants(_paysera_obs(journal)) == []
    _paysera_cashout(journal, paid=5000)  # a short payout: the rest owed
    obs = _paysera_obs(
        journal,
        held_after=65000,
        paysera_wallets={WALLET: (50000, 40000), WALLET + 1: (50000, 40000)},
        paysera={KEY: _paysera_view("confirmed")},
    )
    found = check_invariants(obs)
    # both name the one key; the second wallet moved without a transaction confirmed on it
    assert _kinds(found) == ["wallet"], found


def test_a_paysera_cash_out_confirmed_but_not_paid_nor_owed_is_reported(
    journal: Journal,
) -> None:
    tx_id = _paysera_cashout(journal, paid=None)
    journal.transition(tx_id, "dispensing")
    journal.transition(tx_id, "unknown")
    found = check_invariants(_paysera_obs(journal, held_after=80000))
    assert found == [("cashout", "KT1-000001: confirmed at Paysera, paid out 0, ended unknown")]


def test_a_paysera_cash_out_not_confirmed_pays_out_and_owes_nothing(journal: Journal) -> None:
    _paysera_cashout(journal)
    obs = _paysera_obs(
        journal, paysera_wallets={WALLET: (50000, 50000)}, paysera={KEY: _paysera_view("revoked")}
    )
    (found,) = check_invariants(obs)
    assert (
        found[0] == "cashout" and "not confirmed at Paysera (revoked); paid out 10000" in found[1]
    )


def test_a_paysera_wallet_debited_twice_or_by_an_unknown_transaction_is_reported(
    journal: Journal,
) -> None:
    _paysera_cashout(journal)
    views = {KEY: _paysera_view("confirmed"), "Other": _paysera_view("confirmed")}
    obs = _paysera_obs(journal, paysera_wallets={WALLET: (50000, 30000)}, paysera=views)
    assert check_invariants(obs) == [
        ("wallet", f"Paysera wallet {WALLET}: 2 confirmed"),
        ("wallet", f"Paysera wallet {WALLET}: Other confirmed, not in the journal"),
    ]
    obs = _paysera_obs(journal, paysera_wallets={WALLET: (50000, 30000)})
    assert check_invariants(obs) == [
        ("wallet", f"Paysera wallet {WALLET} moved by -20000; the transactions confirmed on it:"
         " -10000")
    ]  # fmt: skip


def _paysera_cashin(journal: Journal) -> int:
    """A Paysera cash-in that took 100 + 50 and sent its confirm."""
    import kiosk.flows.paysera_cashin  # noqa: F401 - defines the journey

    tx = journal.begin("paysera_cashin", currency="AED")
    journal.transition(tx.id, "accepting")
    for i, value in enumerate((10000, 5000), start=1):
        eff = journal.intent(tx.id, "stack", f"{tx.ref}-note{i}", amount=value)
        journal.outcome(eff.id, "done", credit=value)
    journal.transition(tx.id, "creating", amount_due=15000)
    journal.transition(tx.id, "reserving", provider_ref=KEY)
    journal.transition(tx.id, "confirming")
    return tx.id


def test_a_paysera_cash_in_is_credited_or_owed_never_both_never_neither(
    journal: Journal,
) -> None:
    tx_id = _paysera_cashin(journal)
    credited = {KEY: _paysera_view("confirmed", 15000, "automatic")}
    base = {"held_before": 0, "held_after": 15000}
    journal.transition(tx_id, "confirmed")
    journal.transition(tx_id, "completed")
    obs = _paysera_obs(journal, paysera_wallets={WALLET: (0, 15000)}, paysera=credited, **base)
    assert check_invariants(obs) == []
    # not credited (revoked), and not owed either
    revoked = {KEY: _paysera_view("revoked", 15000, "automatic")}
    obs = _paysera_obs(journal, paysera_wallets={WALLET: (0, 0)}, paysera=revoked, **base)
    assert _kinds(check_invariants(obs)) == ["unpaid"]
    # credited and owed
    journal.owe(tx_id, 15000, "confirm_refused")
    journal.db.execute("UPDATE transactions SET state = 'owed' WHERE id = ?", [tx_id])
    obs = _paysera_obs(journal, paysera_wallets={WALLET: (0, 15000)}, paysera=credited, **base)
    assert _kinds(check_invariants(obs)) == ["paid+owed", "paid+owed"]


# --- Rapyd, judged by the transaction's journey -----------------------------------------------

PHONE, ACCOUNT, WID, DID = "+971500000001", "acct-1", "wd-1", "dp-1"


def _rapyd_tx(kind: str, amount: int, tid: str, reversed_: int = 0) -> dict[str, Any]:
    return {"transaction_id": tid, "kind": kind, "amount": amount, "reversed": reversed_,
            "account_id": ACCOUNT, "phone_number": PHONE, "session": "tok-1"}  # fmt: skip


def _rapyd_obs(journal: Journal, **kw: Any) -> Observed:
    fields: dict[str, Any] = {
        "journal": Path(journal.db.conn.execute("PRAGMA database_list").fetchone()[2]),
        "held_before": 80000,
        "held_after": 70000,
        "rapyd_wallets": {PHONE: (50000, 40000)},
        "rapyd": {WID: _rapyd_tx("withdraw", 10000, WID)},
        "rapyd_sessions": {"tok-1": {"phone_number": PHONE, "closed_at_ms": 1}},
    }
    return Observed(**{**fields, **kw})


def _rapyd_cashout(journal: Journal, *, paid: int = 10000) -> int:
    """A Rapyd cash-out of 100.00, withdrawn and paid out ``paid``; a short payout ends in
    ``reversing`` (the caller settles the rest)."""
    import kiosk.flows.rapyd_cashout  # noqa: F401 - defines the journey

    tx = journal.begin("rapyd_cashout", currency="AED")
    journal.transition(tx.id, "opening", amount_due=10000)
    journal.transition(tx.id, "open")
    journal.outcome(journal.intent(tx.id, "logout", f"{tx.ref}-logout", amount=0).id, "done")
    journal.transition(tx.id, "withdrawing")
    eff = journal.intent(tx.id, "withdraw", f"{tx.ref}-withdraw", amount=10000,
                         request={"account_id": ACCOUNT})  # fmt: skip
    journal.outcome(eff.id, "done")
    journal.transition(tx.id, "withdrawn", provider_ref=WID)
    journal.transition(tx.id, "dispensing")
    eff = journal.intent(tx.id, "payout", f"{tx.ref}-payout", amount=10000)
    journal.outcome(eff.id, "done" if paid == 10000 else "failed", dispensed=paid)
    journal.transition(tx.id, "completed" if paid == 10000 else "reversing")
    return tx.id


def test_a_rapyd_cash_out_paid_or_reversed_holds_every_invariant(journal: Journal) -> None:
    _rapyd_cashout(journal)
    assert check_invariants(_rapyd_obs(journal)) == []
    # a second withdrawal on the wallet (under another key) is reported, twice over
    views = {WID: _rapyd_tx("withdraw", 10000, WID), "wd-2": _rapyd_tx("withdraw", 10000, "wd-2")}
    obs = _rapyd_obs(journal, rapyd=views, rapyd_wallets={PHONE: (50000, 30000)})
    found = check_invariants(obs)
    assert ("wallet", "KT1-000001: 2 withdrawals at Rapyd for one cash-out") in found
    assert "cashout" in _kinds(found)


def test_a_rapyd_short_payout_reversed_owes_nothing_and_not_reversed_owes_the_rest(
    journal: Journal,
) -> None:
    tx_id = _rapyd_cashout(journal, paid=5000)
    journal.transition(tx_id, "completed")  # the other 50.00 went back
    views = {WID: _rapyd_tx("withdraw", 10000, WID, reversed_=5000),
             "rv-1": _rapyd_tx("reversal", 5000, "rv-1")}  # fmt: skip
    base = {"held_after": 75000, "rapyd": views, "rapyd_wallets": {PHONE: (50000, 45000)}}
    assert check_invariants(_rapyd_obs(journal, **base)) == []
    # completed, but Rapyd never got the reversal: the customer is short 50.00, owed nothing
    obs = _rapyd_obs(journal, held_after=75000)
    (found,) = check_invariants(obs)
    assert found == ("cashout", "KT1-000001: Rapyd debited 10000 net (withdrawn - reversed),"
                     " paid out 5000, owed 0, ended completed")  # fmt: skip


def test_a_rapyd_cash_out_that_pays_more_than_was_debited_is_reported(journal: Journal) -> None:
    _rapyd_cashout(journal)
    obs = _rapyd_obs(journal, rapyd={}, rapyd_wallets={PHONE: (50000, 50000)})
    (found,) = check_invariants(obs)
    assert found[0] == "cashout" and "paid out more than debited" in found[1]


def test_a_rapyd_session_left_open_is_reported_unless_the_kiosk_never_knew_it(
    journal: Journal,
) -> None:
    _rapyd_cashout(journal)
    open_ = {"tok-1": {"phone_number": PHONE, "closed_at_ms": None}}
    assert check_invariants(_rapyd_obs(journal, rapyd_sessions=open_)) == [
        ("session", "1 Rapyd sessions the kiosk knew of left open (1 unclosed, 0 never known"
         " to the kiosk)")
    ]  # fmt: skip
    # a second session, opened at Rapyd, of which the journal has no close row: counted apart
    both = {**open_, "tok-2": {"phone_number": PHONE, "closed_at_ms": None}}
    obs = _rapyd_obs(journal, rapyd_sessions=both)
    assert rapyd_orphans(obs) == 1
    assert _kinds(check_invariants(obs)) == ["session"]
    closed = {"tok-1": {"closed_at_ms": 1}, "tok-2": {"closed_at_ms": None}}
    obs = _rapyd_obs(journal, rapyd_sessions=closed)
    assert rapyd_orphans(obs) == 1 and check_invariants(obs) == []


def _rapyd_cashin(journal: Journal) -> int:
    """A Rapyd cash-in that took 100 + 50 and sent its deposit."""
    import kiosk.flows.rapyd_cashin  # noqa: F401 - defines the journey

    tx = journal.begin("rapyd_cashin", currency="AED")
    journal.transition(tx.id, "accepting")
    for i, value in enumerate((10000, 5000), start=1):
        eff = journal.intent(tx.id, "stack", f"{tx.ref}-note{i}", amount=value)
        journal.outcome(eff.id, "done", credit=value)
    journal.transition(tx.id, "awaiting_otp", amount_due=15000)
    journal.transition(tx.id, "opening")
    journal.transition(tx.id, "open")
    journal.outcome(journal.intent(tx.id, "logout", f"{tx.ref}-logout", amount=0).id, "done")
    journal.transition(tx.id, "depositing")
    eff = journal.intent(tx.id, "deposit", f"{tx.ref}-deposit", amount=15000)
    journal.outcome(eff.id, "done")
    return tx.id


def test_a_rapyd_cash_in_is_deposited_or_owed_never_both_never_neither(
    journal: Journal,
) -> None:
    tx_id = _rapyd_cashin(journal)
    deposited = {DID: _rapyd_tx("deposit", 15000, DID)}
    base = {"held_before": 0, "held_after": 15000, "rapyd_wallets": {PHONE: (0, 15000)}}
    journal.transition(tx_id, "deposited", provider_ref=DID)
    journal.transition(tx_id, "completed")
    assert check_invariants(_rapyd_obs(journal, rapyd=deposited, **base)) == []
    # credited twice at Rapyd: the second deposit is not the journal's
    twice = {**deposited, "dp-2": _rapyd_tx("deposit", 15000, "dp-2")}
    obs = _rapyd_obs(journal, rapyd=twice, **{**base, "rapyd_wallets": {PHONE: (0, 30000)}})
    assert check_invariants(obs) == [
        ("wallet", f"Rapyd wallet {PHONE}: deposit dp-2 of 15000, not in the journal")
    ]
    # completed, but Rapyd has no deposit: neither credited nor owed
    obs = _rapyd_obs(journal, rapyd={}, **{**base, "rapyd_wallets": {PHONE: (0, 0)}})
    assert _kinds(check_invariants(obs)) == ["unpaid"]
    # deposited and owed
    journal.owe(tx_id, 15000, "deposit_refused:x")
    journal.db.execute("UPDATE transactions SET state = 'owed' WHERE id = ?", [tx_id])
    obs = _rapyd_obs(journal, rapyd=deposited, **base)
    assert _kinds(check_invariants(obs)) == ["paid+owed", "paid+owed"]


# --- Cashii, judged by the transaction's journey ----------------------------------------------

PAYER, PID = "8800000001000000", "4111222233334444"


def _cashii_payment(ref: str, status: str = "paid", amount: int = 10000) -> dict[str, Any]:
    view = {"id": PID, "amount": amount, "currency": "AED", "status": status,
            "metadata": {"kiosk_id": "KT1", "reference": ref}}  # fmt: skip
    return {**view, "from": PAYER} if status == "paid" else view


def _cashii_obs(journal: Journal, status: str = "paid", **kw: Any) -> Observed:
    paid = status == "paid"
    fields: dict[str, Any] = {
        "journal": Path(journal.db.conn.execute("PRAGMA database_list").fetchone()[2]),
        "held_before": 80000,
        "held_after": 70000 if paid else 80000,
        "cashii_accounts": {PAYER: (50000, 40000 if paid else 50000)},
        "cashii": {PID: _cashii_payment("KT1-000001", status)},
    }
    return Observed(**{**fields, **kw})


def _cashii_cashout(journal: Journal, end: str = "completed") -> int:
    """A Cashii cash-out of 100.00 whose payment was created; ``end``: completed (paid, paid
    out), owed (paid after the slip was void), void (rejected) or waiting."""
    import kiosk.flows.cashii_cashout  # noqa: F401 - defines the journey

    tx = journal.begin("cashii_cashout", currency="AED")
    journal.transition(tx.id, "creating", amount_due=10000)
    journal.outcome(journal.intent(tx.id, "create", f"{tx.ref}-create", amount=10000).id, "done")
    journal.transition(tx.id, "waiting", provider_ref=PID)
    if end == "completed":
        journal.transition(tx.id, "paid")
        journal.transition(tx.id, "dispensing")
        eff = journal.intent(tx.id, "payout", f"{tx.ref}-payout", amount=10000)
        journal.outcome(eff.id, "done", dispensed=10000)
        journal.transition(tx.id, "completed")
    elif end == "owed":
        journal.transition(tx.id, "pending")
        journal.owe(tx.id, 10000, "paid_after_slip_void")
        journal.transition(tx.id, "owed")
    elif end == "void":
        journal.transition(tx.id, "void")
    return tx.id


def test_a_cashii_cash_out_paid_out_or_owed_or_void_holds_every_invariant(
    journal: Journal, tmp_path: Path
) -> None:
    _cashii_cashout(journal)
    assert check_invariants(_cashii_obs(journal)) == []
    owed = Journal.open(tmp_path / "owed.db", kiosk_id="KT1", code_key=b"k" * 32)
    _cashii_cashout(owed, "owed")  # paid after the kiosk stopped waiting: owed in full
    assert check_invariants(_cashii_obs(owed, held_after=80000)) == []
    owed.close()
    void = Journal.open(tmp_path / "void.db", kiosk_id="KT1", code_key=b"k" * 32)
    _cashii_cashout(void, "void")
    assert check_invariants(_cashii_obs(void, "rejected")) == []
    void.close()


def test_a_cashii_payment_paid_but_not_paid_out_nor_owed_or_twice_is_reported(
    journal: Journal, tmp_path: Path
) -> None:
    _cashii_cashout(journal, "void")  # ended void, but the customer paid
    found = check_invariants(_cashii_obs(journal, held_after=80000))
    assert found == [("cashout", "KT1-000001: Cashii paid 10000, paid out 0, owed 0: paid out"
                      " + owed != 10000, ended void")]  # fmt: skip
    # a second payment for the transaction, and one no transaction made
    two = {PID: _cashii_payment("KT1-000001", "rejected"),
           "4111222233335555": {**_cashii_payment("KT1-000001", "pending"),
                                "id": "4111222233335555"},
           "4111222233336666": {**_cashii_payment("KT1-000099", "pending"),
                                "id": "4111222233336666"}}  # fmt: skip
    found = check_invariants(_cashii_obs(journal, "rejected", cashii=two))
    assert _kinds(found) == ["wallet", "wallet"], found
    # not paid, yet paid out; and the payer's account debited without a paid payment
    out = Journal.open(tmp_path / "out.db", kiosk_id="KT1", code_key=b"k" * 32)
    _cashii_cashout(out)
    obs = _cashii_obs(out, "pending", cashii_accounts={PAYER: (50000, 40000)}, held_after=70000)
    assert _kinds(check_invariants(obs)) == ["cashout", "wallet"]
    out.close()


# --- PayBy's cash-out, judged by the transaction's journey -----------------------------------

ORDER_NO = "131658300517875854"


def _payby_order(status: str = "PAID_SUCCESS", refunded: str = "0.00") -> dict[str, Any]:
    return {"orderNo": ORDER_NO, "merchantOrderNo": "KT1-000001-order", "status": status,
            "totalAmount": {"currency": "AED", "amount": "100.00"},
            "refundedAmount": {"currency": "AED", "amount": refunded}}  # fmt: skip


def _payby_obs(journal: Journal, order: dict[str, Any], **kw: Any) -> Observed:
    paid = order["status"] == "PAID_SUCCESS"
    fields: dict[str, Any] = {
        "journal": Path(journal.db.conn.execute("PRAGMA database_list").fetchone()[2]),
        "held_before": 80000,
        "held_after": 75000 if paid else 80000,
        "wallet_before": 100000,
        "wallet_after": 100000 + (10000 if paid else 0) - 5000 * (order["refundedAmount"]
                                                                   ["amount"] == "50.00"),
        "payby_cashouts": {order["merchantOrderNo"]: order},
    }  # fmt: skip
    return Observed(**{**fields, **kw})


def _payby_cashout(journal: Journal, end: str = "refunded") -> int:
    """A PayBy cash-out of 100.00 whose order was paid in the app and whose payout stopped at
    50.00; ``end``: refunded (the rest refunded: completed), owed (the refund failed)."""
    import kiosk.flows.payby_cashout  # noqa: F401 - defines the journey

    tx = journal.begin("payby_cashout", currency="AED")
    journal.transition(tx.id, "creating", amount_due=10000)
    journal.transition(tx.id, "waiting", provider_ref=ORDER_NO)
    journal.transition(tx.id, "paid")
    journal.transition(tx.id, "dispensing")
    eff = journal.intent(tx.id, "payout", f"{tx.ref}-payout", amount=10000)
    journal.outcome(eff.id, "failed", dispensed=5000)
    journal.transition(tx.id, "refunding")
    refund = journal.intent(tx.id, "refund", f"{tx.ref}-refund", amount=5000)
    if end == "refunded":
        journal.outcome(refund.id, "done")
        journal.transition(tx.id, "completed")
    else:
        journal.outcome(refund.id, "failed")
        journal.owe(tx.id, 5000, "refund_failed:62002")
        journal.transition(tx.id, "owed")
    return tx.id


def test_a_payby_short_payout_refunded_or_owed_holds_every_invariant(
    journal: Journal, tmp_path: Path
) -> None:
    _payby_cashout(journal)
    assert check_invariants(_payby_obs(journal, _payby_order(refunded="50.00"))) == []
    owed = Journal.open(tmp_path / "owed.db", kiosk_id="KT1", code_key=b"k" * 32)
    _payby_cashout(owed, "owed")
    assert check_invariants(_payby_obs(owed, _payby_order())) == []
    owed.close()


def test_a_payby_refund_the_journal_does_not_know_or_an_unpaid_payout_is_reported(
    journal: Journal, tmp_path: Path
) -> None:
    _payby_cashout(journal, "owed")  # the journal says the refund failed; PayBy refunded it
    found = check_invariants(_payby_obs(journal, _payby_order(refunded="50.00")))
    assert _kinds(found) == ["cashout", "wallet"], found
    # paid out although the order was never paid; and an order paid that no QR showed
    unpaid = Journal.open(tmp_path / "unpaid.db", kiosk_id="KT1", code_key=b"k" * 32)
    _payby_cashout(unpaid)
    stray = {**_payby_order(), "merchantOrderNo": "KT1-000099-order"}
    obs = _payby_obs(unpaid, _payby_order("FAILURE", "50.00"), held_after=75000)
    obs = dataclasses.replace(obs, payby_cashouts={**obs.payby_cashouts, "KT1-000099-order":
                                                   stray}, wallet_after=105000)  # fmt: skip
    assert _kinds(check_invariants(obs)) == ["cashout", "wallet"], check_invariants(obs)
    unpaid.close()


def test_a_changed_event_breaks_the_chain(journal: Journal) -> None:
    _completed(journal)
    journal.db.execute("DROP TRIGGER events_no_update")
    journal.db.execute("UPDATE events SET data = '{\"forged\":1}' WHERE seq = 3")
    found = check_invariants(_obs(journal))
    assert found == [("chain", "event 3: content changed since it was written")]


def test_the_summary_counts_each_invariant_and_lists_each_violation() -> None:
    report = JourneyReport("cancel", steps=[(1, "begin"), (2, "liability")], points_run=4)
    report.not_reached = ["2:before"]
    report.violations = [Violation("cancel", 2, "after", "liability", "liabilities", "owed 2x")]
    text = render_text([report])
    head, row = text.splitlines()[:2]
    assert head.split()[:4] == ["journey", "steps", "points", "unreached"]
    assert row.split()[:4] == ["cancel", "2", "4", "1"]
    assert row.split()[5 + list(INVARIANTS).index("liabilities")] == "1"
    assert "cancel: not reached: 2:before" in text
    assert "cancel: step 2 after (liability): liabilities: owed 2x" in text
    doc = json.loads(render_json([report]))
    assert doc["journeys"][0]["violations"]["liabilities"] == 1
    assert doc["violations"][0]["step"] == 2


# --- sweeps against the real daemon ------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path: Unix socket paths of the kiosks under it must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="kcp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_cash_in_sweep_every_sixth_step(short_dir: Path) -> None:
    from kiosk.sandbox.server import start_sandbox

    journey = JOURNEYS["cash-in"]
    with start_sandbox(short_dir / "sandbox") as sandbox:
        bench = Bench(short_dir, sandbox)
        report = run_journey(bench, journey, every=6)
        assert not report.error, report.error
        assert len(report.steps) >= 12 and report.points_run >= 4
        assert report.points_run - len(report.not_reached) >= 4  # the crashes did happen
        assert [v.line() for v in report.violations] == []
        # a step past the journey's last one is never reached, and that is no failure
        assert not bench.run_point(journey, report, len(report.steps) + 1, "before")
        assert report.violations == []


@pytest.mark.slow
def test_cancel_sweep_every_third_step_through_the_cli(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kiosk.cli import main

    argv = ["bench", "crashpoints", "--journey", "cancel", "--every", "3", "--json", "-q"]
    status = main([*argv, "--dir", str(short_dir / "run")])
    doc = json.loads(capsys.readouterr().out)
    (journey,) = doc["journeys"]
    assert journey["name"] == "cancel" and not journey["error"]
    assert journey["points_run"] >= 4
    assert journey["points_run"] - len(journey["not_reached"]) >= 4
    assert doc["violations"] == [] and status == 0


@pytest.mark.slow
def test_a_pending_pay_is_settled_by_the_outbox_and_survives_a_crash_once_pending(
    short_dir: Path,
) -> None:
    from kiosk.sandbox.server import start_sandbox

    journey = JOURNEYS["pending-pay"]
    with start_sandbox(short_dir / "sandbox") as sandbox:
        bench = Bench(short_dir, sandbox)
        report = run_journey(bench, journey, only=set(), whens=("after",))  # the count run
        assert not report.error, report.error  # settled in the background within SETTLE_S
        pend = next(n for n, kinds in report.steps if "pay.unknown" in kinds)
        assert bench.run_point(journey, report, pend, "after")  # killed once pending
        assert [v.line() for v in report.violations] == []


@pytest.mark.slow
def test_paysera_crash_points_around_the_confirm_and_the_payout(short_dir: Path) -> None:
    """A handful of Paysera points (the whole sweep is `kiosk bench crashpoints`): the confirm
    committed and sent but its outcome not, the payout's intent, the cash-in's confirm."""
    from kiosk.sandbox.server import start_sandbox

    with start_sandbox(short_dir / "sandbox") as sandbox:
        bench = Bench(short_dir, sandbox)
        for name, points in (
            ("paysera-cashout", (("confirm.done", "before"), ("payout.intent", "before"),
                                 ("payout.intent", "after"))),
            ("paysera-cashin", (("confirm.done", "before"), ("confirm.done", "after"))),
        ):  # fmt: skip
            journey = JOURNEYS[name]
            report = run_journey(bench, journey, only=set())  # the count run only
            assert not report.error, report.error
            for kinds, when in points:
                step = next(n for n, k in report.steps if kinds in k)
                assert bench.run_point(journey, report, step, when), (name, step, when)
            assert [v.line() for v in report.violations] == []


@pytest.mark.slow
def test_rapyd_crash_points_around_the_withdraw_the_payout_and_the_deposit(
    short_dir: Path,
) -> None:
    """A handful of Rapyd points (the whole sweep is `kiosk bench crashpoints`): the withdraw
    committed but not sent (replayed after the restart: debited after the customer left,
    reversed in full), the payout's intent, the deposit committed but not sent, and its answer
    not yet committed; afterwards the wallet moved by what the journal says and every session
    the kiosk knew of is closed."""
    from kiosk.sandbox.server import start_sandbox

    with start_sandbox(short_dir / "sandbox") as sandbox:
        bench = Bench(short_dir, sandbox)
        for name, points in (
            ("rapyd-cashout", (("withdraw.intent", "after"), ("payout.intent", "after"))),
            ("rapyd-cashin", (("deposit.intent", "after"), ("deposit.done", "before"))),
        ):
            journey = JOURNEYS[name]
            report = run_journey(bench, journey, only=set())  # the count run only
            assert not report.error, report.error
            for kinds, when in points:
                step = next(n for n, k in report.steps if kinds in k)
                assert bench.run_point(journey, report, step, when), (name, step, when)
            assert [v.line() for v in report.violations] == []
            assert report.orphans == []


@pytest.mark.slow
def test_cashii_crash_points_around_the_create_the_slip_and_the_payout(short_dir: Path) -> None:
    """A handful of Cashii points (the whole sweep is `kiosk bench crashpoints --journeys
    cashii-cashout,cashii-rejected`): the create sent but its id not committed (refused, nobody
    pays), killed once waiting (recovered pending; the customer pays meanwhile: the watch owes
    it in full), the payout's intent; the rejected one killed once waiting (the watch voids)."""
    from kiosk.sandbox.server import start_sandbox

    with start_sandbox(short_dir / "sandbox") as sandbox:
        bench = Bench(short_dir, sandbox)
        for name, points in (
            ("cashii-cashout", (("create.intent", "after"), ("create.done", "after"),
                                ("payout.intent", "after"))),
            ("cashii-rejected", (("create.done", "after"),)),
        ):  # fmt: skip
            journey = JOURNEYS[name]
            report = run_journey(bench, journey, only=set())  # the count run only
            assert not report.error, report.error
            for kinds, when in points:
                step = next(n for n, k in report.steps if kinds in k)
                assert bench.run_point(journey, report, step, when), (name, step, when)
            assert [v.line() for v in report.violations] == []


def test_payby_crash_points_around_the_order_the_payout_and_the_refund(short_dir: Path) -> None:
    """Two PayBy cash-out points (the whole sweep is `kiosk bench crashpoints --journeys
    payby-cashout,payby-short-payout,payby-cancelled`): killed once the slip is out (the
    customer pays meanwhile: the cancel finds it paid, refunded in full), and once the short
    payout's refund is queued (followed to SUCCESS after the restart)."""
    from kiosk.sandbox.server import start_sandbox

    with start_sandbox(short_dir / "sandbox") as sandbox:
        bench = Bench(short_dir, sandbox)
        for name, points in (
            ("payby-cashout", (("receipt.printed", "after"),)),
            ("payby-short-payout", (("refund.intent", "after"),)),
        ):
            journey = JOURNEYS[name]
            report = run_journey(bench, journey, only=set())  # the count run only
            assert not report.error, report.error
            for kinds, when in points:
                step = next(n for n, k in report.steps if kinds in k)
                assert bench.run_point(journey, report, step, when), (name, step, when)
            assert [v.line() for v in report.violations] == []


def test_journeys_are_chosen_by_a_comma_separated_list() -> None:
    import argparse

    from kiosk.crashpoints import journey_list

    assert journey_list("cashii-cashout, cashii-rejected") == ["cashii-cashout", "cashii-rejected"]
    with pytest.raises(argparse.ArgumentTypeError):
        journey_list("cashii-cashout,nope")
