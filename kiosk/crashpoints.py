"""``kiosk bench crashpoints``: SIGKILL the daemon right before and right after every durable
step of each journey, restart it, let recovery finish, and check the money invariants.

Each journey runs once on a fresh simulated kiosk with ``KIOSK_CRASH_LOG`` to count its
durable steps (``kiosk.crashhook``); then, for every step ``n`` and for ``before`` and
``after``, again on a fresh kiosk (own directory, own journal, the store re-registered with a
fresh key and balance in the one sandbox of the run, PayBy, Paysera, Rapyd and Cashii, a fresh
Paysera wallet and reservation code, a fresh Rapyd phone number and wallet and a fresh Cashii
payer account for each customer) with ``KIOSK_CRASH_AT=n:when``. When
the daemon dies it is started again without the crash variables; once it is ready, and every
transaction has left the non-terminal states (at most ``--pending-s``), the journal (read only),
the simulated devices and the sandbox are checked (:func:`check_invariants`). A point the
journey never reached (it took another path) is counted as *not reached*, not as a failure.

Journeys: ``cash-in`` (PayBy, 150.00 AED, notes 100 + 50, paid), ``cancel`` (PayBy 500.00, notes
100 + 50, cancel pressed: owed), ``ambiguous-pay`` (the sandbox drops payOrder's reply: settled
later), ``pending-pay`` (the first payOrder is held by a slow network past the kiosk's timeout and
re-sends fail: PENDING, then the outbox settles it in the background), ``test-payout`` (a
technician's 70.00 test dispense from a SMART Payout, an eSSP simulator in its own process so that
it outlives the daemon, as a real recycler does), ``paysera-cashout`` (100.00 from a Paysera wallet
of 500.00, the envelope with the amount and a fresh reservation code: create, reserve, confirm,
paid out by the SMART Payout), ``paysera-lost-confirm`` (the same, the confirm's reply dropped
after Paysera confirmed: read back, paid out, never confirmed twice), ``paysera-cashin`` (the EVP
code of a fresh wallet, notes 100 + 50, confirm pressed: the wallet credited through the allowance)
and ``paysera-cashin-lost`` (the same, the confirm's reply dropped after the wallet was credited:
sent again, credited once); Rapyd POS: ``rapyd-cashout`` (100.00 from a wallet of 500.00, the
envelope with a fresh OTP and the phone number: session, withdraw, paid out by the SMART Payout,
session closed), ``rapyd-short-payout`` (the same, the SMART Payout stops after the first of its
two 50.00 notes, ``payout_stop_after``: the other 50.00 reversed), ``rapyd-lost-withdraw`` (the
withdraw's reply dropped after Rapyd debited: replayed under the same idempotency key, paid out
once), ``rapyd-cashin`` (the start code, notes 100 + 50, confirm, then, once the panel asks again,
the envelope with an OTP made just then: deposited) and ``rapyd-cashin-lost`` (the deposit's reply
dropped after Rapyd credited: replayed, credited once); Cashii Remote Payments: ``cashii-cashout``
(100.00 from the envelope, a pay slip, the customer pays from a fresh account of 500.00 as soon as
the payment exists, paid out by the SMART Payout) and ``cashii-rejected`` (the same, the customer
rejects it in the app: void); PayBy's own cash-out: ``payby-cashout`` (100.00 from the envelope,
the order's QR paid in the PayBy app as soon as the kiosk committed the order,
:meth:`Kiosk.payby_customer`, paid out by the SMART Payout) and ``payby-short-payout`` (the same,
the SMART Payout stops after the first of its two 50.00 notes: the other 50.00 refunded) and
``payby-cancelled`` (the customer presses the red button once the slip is out: the order
cancelled through the outbox, void). An OTP
lives 30 s and a restart takes longer: a journey killed before its OTP was used is not driven again
(recovery decides; the second code of a cash-in has no journey left to read it). The Cashii
customer is not the daemon's: a thread of the bench (:meth:`Kiosk. cashii_customer`) pays (or
rejects) the payment once it exists at Cashii and the journal names it (its id committed: the slip
can show it), whether the daemon is killed before, during or after — across the restart, so a
payment paid while its transaction was recovered ``pending`` must end owed by ``cashii.watch``. A
payment created but whose id was never committed (killed between the create and its commit) had no
slip: nobody pays it.

``--journeys a,b`` (or ``--journey`` repeated) runs only those journeys, e.g. ``--journeys
cashii-cashout,cashii-rejected`` to re-run one provider's.

Invariants (:data:`INVARIANTS`), the provider's side judged by each transaction's journey
(:data:`PROVIDER_CHECKS`): notes in the cashbox match the journal; open liabilities = ``owed``; a
cash-in (PayBy's order paid by the store, Paysera's transaction confirmed on the customer's wallet,
Rapyd's deposit) is paid or owed, never both, never neither, and Rapyd credited exactly what was
taken; every wallet (the store's at PayBy, each customer's at Paysera and at Rapyd) moved at most
once per transaction, by exactly what was paid or confirmed, and only by a transaction the journal
knows; a Paysera cash-out confirmed is paid out in full or owes exactly the rest, one not confirmed
pays out and owes nothing; a Rapyd cash-out's net debit (withdrawn - reversed) = dispensed + owed,
never less than dispensed (reversed or void: net debit = dispensed, nothing owed); no payout
repeated and the recycler paid what the journal says; no effect left in ``intent``; the hash chain
intact; no transaction left open; every Rapyd session the kiosk knew of (its close row committed)
closed once it settled; the daemon died only by the crash hook. Cashii, by journey: at most one
payment per transaction (by its metadata's ``reference``) and none without a transaction; a paid
payment ⇔ the transaction paid out + owed = its amount, exactly; a payment not paid (pending,
rejected, canceled, or none) ⇒ nothing paid out and nothing owed, and no payout effect; the payer's
account debited exactly by its paid payments. PayBy's cash-out, by journey: the order paid in the
app ⇔ paid out + refunded + owed = its amount, exactly; not paid ⇒ nothing paid out, refunded or
owed; PayBy refunded exactly what the journal's refunds say; no order of the kiosk paid that its
journal does not name (no QR was printed for it); the store's wallet moved by what it paid for
cash-ins, less the cash-out orders paid to it, plus their refunds. A Rapyd session the kiosk never
knew of — opened at Rapyd, the daemon killed before the ``open`` commit that holds its close row —
cannot be closed (no token was kept) and carries no money: it is counted apart (``orphan
sessions``), not as a violation.

Exit status: 0 when no invariant was violated, 1 otherwise (2: bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from kiosk.journeys import TERMINAL

if TYPE_CHECKING:  # the module is imported by every `kiosk` command: keep it light
    import subprocess

    from kiosk.sandbox.kit import FaultPlan
    from kiosk.sandbox.rapyd.api import RapydSandbox
    from kiosk.sandbox.server import Sandbox
    from kiosk.simkiosk import DaemonProcess, KioskFiles

T = TypeVar("T")
log = logging.getLogger("kiosk.crashpoints")

#: Invariant keys, in the order of the table (and what each one holds).
INVARIANTS: Final[dict[str, str]] = {
    "cashbox": "notes in the cashbox = credited + owed for unconfirmed notes",
    "liabilities": "per transaction, open liabilities = `owed` = what was taken, not delivered",
    "paid+owed": "cash in: never both paid or credited at the provider and owed",
    "unpaid": "cash in: cash taken and neither paid or credited at the provider nor owed",
    "wallet": "a customer's or store's wallet moved at most once per transaction, by exactly"
    " what the provider paid or confirmed; at most one Cashii payment per transaction, none"
    " without one",
    "cashout": "cash out: confirmed (Cashii: paid) at the provider ⇒ paid out in full or the"
    " rest owed exactly; not confirmed ⇒ nothing paid out, nothing owed",
    "payout": "no payout repeated; the recycler paid what the journal says",
    "intent": "no effect left in `intent`",
    "chain": "the events' hash chain intact",
    "open": "no transaction left non-terminal after recovery",
    "session": "every Rapyd session the kiosk knew of closed once it settled",
    "daemon": "the daemon died only by the crash hook and came back ready",
}
PAID: Final = frozenset({"PAID_SUCCESS", "SETTLED"})
KEPT_WHEN_PAID: Final = ("unconfirmed_note", "stray_note")  # liabilities a paid order may keep
ESSP_FLOAT: Final = "1000x10,2000x10,5000x10"  # notes the SMART Payout holds at start
SETTLE_S: Final = 30.0  # how long a journey may take without a crash
QUIET_S: Final = 0.5  # no new durable step for this long: the journey (and its receipt) ended
VOID_CAP_S: Final = 400.0  # the longest wait for a row that settles only at its void_after
VOID_SLACK_S: Final = 80.0  # past void_after: the outbox's longest backoff (60 s + jitter)
SHORT_REVERSED: Final = frozenset({"rapyd_cashout", "payby_cashout"})  # goes back, not owed
RAPYD_LOGOUT: Final = "rapyd.logout"
CASHII_BALANCE: Final = 50000  # AED 500.00 in each Cashii customer's fresh account
CASHII_TICK_S: Final = 0.05  # how often the Cashii customer looks at the app


class Died(Exception):
    """The daemon process is gone (the crash point, or a bug)."""


class Stuck(Exception):
    """A journey did not get where it should in time; the message says where."""


# --- the invariants ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What one kiosk run left behind. Amounts in minor units.

    ``held_*``: value of every note the validator holds (cashbox, and a recycler's payout
    store); ``wallet_*``: the store's PayBy wallet; ``orders``: the sandbox's view of every
    order the run created (orderNo → view), ``store``: the kiosk's partner id at PayBy.
    ``paysera_wallets``: every Paysera wallet the run's customers brought (wallet id →
    (balance before, balance after)); ``paysera``: the Paysera sandbox's view of every
    transaction the journal names or that was reserved on one of those wallets (key → view).
    ``rapyd_wallets``: every Rapyd wallet the run's customers brought (phone number → (AED
    balance before, after)); ``rapyd``: the Rapyd sandbox's transactions on those wallets
    (transaction id → view: kind withdraw, deposit or reversal, amount, reversed, account_id);
    ``rapyd_sessions``: the POS sessions opened for those phone numbers (token → session).
    ``cashii_accounts``: every Cashii account the run's customers paid from (account → (AED
    balance before, after)); ``cashii``: the Cashii sandbox's payments made by this kiosk
    (its metadata's ``kiosk_id``) or paid from those accounts (payment id → hook view).
    ``payby_cashouts``: every order this kiosk created at PayBy for a cash-out (its
    merchantOrderNo ``<ref>-order`` → view, with ``refundedAmount``)."""

    journal: Path
    held_before: int = 0
    held_after: int = 0
    wallet_before: int | None = None
    wallet_after: int | None = None
    orders: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    store: str = ""
    device_note: str = ""  # e.g. "the recycler is still paying out"
    paysera_wallets: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    paysera: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rapyd_wallets: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    rapyd: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rapyd_sessions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cashii_accounts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    cashii: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    payby_cashouts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def check_invariants(obs: Observed) -> list[tuple[str, str]]:
    """Every violation found, as (invariant key of :data:`INVARIANTS`, detail)."""
    conn = sqlite3.connect(f"file:{obs.journal}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        out = _check(conn, obs)
        from kiosk.journal import verify_chain

        chain = verify_chain(conn)
        if not chain.ok:
            out.append(("chain", f"event {chain.first_bad}: {chain.reason}"))
        return out
    finally:
        conn.close()


def _check(conn: sqlite3.Connection, obs: Observed) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    txs = list(conn.execute("SELECT * FROM transactions ORDER BY id"))
    effects = list(conn.execute("SELECT * FROM effects ORDER BY id"))
    liabilities = list(conn.execute("SELECT * FROM liabilities ORDER BY id"))
    refs = {tx["id"]: tx["ref"] for tx in txs}
    for eff in effects:
        if eff["status"] == "intent":
            out.append(("intent", f"{refs.get(eff['tx_id'])}: {eff['kind']} {eff['idem_key']}"))
    for tx in txs:
        if tx["state"] not in TERMINAL:
            out.append(("open", f"{tx['ref']}: left {tx['state']}"))
        mine = [r for r in liabilities if r["tx_id"] == tx["id"] and r["status"] == "open"]
        total = sum(r["amount"] for r in mine)
        if total != tx["owed"]:
            out.append(
                ("liabilities", f"{tx['ref']}: open liabilities {total} != owed {tx['owed']}")
            )
        tx_effects = [e for e in effects if e["tx_id"] == tx["id"]]
        check = PROVIDER_CHECKS.get(tx["journey"])
        if check is not None:
            out += check(tx, tx_effects, mine, obs)
        out += _payout_checks(tx, tx_effects)
    out += _device_checks(txs, effects, obs)
    out += _wallet_checks(obs)
    out += _paysera_wallet_checks(obs, {tx["provider_ref"] for tx in txs if tx["provider_ref"]})
    out += _rapyd_wallet_checks(obs, txs, effects)
    out += _rapyd_session_checks(obs, effects)
    out += _cashii_account_checks(obs, txs)
    out += _payby_order_checks(obs, txs)
    return out


def _amounts(effects: list[sqlite3.Row], kind: str, *statuses: str) -> int:
    return sum(e["amount"] or 0 for e in effects if e["kind"] == kind and e["status"] in statuses)


def _paid_by_store(view: Mapping[str, Any] | None, store: str) -> bool:
    if view is None or view.get("status") not in PAID:
        return False
    info = view.get("paymentInfo")
    return isinstance(info, Mapping) and info.get("payerMid") == store


def _payby_cashin_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    if tx["provider"] != "payby" or tx["provider_ref"] not in obs.orders:
        return []
    view = obs.orders[tx["provider_ref"]]
    status = f"{view.get('status')} at PayBy"
    if _paid_by_store(view, obs.store):
        return _credited_checks(tx, open_liabilities, status)
    why = f"order {view.get('status')}, not paid by the store"
    return _not_credited_checks(tx, effects, open_liabilities, why)


def _credited_checks(
    tx: sqlite3.Row, open_liabilities: list[sqlite3.Row], status: str
) -> list[tuple[str, str]]:
    """A cash-in the provider paid or credited: nothing owed but what a paid one may keep,
    and it ended completed."""
    ref, out = tx["ref"], []
    owed = [r for r in open_liabilities if not r["reason"].startswith(KEPT_WHEN_PAID)]
    for r in owed:
        out.append(("paid+owed", f"{ref}: {status} and owed {r['amount']} ({r['reason']})"))
    if tx["state"] in TERMINAL and tx["state"] != "completed":
        out.append(("paid+owed", f"{ref}: {status}, ended {tx['state']}"))
    return out


def _not_credited_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], why: str
) -> list[tuple[str, str]]:
    """A cash-in the provider did not pay or credit: every note taken is owed, once."""
    if tx["state"] not in TERMINAL:
        return []  # reported as open
    ref = tx["ref"]
    unknown = _amounts(effects, "stack", "unknown", "intent")
    taken = tx["credited"] + unknown
    stray = sum(r["amount"] for r in open_liabilities if r["reason"].startswith("stray_note"))
    owed = tx["owed"] - stray
    if owed < taken:
        return [
            ("unpaid", f"{ref}: {why}; credited {tx['credited']} + unconfirmed {unknown},"
             f" owed {owed}, ended {tx['state']}")
        ]  # fmt: skip
    if owed > taken:
        return [("liabilities", f"{ref}: owed {owed} for {taken} taken, ended {tx['state']}")]
    return []


def _paysera_total(view: Mapping[str, Any]) -> int:
    return sum(int(p.get("price", 0)) for p in view.get("payments", ()))


def _paysera_view(tx: sqlite3.Row, obs: Observed) -> Mapping[str, Any] | None:
    key = tx["provider_ref"]
    return obs.paysera.get(key) if key else None


def _paysera_cashin_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    """Cash taken ⇒ the customer's wallet credited exactly once (confirmed) or the cash owed,
    never both, never neither."""
    view = _paysera_view(tx, obs)
    status = view.get("status") if view is not None else None
    if view is not None and status == "confirmed" and view.get("wallet") in obs.paysera_wallets:
        out = _credited_checks(tx, open_liabilities, "confirmed at Paysera")
        total = _paysera_total(view)
        if tx["state"] in TERMINAL and total != tx["credited"]:
            out.append(
                ("unpaid", f"{tx['ref']}: Paysera credited {total} for {tx['credited']} taken")
            )
        return out
    if not tx["provider_ref"]:
        why = "no Paysera transaction journalled"
    else:
        why = f"Paysera transaction {status or 'unknown to Paysera'}"
    return _not_credited_checks(tx, effects, open_liabilities, why)


def _paysera_cashout_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    """Confirmed at Paysera ⇒ completed with everything paid out, or owed exactly the rest;
    not confirmed ⇒ nothing paid out and nothing owed."""
    if tx["state"] not in TERMINAL:
        return []  # reported as open
    ref, state, due, out_ = tx["ref"], tx["state"], tx["amount_due"], tx["dispensed"]
    view = _paysera_view(tx, obs)
    if view is not None and view.get("status") == "confirmed":
        total, short = _paysera_total(view), due - out_
        if total != due:
            return [("cashout", f"{ref}: Paysera confirmed {total} for a cash-out of {due}")]
        if state == "completed" and (out_ != due or tx["owed"]):
            return [("cashout", f"{ref}: confirmed, completed with {out_} of {due} paid out")]
        if state == "owed" and tx["owed"] != short:
            return [("cashout", f"{ref}: confirmed, paid out {out_} of {due}, owed {tx['owed']}")]
        if state not in ("completed", "owed"):
            return [("cashout", f"{ref}: confirmed at Paysera, paid out {out_}, ended {state}")]
        return []
    status = view.get("status") if view is not None else "never reserved"
    if out_ or tx["owed"] or _amounts(effects, "payout", "done", "unknown", "intent"):
        return [
            ("cashout", f"{ref}: not confirmed at Paysera ({status}); paid out {out_},"
             f" owed {tx['owed']}, ended {state}")
        ]  # fmt: skip
    return []


def _withdraw_accounts(effects: list[sqlite3.Row]) -> set[str]:
    """The Rapyd accounts a transaction's withdraw effects name (their public request)."""
    out = set()
    for e in effects:
        if e["kind"] == "withdraw":
            account = json.loads(e["request"] or "{}").get("account_id")
            if account:
                out.add(str(account))
    return out


def _rapyd_cashout_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    """The wallet's net debit (withdrawn - reversed) = what the customer got (dispensed) + what
    the journal owes; never paid out more than debited; refused or void: nothing moved."""
    if tx["provider"] != "rapyd" or tx["state"] not in TERMINAL:
        return []  # an open one is reported as open
    ref, state, out_, owed = tx["ref"], tx["state"], tx["dispensed"], tx["owed"]
    accounts = _withdraw_accounts(effects)
    mine = [
        v
        for v in obs.rapyd.values()
        if v.get("kind") == "withdraw"
        and (v.get("account_id") in accounts or v.get("transaction_id") == tx["provider_ref"])
    ]
    net = sum(int(v["amount"]) - int(v.get("reversed", 0)) for v in mine)
    out: list[tuple[str, str]] = []
    if len(mine) > 1:
        out.append(("wallet", f"{ref}: {len(mine)} withdrawals at Rapyd for one cash-out"))
    if any(int(v["amount"]) != tx["amount_due"] for v in mine):
        amounts = ", ".join(str(v["amount"]) for v in mine)
        out.append(("cashout", f"{ref}: Rapyd withdrew {amounts} for a cash-out of"
                    f" {tx['amount_due']}"))  # fmt: skip
    said = f"Rapyd debited {net} net (withdrawn - reversed), paid out {out_}, owed {owed}"
    if out_ > net:
        out.append(("cashout", f"{ref}: {said}: paid out more than debited, ended {state}"))
    else:
        wrong = state != "unknown" and owed != net - out_  # unknown: levels unread (technician)
        if wrong or (state in ("refused", "void") and (net or out_)):
            out.append(("cashout", f"{ref}: {said}, ended {state}"))
    return out


def _rapyd_cashin_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    """Cash taken ⇒ deposited exactly once (the wallet credited by exactly what was credited)
    or the cash owed, never both, never neither. A deposit the journal does not name is
    reported by :func:`_rapyd_wallet_checks`."""
    if tx["provider"] != "rapyd":
        return []
    key = tx["provider_ref"]
    view = obs.rapyd.get(key) if key else None
    if view is not None and view.get("kind") == "deposit":
        out = _credited_checks(tx, open_liabilities, "deposited at Rapyd")
        if tx["state"] in TERMINAL and int(view["amount"]) != tx["credited"]:
            out.append(
                ("unpaid", f"{tx['ref']}: Rapyd credited {view['amount']} for {tx['credited']}"
                 " taken")
            )  # fmt: skip
        return out
    why = "no Rapyd deposit journalled" if not key else f"Rapyd transaction {key} not a deposit"
    return _not_credited_checks(tx, effects, open_liabilities, why)


def _rapyd_wallet_checks(
    obs: Observed, txs: list[sqlite3.Row], effects: list[sqlite3.Row]
) -> list[tuple[str, str]]:
    """Each customer's Rapyd wallet moved by exactly its transactions at Rapyd (deposits -
    withdrawals + reversals), each of them one the journal knows (a deposit by its id, a
    withdrawal by its id or its account in a withdraw effect)."""
    refs = {str(tx["provider_ref"]) for tx in txs if tx["provider_ref"]}
    accounts = _withdraw_accounts(effects)
    sign = {"deposit": 1, "withdraw": -1, "reversal": 1}
    out: list[tuple[str, str]] = []
    for phone, (before, after) in sorted(obs.rapyd_wallets.items()):
        views = [v for v in obs.rapyd.values() if v.get("phone_number") == phone]
        moved = sum(sign.get(str(v.get("kind")), 0) * int(v["amount"]) for v in views)
        if after - before != moved:
            out.append(
                ("wallet", f"Rapyd wallet {phone} moved by {after - before}; its transactions:"
                 f" {moved}")
            )  # fmt: skip
        for v in views:
            tid, kind = str(v.get("transaction_id")), v.get("kind")
            known = tid in refs or (kind == "withdraw" and v.get("account_id") in accounts)
            if kind in ("deposit", "withdraw") and not known:
                out.append(
                    ("wallet", f"Rapyd wallet {phone}: {kind} {tid} of {v['amount']}, not in"
                     " the journal")
                )  # fmt: skip
    return out


def rapyd_orphans(obs: Observed, effects: list[sqlite3.Row] | None = None) -> int:
    """Rapyd sessions opened for the run's customers that the kiosk never knew of: opened
    (login answered at Rapyd) but no close row committed — the daemon killed between the
    login's answer and the commit of ``open``, or the login's answer lost. The kiosk holds no
    token to close them with; they carry no money call. Not a money violation."""
    if effects is None:
        conn = sqlite3.connect(f"file:{obs.journal}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            effects = list(conn.execute("SELECT * FROM effects ORDER BY id"))
        finally:
            conn.close()
    known = sum(1 for e in effects if e["kind"] == "logout")
    return max(0, len(obs.rapyd_sessions) - known)


def _rapyd_session_checks(obs: Observed, effects: list[sqlite3.Row]) -> list[tuple[str, str]]:
    """Every session the kiosk knew (a close row committed) closed once it settled; a session
    it never knew of (:func:`rapyd_orphans`) is counted apart."""
    unclosed = [s for s in obs.rapyd_sessions.values() if s.get("closed_at_ms") is None]
    orphans = rapyd_orphans(obs, effects)
    if len(unclosed) > orphans:
        left = len(unclosed) - orphans
        return [
            ("session", f"{left} Rapyd sessions the kiosk knew of left open"
             f" ({len(unclosed)} unclosed, {orphans} never known to the kiosk)")
        ]  # fmt: skip
    return []


def _cashii_payments(tx: sqlite3.Row, obs: Observed) -> list[Mapping[str, Any]]:
    """The Cashii payments a transaction made (their metadata's ``reference``)."""
    return [
        v for v in obs.cashii.values() if (v.get("metadata") or {}).get("reference") == tx["ref"]
    ]


def _cashii_cashout_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    """At most one payment; paid ⇔ paid out + owed = the amount, exactly; not paid (pending,
    rejected, canceled, or no payment at all) ⇒ nothing paid out, nothing owed, no payout."""
    if tx["provider"] != "cashii" or tx["state"] not in TERMINAL:
        return []  # an open one is reported as open
    ref, state, due, out_, owed = (
        tx["ref"], tx["state"], tx["amount_due"], tx["dispensed"], tx["owed"]
    )  # fmt: skip
    mine = _cashii_payments(tx, obs)
    out: list[tuple[str, str]] = []
    if len(mine) > 1:
        ids = ", ".join(str(v.get("id")) for v in mine)
        out.append(("wallet", f"{ref}: {len(mine)} Cashii payments for one cash-out ({ids})"))
    if tx["provider_ref"] and tx["provider_ref"] not in {v.get("id") for v in mine}:
        out.append(("wallet", f"{ref}: the journal's payment {tx['provider_ref']} is not at"
                    " Cashii with this transaction's reference"))  # fmt: skip
    paid = [v for v in mine if v.get("status") == "paid"]
    if paid:
        amounts = [int(v["amount"]) for v in paid]
        said = f"Cashii paid {'+'.join(map(str, amounts))}, paid out {out_}, owed {owed}"
        if any(a != due for a in amounts):
            out.append(("cashout", f"{ref}: {said} for a cash-out of {due}"))
        elif out_ > due:
            out.append(("cashout", f"{ref}: {said}: paid out more than paid, ended {state}"))
        elif state != "unknown" and out_ + owed != due:  # unknown: levels unread (technician)
            out.append(("cashout", f"{ref}: {said}: paid out + owed != {due}, ended {state}"))
        return out
    status = ", ".join(str(v.get("status")) for v in mine) or "no payment"
    payouts = _amounts(effects, "payout", "done", "unknown", "intent")
    if out_ or owed or payouts:
        out.append(
            ("cashout", f"{ref}: not paid at Cashii ({status}); paid out {out_}, owed {owed},"
             f" payout effects {payouts}, ended {state}")
        )  # fmt: skip
    return out


def _cashii_account_checks(obs: Observed, txs: list[sqlite3.Row]) -> list[tuple[str, str]]:
    """Every payment of the kiosk belongs to a transaction of the journal; each payer's account
    went down by exactly the payments it paid."""
    refs = {str(tx["ref"]) for tx in txs}
    out: list[tuple[str, str]] = []
    for pid, v in sorted(obs.cashii.items()):
        reference = (v.get("metadata") or {}).get("reference")
        if reference not in refs:
            out.append(("wallet", f"Cashii payment {pid} ({v.get('status')}) for {reference},"
                        " no transaction of the journal"))  # fmt: skip
    for account, (before, after) in sorted(obs.cashii_accounts.items()):
        paid = sum(
            int(v["amount"])
            for v in obs.cashii.values()
            if v.get("from") == account and v.get("status") == "paid"
        )
        if before - after != paid:
            out.append(("wallet", f"Cashii account {account} went down by {before - after};"
                        f" the payments it paid: {paid}"))  # fmt: skip
    return out


def _payby_cashout_checks(
    tx: sqlite3.Row, effects: list[sqlite3.Row], open_liabilities: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    """The order paid in the app ⇔ paid out + refunded + owed = its amount, exactly; not paid
    ⇒ nothing paid out, refunded or owed; PayBy refunded what the journal's refunds say."""
    if tx["state"] not in TERMINAL:
        return []  # reported as open
    from kiosk.providers.payby.wire import money_in

    ref, state, due, out_, owed = (
        tx["ref"], tx["state"], tx["amount_due"], tx["dispensed"], tx["owed"]
    )  # fmt: skip
    view = obs.payby_cashouts.get(f"{ref}-order")
    refunds = _amounts(effects, "refund", "done")
    refunded = money_in(view["refundedAmount"]).minor if view is not None else 0
    out: list[tuple[str, str]] = []
    if refunded != refunds:
        out.append(("wallet", f"{ref}: PayBy refunded {refunded}, the journal's refunds {refunds}"))
    said = f"paid out {out_}, refunded {refunded}, owed {owed}, ended {state}"
    if view is not None and view.get("status") in PAID:
        if out_ > due:
            out.append(("cashout", f"{ref}: paid {due} in the app; {said}: paid out more"))
        elif state != "unknown" and out_ + refunded + owed != due:  # unknown: levels unread
            out.append(("cashout", f"{ref}: paid {due} in the app; {said}"))
        return out
    payouts = _amounts(effects, "payout", "done", "unknown", "intent")
    if out_ or owed or refunded or payouts:
        status = view.get("status") if view is not None else "no order"
        out.append(("cashout", f"{ref}: order {status}, not paid; {said}, payouts {payouts}"))
    return out


def _payby_order_checks(obs: Observed, txs: list[sqlite3.Row]) -> list[tuple[str, str]]:
    """No order of the kiosk paid in the app unless its transaction committed it (its QR was
    printed after that commit: nobody can pay an order the journal does not name)."""
    named = {f"{tx['ref']}-order" for tx in txs if tx["provider_ref"]}
    return [
        ("wallet", f"PayBy order {number} ({view.get('status')}): paid, no QR was printed")
        for number, view in sorted(obs.payby_cashouts.items())
        if view.get("status") in PAID and number not in named
    ]


PROVIDER_CHECKS: Final[dict[str, Callable[..., list[tuple[str, str]]]]] = {
    "payby_cashin": _payby_cashin_checks,
    "paysera_cashin": _paysera_cashin_checks,
    "paysera_cashout": _paysera_cashout_checks,
    "rapyd_cashin": _rapyd_cashin_checks,
    "rapyd_cashout": _rapyd_cashout_checks,
    "cashii_cashout": _cashii_cashout_checks,
    "payby_cashout": _payby_cashout_checks,
}
"""The provider-side checks of a transaction, by its journey (``transactions.journey``)."""


def _payout_checks(tx: sqlite3.Row, effects: list[sqlite3.Row]) -> list[tuple[str, str]]:
    payouts = [e for e in effects if e["kind"] == "payout"]
    done = [e for e in payouts if e["status"] == "done"]
    out = []
    if len(done) > 1:
        out.append(("payout", f"{tx['ref']}: {len(done)} payouts done"))
    if payouts and tx["dispensed"] > tx["amount_due"]:
        out.append(("payout", f"{tx['ref']}: dispensed {tx['dispensed']} > {tx['amount_due']}"))
    short = tx["amount_due"] - tx["dispensed"]
    ended = tx["journey"].endswith("_cashout") and tx["state"] in ("completed", "owed")
    ended = ended and tx["journey"] not in SHORT_REVERSED  # judged by _rapyd_cashout_checks
    if ended and tx["owed"] != max(short, 0):
        out.append(
            ("liabilities", f"{tx['ref']}: owed {tx['owed']}, not paid out {short},"
             f" ended {tx['state']}")
        )  # fmt: skip
    return out


def _device_checks(
    txs: list[sqlite3.Row], effects: list[sqlite3.Row], obs: Observed
) -> list[tuple[str, str]]:
    credited = sum(tx["credited"] for tx in txs)
    dispensed = sum(tx["dispensed"] for tx in txs)
    unknown_in = _amounts(effects, "stack", "unknown", "intent")
    unknown_out = _amounts(effects, "payout", "unknown", "intent")
    delta = obs.held_after - obs.held_before
    notes_in = any(e["kind"] == "stack" for e in effects) or credited
    payouts = any(e["kind"] == "payout" for e in effects)
    out: list[tuple[str, str]] = []
    if payouts and not notes_in:
        paid = -delta
        if not dispensed <= paid <= dispensed + unknown_out:
            out.append(
                ("payout", f"the recycler paid out {paid}; the journal says dispensed {dispensed}"
                 f" (+ {unknown_out} unknown)")
            )  # fmt: skip
    elif not credited - dispensed - unknown_out <= delta <= credited + unknown_in - dispensed:
        out.append(
            ("cashbox", f"the device took in {delta + dispensed}; credited {credited},"
             f" unconfirmed {unknown_in}" + (f", dispensed {dispensed}" if payouts else ""))
        )  # fmt: skip
    if obs.device_note:
        out.append(("payout" if payouts else "cashbox", obs.device_note))
    return out


def _wallet_checks(obs: Observed) -> list[tuple[str, str]]:
    if obs.wallet_before is None or obs.wallet_after is None:
        return []
    from kiosk.providers.payby.wire import money_in

    paid = sum(
        money_in(view["totalAmount"]).minor
        for view in obs.orders.values()
        if _paid_by_store(view, obs.store)
    )
    sold = [v for v in obs.payby_cashouts.values() if v.get("status") in PAID]
    received = sum(money_in(v["totalAmount"]).minor for v in sold)
    refunded = sum(money_in(v["refundedAmount"]).minor for v in obs.payby_cashouts.values())
    debited = obs.wallet_before - obs.wallet_after
    if debited != paid - received + refunded:
        said = f"the store wallet went down by {debited}; orders it paid: {paid}"
        if obs.payby_cashouts:
            said += f", cash-out orders paid to it: {received}, refunded: {refunded}"
        return [("wallet", said)]
    return []


def _paysera_wallet_checks(obs: Observed, journalled: set[str]) -> list[tuple[str, str]]:
    """Each customer's Paysera wallet moved by exactly the one transaction confirmed on it (a
    cash-out's reservation code debits it, a cash-in through the allowance credits it), and
    only by a transaction the journal knows."""
    out: list[tuple[str, str]] = []
    for wallet, (before, after) in sorted(obs.paysera_wallets.items()):
        confirmed = {
            key: view
            for key, view in obs.paysera.items()
            if view.get("wallet") == wallet and view.get("status") == "confirmed"
        }
        moved = sum(
            _paysera_total(v) * (1 if v.get("type") == "automatic" else -1)
            for v in confirmed.values()
        )
        if len(confirmed) > 1:
            out.append(("wallet", f"Paysera wallet {wallet}: {len(confirmed)} confirmed"))
        if after - before != moved:
            out.append(
                ("wallet", f"Paysera wallet {wallet} moved by {after - before}; the"
                 f" transactions confirmed on it: {moved}")
            )  # fmt: skip
        for key in sorted(set(confirmed) - journalled):
            out.append(("wallet", f"Paysera wallet {wallet}: {key} confirmed, not in the journal"))
    return out


# --- one simulated kiosk ----------------------------------------------------------------------


@dataclass
class Kiosk:
    """A fresh simulated kiosk for one run of one journey (one crash point)."""

    root: Path
    files: KioskFiles
    sandbox: Sandbox
    recycler: subprocess.Popen[bytes] | None = None  # the eSSP simulator, own process
    daemon: DaemonProcess | None = None
    orders: list[str] = field(default_factory=list)
    held_before: int = 0
    wallet_before: int = 0
    paysera_wallets: dict[int, int] = field(default_factory=dict)  # wallet id → balance before
    seq: int = 0  # the bench's number of this kiosk: its Rapyd customers' phone numbers
    rapyd_wallets: dict[str, int] = field(default_factory=dict)  # phone → AED balance before
    cashii_accounts: dict[str, int] = field(default_factory=dict)  # account → AED before
    customers: list[threading.Thread] = field(default_factory=list)  # Cashii's, see below
    leaving: threading.Event = field(default_factory=threading.Event)  # they stop: closing

    @property
    def kiosk_id(self) -> str:
        return f"CP{self.seq:05d}"  # as Bench.kiosk writes it (the payments' metadata)

    @property
    def crash_log(self) -> Path:
        return self.root / "steps.log"

    @property
    def recycler_socket(self) -> Path:
        return self.root / "validator.sock"

    # the daemon

    def start(self, env: dict[str, str] | None = None, log_name: str = "daemon.log") -> None:
        from kiosk.simkiosk import DaemonProcess

        self.daemon = DaemonProcess(self.files, log_path=self.root / log_name, env=env)
        self.daemon.start()

    def alive(self) -> bool:
        return (
            self.daemon is not None
            and self.daemon.proc is not None
            and (self.daemon.proc.poll() is None)
        )

    def dying(self, grace: float = 2.0) -> bool:
        """After a socket failed: is the daemon going? (Its sockets close before it is
        reaped.)"""
        deadline = time.monotonic() + grace
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def close(self) -> None:
        self.leaving.set()
        for thread in self.customers:
            thread.join(5)
        if self.daemon is not None:
            self.daemon.kill()
        if self.recycler is not None and self.recycler.poll() is None:
            import subprocess

            self.recycler.send_signal(signal.SIGTERM)
            try:
                self.recycler.wait(10)
            except subprocess.TimeoutExpired:
                self.recycler.kill()
                self.recycler.wait(5)

    # reading

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        from kiosk.journal import read_rows

        return read_rows(self.files.journal, sql, args)

    def steps(self) -> list[tuple[int, str]]:
        """The durable steps the crash hook logged: (n, event kinds)."""
        if not self.crash_log.exists():
            return []
        out = []
        for line in self.crash_log.read_text().splitlines():
            n, _, kinds = line.partition(" ")
            if n.isdigit():
                out.append((int(n), kinds))
        return out

    def held(self) -> int:
        """Value of the notes the validator holds: cashbox, and the payout store."""
        if self.recycler is not None:
            state = self._recycler_state()
            stores = [state["cashbox"], state.get("levels", {})]
        else:
            path = self.files.state_dir / "sim-validator.json"
            stores = [json.loads(path.read_text())["cashbox"]] if path.exists() else []
        return sum(int(v) * int(n) for store in stores for v, n in store.items())

    def _recycler_state(self) -> dict[str, Any]:
        from drivers.sim.control import SimControl

        state: dict[str, Any] = SimControl(self.recycler_socket).call("state")["validator"]
        return state

    def wallet(self) -> int:
        from kiosk.simkiosk import STORE_PARTNER_ID

        return self.sandbox.payby.balances(STORE_PARTNER_ID)["AED"].minor

    def observe(self) -> Observed:
        from kiosk.simkiosk import STORE_PARTNER_ID

        note = ""
        if self.recycler is not None and self._recycler_state().get("paying_out"):
            note = "the recycler is still paying out after the kiosk stopped"
        views = {o: self.sandbox.payby.order_view(o) for o in self.orders}
        return Observed(
            journal=self.files.journal,
            held_before=self.held_before,
            held_after=self.held(),
            wallet_before=self.wallet_before,
            wallet_after=self.wallet(),
            orders={o: v for o, v in views.items() if v is not None},
            store=STORE_PARTNER_ID,
            device_note=note,
            paysera_wallets={
                w: (before, self.paysera_balance(w)) for w, before in self.paysera_wallets.items()
            },
            paysera=self.paysera_views(),
            rapyd_wallets={
                p: (before, self.rapyd_balance(p)) for p, before in self.rapyd_wallets.items()
            },
            rapyd=self.rapyd_views(),
            rapyd_sessions=self.rapyd_sessions(),
            cashii_accounts={
                a: (before, self.cashii_balance(a)) for a, before in self.cashii_accounts.items()
            },
            cashii=self.cashii_views(),
            payby_cashouts=self.sandbox.payby.orders_of(STORE_PARTNER_ID, f"{self.kiosk_id}-"),
        )

    def cashii_balance(self, account: str) -> int:
        return int(self.cashii_hook(f"accounts/{account}")["balances"].get("AED", 0))

    def cashii_views(self) -> dict[str, dict[str, Any]]:
        """The Cashii sandbox's payments this kiosk made (its metadata's ``kiosk_id``) or that
        this run's customers paid, as the ``payments`` hook shows them."""
        if not self.cashii_accounts:
            return {}
        return {
            str(p["id"]): p
            for p in self.cashii_hook("payments")["payments"]
            if (p.get("metadata") or {}).get("kiosk_id") == self.kiosk_id
            or p.get("from") in self.cashii_accounts
        }

    def cashii_hook(self, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """A Cashii sandbox hook (``/_sandbox/cashii/<path>``): GET, or POST ``doc``."""
        return self.hook("cashii", path, doc)

    def paysera_balance(self, wallet: int) -> int:
        return int(self.paysera_hook(f"wallets/{wallet}")["balance"])

    def paysera_views(self) -> dict[str, dict[str, Any]]:
        """The Paysera sandbox's transactions the journal names or that were reserved on this
        run's wallets (a snapshot)."""
        keys = {str(r["provider_ref"]) for r in self.rows(
            "SELECT provider_ref FROM transactions WHERE provider = 'paysera'"
            " AND provider_ref IS NOT NULL")}  # fmt: skip
        for _ in range(5):  # the sandbox's threads may add a transaction meanwhile
            try:
                txs = dict(self.sandbox.paysera.txs)
                break
            except RuntimeError:
                time.sleep(0.01)
        else:
            txs = {}
        keys |= {k for k, v in txs.items() if v.get("wallet") in self.paysera_wallets}
        return {k: json.loads(json.dumps(txs[k])) for k in keys if k in txs}

    def paysera_hook(self, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """A Paysera sandbox hook (``/_sandbox/paysera/<path>``): GET, or POST ``doc``."""
        return self.hook("paysera", path, doc)

    def rapyd_hook(self, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """A Rapyd sandbox hook (``/_sandbox/rapyd/<path>``): GET, or POST ``doc``."""
        return self.hook("rapyd", path, doc)

    def rapyd_balance(self, phone: str) -> int:
        from urllib.parse import quote

        got = self.rapyd_hook(f"wallets/{quote(phone, safe='')}")
        return sum(int(a["balance"]) for a in got["accounts"] if a["currency"] == "AED")

    def rapyd_views(self) -> dict[str, dict[str, Any]]:
        """Every transaction at the Rapyd sandbox on this run's customers' wallets, as its
        ``transactions/<id>`` hook shows it."""
        if not self.rapyd_wallets:
            return {}
        ids = [
            tid
            for tid, v in _snapshot(rapyd_sandbox(self.sandbox).ledger.txs).items()
            if v.get("phone_number") in self.rapyd_wallets
        ]
        return {tid: self.rapyd_hook(f"transactions/{tid}") for tid in ids}

    def rapyd_sessions(self) -> dict[str, dict[str, Any]]:
        """The POS sessions opened at Rapyd for this run's customers (token → session)."""
        if not self.rapyd_wallets:
            return {}
        sessions = _snapshot(rapyd_sandbox(self.sandbox).ledger.sessions)
        return {
            t: json.loads(json.dumps(s))
            for t, s in sessions.items()
            if s.get("phone_number") in self.rapyd_wallets
        }

    def hook(self, provider: str, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """A sandbox hook (``/_sandbox/<provider>/<path>``): GET, or POST ``doc``."""
        import httpx

        url = f"{self.sandbox.url}/_sandbox/{provider}/{path}"
        with httpx.Client(timeout=10.0) as http:
            reply = http.get(url) if doc is None else http.post(url, json=doc)
        reply.raise_for_status()
        out: dict[str, Any] = reply.json()
        return out

    # waiting, aware of the daemon's death

    def until(self, what: str, predicate: Callable[[], T], timeout: float = 15.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if not self.alive():
                raise Died(what)
            if time.monotonic() > deadline:
                raise Stuck(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.05)

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """A call on the daemon's simulated hardware (the customer)."""
        from drivers.sim.control import SimControl
        from kiosk.devices import boundary
        from kiosk.errors import DeviceError

        try:
            with boundary("simulated hardware"):
                return SimControl(self.files.control_socket).call(cmd, **args)
        except DeviceError as exc:
            if self.dying():
                raise Died(cmd) from exc
            raise Stuck(f"{cmd}: {exc.message}") from exc

    def open_txs(self) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(TERMINAL))
        return self.rows(
            f"SELECT ref, state FROM transactions WHERE state NOT IN ({marks})",  # noqa: S608
            tuple(sorted(TERMINAL)),
        )

    def settled(self, *, journey: bool) -> bool:
        """Every transaction ended. ``journey``: a journey's own run, which must have begun
        and printed its receipts (after a crash a receipt may stay queued for reprint)."""
        if self.open_txs():
            return False
        if self.rows("SELECT id FROM outbox WHERE op = ? AND status = 'queued'", (RAPYD_LOGOUT,)):
            return False  # a Rapyd session still to close
        if not journey:
            return True
        if not self.rows("SELECT id FROM transactions"):
            return False
        return not self.rows("SELECT id FROM receipts WHERE status = 'queued' AND attempts = 0")

    def void_wait_s(self) -> float | None:
        """When every open transaction waits on a queued outbox row: seconds until the last
        of them may be settled as not applied (its ``void_after``, plus the outbox's longest
        backoff); ``None`` when some open transaction has no such row."""
        open_ = self.open_txs()
        if not open_:
            return None
        rows = self.rows(
            "SELECT t.ref, MAX(o.void_after_ms) AS void_ms FROM transactions t"
            " JOIN outbox o ON o.tx_id = t.id AND o.status = 'queued' GROUP BY t.ref"
        )
        voids = {r["ref"]: r["void_ms"] for r in rows}
        if any(r["ref"] not in voids for r in open_):
            return None
        now_ms = time.time_ns() // 1_000_000
        last = max(int(voids[r["ref"]]) for r in open_)
        return max(0.0, (last - now_ms) / 1000) + VOID_SLACK_S

    def logout_wait_s(self) -> float | None:
        """When every transaction ended and only Rapyd closes are still queued (retried with
        the outbox's backoff: faults in chaos): seconds until the last one's next attempt, and
        a little; ``None`` otherwise."""
        if self.open_txs():
            return None
        rows = self.rows(
            "SELECT MAX(next_at_ms) AS at FROM outbox WHERE op = ? AND status = 'queued'",
            (RAPYD_LOGOUT,),
        )
        if not rows or rows[0]["at"] is None:
            return None
        now_ms = time.time_ns() // 1_000_000
        return max(0.0, (int(rows[0]["at"]) - now_ms) / 1000) + 5.0

    def wait_settled(
        self, timeout: float, *, journey: bool = True, void_cap_s: float = 0.0
    ) -> None:
        """:meth:`settled`, and no new durable step for :data:`QUIET_S`. ``void_cap_s``: when
        the time is up and the open transactions wait only for their outbox rows' ``void_after``
        (a delivery in doubt, Paysera's "not confirmed" already final), wait for that too if it
        comes within this many seconds (once); when only Rapyd closes are left, for their next
        attempts, within the same budget."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while True:
            events = self.rows("SELECT MAX(seq) AS seq FROM events WHERE tx_id IS NOT NULL")
            seq = events[0]["seq"] if events and events[0]["seq"] is not None else 0
            if seq != last:
                last, since = seq, time.monotonic()
            if self.settled(journey=journey) and time.monotonic() - since >= QUIET_S:
                return
            if not self.alive():
                raise Died("settling")
            if time.monotonic() > deadline and void_cap_s > 0:
                more = self.void_wait_s()
                if more is not None and more <= void_cap_s:
                    deadline, void_cap_s = time.monotonic() + more, 0.0
                    continue
                more = self.logout_wait_s()
                if more is not None and more <= void_cap_s:  # again after each failed close
                    deadline, void_cap_s = time.monotonic() + more, void_cap_s - more
                    continue
            if time.monotonic() > deadline:
                left = ", ".join(f"{r['ref']} {r['state']}" for r in self.open_txs())
                if not left:
                    begun = self.rows("SELECT id FROM transactions")
                    left = "receipts queued" if begun else "no transaction"
                raise Stuck(f"not settled within {timeout:.0f} s ({left})")
            time.sleep(0.05)

    # the customer and the technician

    def order(self, amount: str) -> None:
        """An online merchant's order; its QR code is shown to the kiosk's camera, and the
        kiosk takes the order (the transaction reaches ``accepting``)."""
        from kiosk.demo import make_qr_png
        from kiosk.money import Money

        order = self.sandbox.payby.create_order(Money.from_decimal(amount, "AED"))
        order_no, token_url = str(order["orderNo"]), str(order["tokenUrl"])
        self.orders.append(order_no)
        qr = make_qr_png(token_url, self.root / f"qr-{order_no}.png")
        refused = len(self.rows("SELECT id FROM transactions WHERE state = 'refused'"))
        self.control("show", path=str(qr))

        def taken() -> list[sqlite3.Row]:
            if len(self.rows("SELECT id FROM transactions WHERE state = 'refused'")) > refused:
                raise Stuck("the kiosk refused the order")  # e.g. PayBy unreachable (chaos)
            return self.rows(
                "SELECT id FROM transactions WHERE provider_ref = ? AND state = 'accepting'",
                (order_no,),
            )

        self.until("the order is taken", taken)
        self.until(  # the validator is enabled only then: a note before it would be rejected
            "the kiosk asks for notes",
            lambda: self.control("state")["panel"]["state"] == "insert_notes",
        )

    def show_code(self, text: str, name: str) -> None:
        """A code on a phone's screen, shown to the kiosk's camera; returns once the kiosk
        has begun a transaction for it."""
        from kiosk.demo import make_qr_png

        before = len(self.rows("SELECT id FROM transactions"))
        self.control("show", path=str(make_qr_png(text, self.root / f"qr-{name}.png")))
        self.until(
            "the code is taken", lambda: len(self.rows("SELECT id FROM transactions")) > before
        )

    def rapyd_wallet(self, balance: int) -> str:
        """A fresh Rapyd customer: a new phone number and its wallet (AED ``balance``)."""
        phone = f"+9715{self.seq:05d}{len(self.rapyd_wallets):03d}"
        accounts = [{"currency": "AED", "balance": balance}]
        self.rapyd_hook("wallets", {"phone_number": phone, "accounts": accounts})
        self.rapyd_wallets[phone] = balance
        return phone

    def rapyd_otp(self, phone: str) -> str:
        """A fresh OTP from the customer's app (it lives 30 s: fetch it just before use)."""
        return str(self.rapyd_hook("otps", {"phone_number": phone})["otp"])

    def rapyd_cashout(self, amount: str, balance: int) -> str:
        """A customer with ``balance`` in a fresh wallet shows the app's envelope: a fresh OTP,
        the phone number and ``amount``."""
        from urllib.parse import quote

        phone = self.rapyd_wallet(balance)
        otp = self.rapyd_otp(phone)
        envelope = (
            f"kiosk:cashout?v=1&provider=rapyd&otp={otp}&phone={quote(phone, safe='')}"
            f"&amount={amount}&currency=AED"
        )
        self.show_code(envelope, f"rapyd-cashout-{phone[1:]}")
        return phone

    def rapyd_cashin(self) -> str:
        """A customer with a fresh, empty wallet shows the start code (no OTP); returns once
        the kiosk asks for notes."""
        phone = self.rapyd_wallet(0)
        self.show_code("kiosk:cashin?v=1&provider=rapyd", f"rapyd-start-{phone[1:]}")

        def asking() -> bool:
            if self.rows("SELECT id FROM transactions WHERE state = 'refused'"):
                raise Stuck("the kiosk refused the cash-in")  # e.g. Rapyd offline (chaos)
            return bool(self.control("state")["panel"]["state"] == "insert_notes")

        self.until("the kiosk asks for notes", asking)
        return phone

    def rapyd_cashin_otp(self, phone: str) -> None:
        """Once the kiosk asks for the code again (``awaiting_otp``, the panel READY), the
        customer makes a fresh OTP in the app and shows the envelope; returns once the kiosk
        took it (the transaction left ``awaiting_otp``)."""
        from urllib.parse import quote

        def state() -> str:
            rows = self.rows("SELECT state FROM transactions ORDER BY id DESC LIMIT 1")
            return str(rows[0]["state"]) if rows else ""

        def ready() -> bool:
            now = state()
            if now in TERMINAL:
                raise Stuck(f"the cash-in ended {now} before the OTP")  # e.g. a fault (chaos)
            return now == "awaiting_otp" and self.control("state")["panel"]["state"] == "ready"

        self.until("the kiosk asks for the OTP code", ready)
        otp = self.rapyd_otp(phone)
        envelope = f"kiosk:cashin?v=1&provider=rapyd&otp={otp}&phone={quote(phone, safe='')}"
        self.control("show", path=str(_qr(envelope, self.root / f"qr-rapyd-otp-{otp}.png")))
        self.until("the OTP code is taken", lambda: state() != "awaiting_otp")

    def cashii_account(self, balance: int) -> str:
        """A fresh Cashii customer: a new 16-digit account with AED ``balance``."""
        account = f"88{self.seq:08d}{len(self.cashii_accounts):06d}"
        self.cashii_hook("accounts", {"account": account, "balance": balance, "currency": "AED"})
        self.cashii_accounts[account] = balance
        return account

    def cashii_cashout(self, amount: str, action: str = "pay") -> str:
        """A customer with a fresh account of :data:`CASHII_BALANCE` shows the app's envelope
        with ``amount``; in the app, they ``pay`` (or ``reject``) the payment as soon as the
        kiosk made it (:meth:`cashii_customer`, whether the daemon lives or not)."""
        account = self.cashii_account(CASHII_BALANCE)
        self.cashii_customer(account, action)
        envelope = f"kiosk:cashout?v=1&provider=cashii&amount={amount}&currency=AED"
        self.show_code(envelope, f"cashii-cashout-{account}")
        return account

    def cashii_customer(self, account: str, action: str) -> None:
        """The customer's app (:meth:`app_customer`): once a Cashii transaction's payment id
        is committed (the slip can show it) and that payment exists at Cashii with the
        transaction's reference, ``pay`` it from ``account`` (or ``reject`` it), once."""

        def act(ref: str, pid: str) -> None:
            view = self.cashii_hook(f"payments/{pid}")
            if (view.get("metadata") or {}).get("reference") != ref:
                return  # not this transaction's (cannot happen): never pay it
            if view.get("status") == "pending":
                self.cashii_hook(f"payments/{pid}/{action}", {"account": account})

        self.app_customer("cashii_cashout", f"cashii-customer-{account}", act)

    def payby_customer(self, payer: str) -> None:
        """The customer's PayBy app (:meth:`app_customer`): once a PayBy cash-out's order is
        committed (its QR can be printed), pay it, once, if it is still payable."""
        from kiosk.sandbox.kit import HookError

        def act(ref: str, order_no: str) -> None:
            view = self.sandbox.payby.order_view(order_no)
            if view is None or view.get("merchantOrderNo") != f"{ref}-order":
                return  # not this transaction's (cannot happen): never pay it
            with contextlib.suppress(HookError):  # cancelled or expired meanwhile: too late
                self.sandbox.payby.app_pay(order_no, payer)

        self.app_customer("payby_cashout", f"payby-customer-{payer}", act)

    def app_customer(self, journey: str, name: str, act: Callable[[str, str], None]) -> None:
        """A customer's app, in a thread of the bench that outlives the daemon (until the
        kiosk is closed): for each transaction of ``journey`` whose provider reference is
        committed, ``act(ref, provider_ref)`` once, whether the daemon is killed before,
        during or after. A payment whose reference the journal never got (killed between the
        create and its commit) had no slip: nobody pays it."""
        from kiosk.journal import read_rows

        done: set[str] = set()

        def run() -> None:
            import httpx

            while not self.leaving.is_set():
                try:
                    rows = read_rows(self.files.journal, "SELECT ref, provider_ref FROM"
                                     " transactions WHERE journey = ?"
                                     " AND provider_ref IS NOT NULL", (journey,))  # fmt: skip
                    for r in rows:
                        if str(r["provider_ref"]) not in done:
                            act(str(r["ref"]), str(r["provider_ref"]))
                            done.add(str(r["provider_ref"]))
                except (OSError, sqlite3.Error, httpx.HTTPError, KeyError, ValueError) as exc:
                    log.debug("the customer looks again: %s", exc)  # no journal yet…
                self.leaving.wait(CASHII_TICK_S)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.customers.append(thread)

    def payby_cashout(self, amount: str, *, pays: bool = True) -> None:
        """A customer shows the PayBy cash-out envelope with ``amount``; their app pays the
        order's QR as soon as the kiosk committed the order (:meth:`payby_customer`), or, not
        ``pays``, they change their mind and press the red button once the slip is out."""
        payer = f"1000{self.seq:08d}"
        if pays:
            self.payby_customer(payer)
        envelope = f"kiosk:cashout?v=1&provider=payby&amount={amount}&currency=AED"
        self.show_code(envelope, f"payby-cashout-{payer}")
        if pays:
            return

        def slip_out() -> bool:
            rows = self.rows("SELECT t.state, (SELECT COUNT(*) FROM receipts r WHERE"
                             " r.tx_id = t.id AND r.status = 'printed') AS printed"
                             " FROM transactions t ORDER BY t.id DESC LIMIT 1")  # fmt: skip
            if not rows:
                return False
            state = rows[0]["state"]
            return (
                state in TERMINAL
                or state == "pending"
                or (state == "waiting" and rows[0]["printed"] > 0)
            )

        self.until("the pay slip is out", slip_out)
        if self.rows("SELECT state FROM transactions ORDER BY id DESC LIMIT 1")[0][0] == "waiting":
            self.press("cancel")

    def paysera_wallet(self, balance: int) -> int:
        """A fresh customer wallet at the Paysera sandbox (AED, ``balance`` minor units)."""
        wallet = int(self.paysera_hook("wallets", {"currency": "AED", "balance": balance})[
            "wallet_id"])  # fmt: skip
        self.paysera_wallets[wallet] = balance
        return wallet

    def paysera_cashout(self, amount: str, balance: int) -> None:
        """A customer with ``balance`` in a fresh wallet shows the app's envelope: a fresh
        reservation code and ``amount`` (no preset to choose)."""
        wallet = self.paysera_wallet(balance)
        code = str(self.paysera_hook("codes", {"wallet_id": wallet})["code"])
        envelope = f"kiosk:cashout?v=1&provider=paysera&code={code}&amount={amount}&currency=AED"
        self.show_code(envelope, f"cashout-{wallet}")

    def paysera_cashin(self) -> int:
        """A customer shows the EVP code of a fresh, empty wallet; returns once the kiosk
        asks for notes."""
        wallet = self.paysera_wallet(0)
        self.show_code(f"EVP{wallet:012d}", f"cashin-{wallet}")

        def asking() -> bool:
            if self.rows("SELECT id FROM transactions WHERE state = 'refused'"):
                raise Stuck("the kiosk refused the cash-in")  # e.g. Paysera offline (chaos)
            return bool(self.control("state")["panel"]["state"] == "insert_notes")

        self.until("the kiosk asks for notes", asking)
        return wallet

    def insert(self, value: int) -> None:
        """A note goes in; returns once the journal credits it."""
        before = self.credited()
        self.control("insert", value=value)
        self.until(f"note {value} credited", lambda: self.credited() >= before + value)

    def credited(self) -> int:
        return sum(r["credited"] for r in self.rows("SELECT credited FROM transactions"))

    def press(self, button: str) -> None:
        self.control("press", button=button)

    def payout(self, amount: int) -> None:
        from kiosk import admin
        from kiosk.errors import KioskError

        sock = self.files.state_dir / "admin.sock"
        self.until("the admin socket listens", sock.exists)  # bound only after READY=1
        try:
            reply = admin.call(sock, {"cmd": "payout", "amount": amount})
        except (KioskError, OSError, ValueError) as exc:
            if self.dying():
                raise Died("payout") from exc
            raise Stuck(f"payout: {exc}") from exc
        if not reply.get("ok"):
            raise Stuck(f"payout refused: {reply.get('error')}")


def _qr(text: str, path: Path) -> Path:
    from kiosk.demo import make_qr_png

    return make_qr_png(text, path)


def _snapshot(d: dict[str, Any]) -> dict[str, Any]:
    """A copy of a sandbox's dict that its threads may change meanwhile."""
    for _ in range(20):
        try:
            return dict(d)
        except RuntimeError:
            time.sleep(0.01)
    return {}


def rapyd_sandbox(sandbox: Sandbox) -> RapydSandbox:
    from kiosk.sandbox.rapyd.api import RapydSandbox

    provider = sandbox.app.providers["rapyd"]
    assert isinstance(provider, RapydSandbox)
    return provider


# --- the journeys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    name: str
    title: str
    drive: Callable[[Kiosk], None]
    ends: str  # the state the transaction ends in when nothing crashes
    recycler: bool = False
    provider: str = "payby"  # whose sandbox faults are armed at ("": no provider call)


def _cash_in(k: Kiosk) -> None:
    k.order("150.00")
    k.insert(10000)
    k.insert(5000)


def _cancel(k: Kiosk) -> None:
    k.order("500.00")
    k.insert(10000)
    k.insert(5000)
    k.press("cancel")


def _ambiguous_pay(k: Kiosk) -> None:
    from kiosk.sandbox.server import FaultMode

    k.sandbox.payby.faults.arm("payOrder", FaultMode.DROP_RESPONSE)
    _cash_in(k)


def _pending_pay(k: Kiosk) -> None:
    from kiosk.sandbox.server import FaultMode

    # The first pay is held by a slow network past the kiosk's timeout and lands later; the
    # next deliveries fail (500, not applied): the customer leaves with a PENDING receipt and
    # the outbox settles the payment in the background.
    k.sandbox.payby.faults.arm("payOrder", FaultMode.HOLD, 1, 9000)
    k.sandbox.payby.faults.arm("payOrder", FaultMode.ERROR_500, 2)
    _cash_in(k)


def _test_payout(k: Kiosk) -> None:
    k.payout(7000)


def _paysera_cashout(k: Kiosk) -> None:
    k.paysera_cashout("100.00", 50000)


def _paysera_lost_confirm(k: Kiosk) -> None:
    from kiosk.sandbox.server import FaultMode

    # Paysera confirms (the wallet pays) and the reply never comes: the kiosk reads the
    # transaction, finds it confirmed and pays out; the confirm is never sent again.
    k.sandbox.paysera.faults.arm("confirm", FaultMode.DROP_RESPONSE)
    _paysera_cashout(k)


def _paysera_cashin(k: Kiosk) -> None:
    k.paysera_cashin()
    k.insert(10000)
    k.insert(5000)
    k.press("confirm")


def _paysera_cashin_lost_confirm(k: Kiosk) -> None:
    from kiosk.sandbox.server import FaultMode

    # The allowance credits the wallet and the reply is lost: the confirm is sent again
    # (refused, invalid_state) and Paysera's state settles it: credited once.
    k.sandbox.paysera.faults.arm("confirm", FaultMode.DROP_RESPONSE)
    _paysera_cashin(k)


def _rapyd_cashout(k: Kiosk) -> None:
    k.rapyd_cashout("100.00", 50000)


def _rapyd_short_payout(k: Kiosk) -> None:
    from drivers.sim.control import SimControl

    # The SMART Payout pays 100.00 as 50 + 50 and stops after the first note: 50.00 paid, the
    # other 50.00 reversed to the wallet (the receipt says so), nothing owed.
    SimControl(k.recycler_socket).call("payout_stop_after", notes=1)
    _rapyd_cashout(k)


def _rapyd_lost_withdraw(k: Kiosk) -> None:
    from kiosk.sandbox.server import FaultMode

    # Rapyd debits the wallet and the reply never comes: the same request under the same
    # idempotency key gets the first answer back; paid out once, debited once.
    rapyd_sandbox(k.sandbox).faults.arm("withdraw", FaultMode.DROP_RESPONSE)
    _rapyd_cashout(k)


def _rapyd_cashin(k: Kiosk) -> None:
    phone = k.rapyd_cashin()
    k.insert(10000)
    k.insert(5000)
    k.press("confirm")
    k.rapyd_cashin_otp(phone)


def _rapyd_cashin_lost(k: Kiosk) -> None:
    from kiosk.sandbox.server import FaultMode

    # Rapyd credits the wallet and the reply is lost: the deposit is replayed under its key
    # and answered as the first time: credited once.
    rapyd_sandbox(k.sandbox).faults.arm("deposit", FaultMode.DROP_RESPONSE)
    _rapyd_cashin(k)


def _payby_cashout(k: Kiosk) -> None:
    k.payby_cashout("100.00")


def _payby_short_payout(k: Kiosk) -> None:
    from drivers.sim.control import SimControl

    # The SMART Payout pays 100.00 as 50 + 50 and stops after the first note: 50.00 paid, the
    # other 50.00 refunded to the customer's PayBy account, nothing owed.
    SimControl(k.recycler_socket).call("payout_stop_after", notes=1)
    _payby_cashout(k)


def _payby_cancelled(k: Kiosk) -> None:
    k.payby_cashout("100.00", pays=False)


def _cashii_cashout(k: Kiosk) -> None:
    k.cashii_cashout("100.00")


def _cashii_rejected(k: Kiosk) -> None:
    k.cashii_cashout("100.00", "reject")


JOURNEYS: Final[dict[str, Journey]] = {
    j.name: j
    for j in (
        Journey("cash-in", "PayBy cash-in 150.00, notes 100 + 50: paid", _cash_in, "completed"),
        Journey("cancel", "PayBy 500.00, notes 100 + 50, cancel: owed", _cancel, "owed"),
        Journey(
            "ambiguous-pay",
            "PayBy 150.00, payOrder's reply lost: settled later",
            _ambiguous_pay,
            "completed",
        ),
        Journey(
            "pending-pay",
            "PayBy 150.00, pay held past the timeout: PENDING, settled by the outbox",
            _pending_pay,
            "completed",
        ),
        Journey(
            "test-payout",
            "technician's test payout of 70.00",
            _test_payout,
            "completed",
            True,
            "",
        ),
        Journey(
            "paysera-cashout",
            "Paysera cash-out 100.00 from a wallet of 500.00 (envelope): paid out",
            _paysera_cashout,
            "completed",
            True,
            "paysera",
        ),
        Journey(
            "paysera-lost-confirm",
            "Paysera cash-out 100.00, the confirm's reply lost after Paysera confirmed: paid out",
            _paysera_lost_confirm,
            "completed",
            True,
            "paysera",
        ),
        Journey(
            "paysera-cashin",
            "Paysera cash-in to an EVP wallet, notes 100 + 50, confirm: credited",
            _paysera_cashin,
            "completed",
            False,
            "paysera",
        ),
        Journey(
            "paysera-cashin-lost",
            "Paysera cash-in 150.00, the confirm's reply lost after Paysera credited: credited",
            _paysera_cashin_lost_confirm,
            "completed",
            False,
            "paysera",
        ),
        Journey(
            "rapyd-cashout",
            "Rapyd cash-out 100.00 by OTP from a wallet of 500.00 (envelope): paid out",
            _rapyd_cashout,
            "completed",
            True,
            "rapyd",
        ),
        Journey(
            "rapyd-short-payout",
            "Rapyd cash-out 100.00, the SMART Payout stops after 50.00: the rest reversed",
            _rapyd_short_payout,
            "completed",
            True,
            "rapyd",
        ),
        Journey(
            "rapyd-lost-withdraw",
            "Rapyd cash-out 100.00, the withdraw's reply lost after Rapyd debited: paid out",
            _rapyd_lost_withdraw,
            "completed",
            True,
            "rapyd",
        ),
        Journey(
            "rapyd-cashin",
            "Rapyd cash-in, notes 100 + 50, confirm, then the OTP envelope: deposited",
            _rapyd_cashin,
            "completed",
            False,
            "rapyd",
        ),
        Journey(
            "rapyd-cashin-lost",
            "Rapyd cash-in 150.00, the deposit's reply lost after Rapyd credited: deposited",
            _rapyd_cashin_lost,
            "completed",
            False,
            "rapyd",
        ),
        Journey(
            "payby-cashout",
            "PayBy cash-out 100.00 (envelope), the order's QR paid in the app at once: paid out",
            _payby_cashout,
            "completed",
            True,
            "payby",
        ),
        Journey(
            "payby-short-payout",
            "PayBy cash-out 100.00, the SMART Payout stops after 50.00: the rest refunded",
            _payby_short_payout,
            "completed",
            True,
            "payby",
        ),
        Journey(
            "payby-cancelled",
            "PayBy cash-out 100.00, the red button once the slip is out: the order cancelled",
            _payby_cancelled,
            "void",
            True,
            "payby",
        ),
        Journey(
            "cashii-cashout",
            "Cashii cash-out 100.00 (envelope), the slip paid in the app at once: paid out",
            _cashii_cashout,
            "completed",
            True,
            "cashii",
        ),
        Journey(
            "cashii-rejected",
            "Cashii cash-out 100.00 (envelope), the payment rejected in the app: void",
            _cashii_rejected,
            "void",
            True,
            "cashii",
        ),
    )
}


# --- running points ---------------------------------------------------------------------------


@dataclass
class Violation:
    journey: str
    step: int  # 0: the run without a crash
    when: str  # before | after | "" (no crash)
    kinds: str  # the event kinds of the step
    invariant: str
    detail: str

    def line(self) -> str:
        at = f"step {self.step} {self.when} ({self.kinds})" if self.step else "no crash"
        return f"{self.journey}: {at}: {self.invariant}: {self.detail}"


@dataclass
class JourneyReport:
    name: str
    steps: list[tuple[int, str]] = field(default_factory=list)
    points_run: int = 0
    not_reached: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # the run without a crash failed: no points were run
    orphans: list[str] = field(default_factory=list)  # points that left a session unknown

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(INVARIANTS, 0)
        for v in self.violations:
            out[v.invariant] = out.get(v.invariant, 0) + 1
        return out


class Bench:
    """One sandbox (PayBy, Paysera, Rapyd and Cashii) for the whole run; a fresh kiosk for every
    point."""

    def __init__(self, root: Path, sandbox: Sandbox, pending_s: float = 60.0) -> None:
        self.root, self.sandbox, self.pending_s = root, sandbox, pending_s
        self._seq = 0

    @contextlib.contextmanager
    def kiosk(self, journey: Journey, name: str) -> Iterator[Kiosk]:
        from kiosk.simkiosk import STORE_BALANCE, sandbox_kiosk

        self._seq += 1
        root = self.root / name
        options: dict[str, Any] = {"kiosk_id": f"CP{self._seq:05d}"}  # own storePaymentNos
        if journey.recycler:
            options.update(validator="essp", validator_port=str(root / "validator"), payout=True)
        self._clear_faults()
        recycler = _spawn_recycler(root) if journey.recycler else None
        k: Kiosk | None = None
        try:
            files = sandbox_kiosk(root / "kiosk", self.sandbox, balance=STORE_BALANCE, **options)
            k = Kiosk(root, files, self.sandbox, recycler, seq=self._seq)
            k.held_before, k.wallet_before = k.held(), k.wallet()
            yield k
        finally:
            if k is not None:
                k.close()
            elif recycler is not None:
                recycler.kill()
                recycler.wait(5)
            self._clear_faults()

    def _clear_faults(self) -> None:
        self.sandbox.payby.faults.clear()
        self.sandbox.paysera.faults.clear()
        rapyd_sandbox(self.sandbox).faults.clear()
        self.faults("cashii").clear()

    def faults(self, provider: str) -> FaultPlan:
        """The fault plan of ``provider``'s sandbox."""
        from kiosk.sandbox.kit import FaultPlan

        plan = self.sandbox.app.providers[provider].faults  # type: ignore[attr-defined]
        assert isinstance(plan, FaultPlan)
        return plan

    def count_steps(self, journey: Journey, report: JourneyReport) -> None:
        """The run without a crash: its steps, and the invariants after it."""
        with self.kiosk(journey, f"{journey.name}-count") as k:
            k.start(env={"KIOSK_CRASH_LOG": str(k.crash_log)})
            journey.drive(k)
            k.wait_settled(SETTLE_S)
            k.stop()
            ended = [r["state"] for r in k.rows("SELECT state FROM transactions")]
            if ended != [journey.ends]:
                raise Stuck(f"ended {ended}, expected [{journey.ends!r}]")
            report.steps = k.steps()
            self._record(report, k, 0, "", "")

    def run_point(self, journey: Journey, report: JourneyReport, step: int, when: str) -> bool:
        """Crash at ``step``/``when``, restart, check. False when the point was not reached."""
        kinds = dict(report.steps).get(step, "?")
        with self.kiosk(journey, f"{journey.name}-{step:02d}-{when}") as k:
            k.start(env={"KIOSK_CRASH_AT": f"{step}:{when}", "KIOSK_CRASH_LOG": str(k.crash_log)})
            try:
                journey.drive(k)
                k.wait_settled(SETTLE_S)
            except Died:
                pass
            except Stuck as exc:
                if not k.dying(1.0):
                    report.violations.append(
                        Violation(journey.name, step, when, kinds, "daemon", f"stuck: {exc}")
                    )
                    return True
            if not k.dying(0.3):
                k.stop()
                return False
            if when == "after":
                kinds = dict(k.steps()).get(step, kinds)
            self._after_crash(journey, report, k, step, when, kinds)
        return True

    def _after_crash(
        self, journey: Journey, report: JourneyReport, k: Kiosk, step: int, when: str, kinds: str
    ) -> None:
        def violation(invariant: str, detail: str) -> None:
            report.violations.append(Violation(journey.name, step, when, kinds, invariant, detail))

        assert k.daemon is not None and k.daemon.proc is not None
        code = k.daemon.proc.returncode
        if code != -signal.SIGKILL:
            violation("daemon", f"exited with {code} instead of the crash hook's SIGKILL")
        try:
            k.start(log_name="daemon-restarted.log")
        except (RuntimeError, TimeoutError) as exc:
            violation("daemon", f"restart: {exc}")
            return
        try:
            k.wait_settled(self.pending_s, journey=False, void_cap_s=VOID_CAP_S)
        except (Stuck, Died) as exc:
            if isinstance(exc, Died):
                violation("daemon", "died after the restart")
        k.stop()
        self._record(report, k, step, when, kinds)

    def _record(self, report: JourneyReport, k: Kiosk, step: int, when: str, kinds: str) -> None:
        obs = k.observe()
        for invariant, detail in check_invariants(obs):
            report.violations.append(Violation(report.name, step, when, kinds, invariant, detail))
        orphans = rapyd_orphans(obs)
        if orphans:
            at = f"{step}:{when}" if step else "no crash"
            report.orphans.append(at if orphans == 1 else f"{at} ({orphans})")


def _spawn_recycler(root: Path) -> subprocess.Popen[bytes]:
    """``kiosk sim validator --protocol essp`` (a SMART Payout) in its own process."""
    import subprocess

    root.mkdir(parents=True, exist_ok=True)
    link, sock = root / "validator", root / "validator.sock"
    with (root / "recycler.log").open("wb") as log:
        argv = ["--protocol", "essp", "--currency", "AED", "--levels", ESSP_FLOAT]
        argv += ["--link", str(link), "--control", str(sock)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "sim", "validator", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while not (link.exists() and sock.exists()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise Stuck(f"the eSSP simulator did not start; see {root / 'recycler.log'}")
        time.sleep(0.05)
    return proc


def run_journey(
    bench: Bench,
    journey: Journey,
    *,
    every: int = 1,
    only: set[int] | None = None,
    whens: tuple[str, ...] = ("before", "after"),
    progress: Callable[[str], None] | None = None,
) -> JourneyReport:
    started = time.monotonic()
    report = JourneyReport(journey.name)
    try:
        bench.count_steps(journey, report)
    except (Stuck, Died, RuntimeError, TimeoutError) as exc:
        report.error = f"the run without a crash failed: {exc}"
        report.violations.append(Violation(journey.name, 0, "", "", "daemon", report.error))
        report.seconds = time.monotonic() - started
        return report
    if progress is not None:
        steps = "; ".join(f"{n} {kinds}" for n, kinds in report.steps)
        progress(f"{journey.name}: {len(report.steps)} durable steps: {steps}")
    for n, kinds in report.steps:
        if (only is not None and n not in only) or (only is None and (n - 1) % every):
            continue
        for when in whens:
            t0, found = time.monotonic(), len(report.violations)
            reached = bench.run_point(journey, report, n, when)
            report.points_run += 1
            if not reached:
                report.not_reached.append(f"{n}:{when}")
            if progress is not None:
                new = report.violations[found:]
                word = "not reached" if not reached else f"{len(new)} violations" if new else "ok"
                progress(
                    f"{journey.name} {n}:{when} ({kinds}): {word} ({time.monotonic() - t0:.1f} s)"
                )
                for v in new:
                    progress(f"  {v.invariant}: {v.detail}")
    report.seconds = time.monotonic() - started
    return report


# --- the command ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--journey",
        action="append",
        choices=sorted(JOURNEYS),
        help="run only this journey (repeatable; default: all)",
    )
    p.add_argument(
        "--journeys",
        type=journey_list,
        metavar="A,B",
        help="run only these journeys, comma-separated (with --journey: both)",
    )
    p.add_argument("--every", type=int, default=1, metavar="K", help="only every K-th step")
    p.add_argument("--step", type=int, action="append", metavar="N", help="only step N")
    p.add_argument("--when", choices=["before", "after"], help="only this side of each step")
    p.add_argument(
        "--pending-s", type=float, default=60.0, help="how long recovery may take (seconds)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--keep", action="store_true", help="keep the directories of failing points")
    p.add_argument("--dir", help="work under this directory (default: a fresh temporary one)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def main(args: argparse.Namespace) -> int:
    import os

    from kiosk.sandbox.server import start_sandbox

    if args.every < 1:
        print("kiosk bench crashpoints: --every must be 1 or more", file=sys.stderr)
        return 2
    if any(os.environ.get(v) for v in ("KIOSK_CRASH_AT", "KIOSK_CRASH_LOG")):
        print("kiosk bench crashpoints: unset KIOSK_CRASH_AT/KIOSK_CRASH_LOG", file=sys.stderr)
        return 2
    import tempfile

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kiosk-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    picked = [*(args.journey or ()), *(args.journeys or ())]
    names = list(dict.fromkeys(picked)) or list(JOURNEYS)
    whens = (args.when,) if args.when else ("before", "after")

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    reports = []
    try:
        with start_sandbox(root / "sandbox") as sandbox:
            bench = Bench(root, sandbox, pending_s=args.pending_s)
            for name in names:
                reports.append(
                    run_journey(
                        bench,
                        JOURNEYS[name],
                        every=args.every,
                        only=set(args.step) if args.step else None,
                        whens=whens,
                        progress=progress,
                    )
                )
    finally:
        failing = _cleanup(root, reports, keep=args.keep, own=not args.dir)
    print(render_json(reports) if args.json else render_text(reports))
    if failing:
        print(f"kept: {', '.join(str(p) for p in failing)}", file=sys.stderr)
    return 1 if any(r.violations for r in reports) else 0


def journey_list(text: str) -> list[str]:
    """``--journeys a,b``: names of :data:`JOURNEYS`, comma-separated."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in JOURNEYS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown journey {', '.join(unknown) or '(none)'}; one of {', '.join(JOURNEYS)}"
        )
    return names


def _cleanup(root: Path, reports: list[JourneyReport], *, keep: bool, own: bool) -> list[Path]:
    """Remove every point's directory except, with ``keep``, the failing ones."""
    import shutil

    failing = {
        f"{v.journey}-{v.step:02d}-{v.when}" if v.step else f"{v.journey}-count"
        for r in reports
        for v in r.violations
    }
    kept = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        if keep and d.name in failing:
            kept.append(d)
        elif d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
    if own and not kept:
        shutil.rmtree(root, ignore_errors=True)
    return kept


SHORT: Final = {
    "cashbox": "cash",
    "liabilities": "liab",
    "paid+owed": "paid+owed",
    "unpaid": "unpaid",
    "wallet": "wallet",
    "cashout": "cashout",
    "payout": "payout",
    "intent": "intent",
    "chain": "chain",
    "open": "open",
    "session": "session",
    "daemon": "daemon",
}


def render_text(reports: list[JourneyReport]) -> str:
    head = ["journey", "steps", "points", "unreached", "time s", *SHORT.values()]
    rows = [
        [
            r.name,
            str(len(r.steps)),
            str(r.points_run),
            str(len(r.not_reached)),
            f"{r.seconds:.0f}",
            *(str(c) for c in r.counts().values()),
        ]
        for r in reports
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *rows]
    ]
    for r in reports:
        if r.not_reached:
            lines.append(f"{r.name}: not reached: {', '.join(r.not_reached)}")
    for r in reports:
        if r.orphans:
            lines.append(
                f"{r.name}: a Rapyd session the kiosk never knew of (opened at Rapyd, no close"
                f" row committed; no money on it) at {', '.join(r.orphans)}"
            )
    violations = [v for r in reports for v in r.violations]
    if violations:
        lines.append("")
        lines.append(f"{len(violations)} violations:")
        lines += [f"  {v.line()}" for v in violations]
    else:
        lines.append("no violations")
    return "\n".join(lines)


def render_json(reports: list[JourneyReport]) -> str:
    doc = {
        "invariants": INVARIANTS,
        "journeys": [
            {
                "name": r.name,
                "title": JOURNEYS[r.name].title,
                "steps": [{"step": n, "kinds": kinds} for n, kinds in r.steps],
                "points_run": r.points_run,
                "not_reached": r.not_reached,
                "violations": r.counts(),
                "seconds": round(r.seconds, 1),
                "error": r.error,
                "orphan_sessions": r.orphans,
            }
            for r in reports
        ],
        "violations": [asdict(v) for r in reports for v in r.violations],
    }
    return json.dumps(doc, indent=2)
