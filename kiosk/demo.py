"""``kiosk demo``: the PayBy, Paysera Wallet, Rapyd POS and Cashii journeys on simulated hardware,
end to end.

Starts the sandbox (PayBy, Paysera and Rapyd, loopback) and the daemon (``kiosk run --simulate``, a
real child process), then plays the customer: an online merchant creates a 150.00 AED order;
its tokenUrl is rendered as a QR image that the simulated camera sees; notes of 100 (stacked),
200 (would overpay: returned from escrow) and 50 (stacked) are inserted; the store wallet pays
the order (PAID_SUCCESS at the sandbox) and the receipt is printed (text and PNG). Then a
customer who cancels with a note in (owed, with a receipt), and a pay request held by a slow
network (PENDING receipt; the outbox settles it in the background, paid once).

Then Paysera Wallet at a second simulated kiosk whose validator is a SMART Payout (eSSP, its
simulator on a pseudo-terminal inside the daemon; the first kiosk's validator cannot pay out):
a cash-out of 100.00 from the kiosk envelope (the recycler pays the notes, the wallet is debited
once, the journal says completed, PAID OUT receipt), a cash-in to an ``EVP`` wallet code (notes
of 50 and 100, the green CONFIRM button ends, the wallet is credited), a bare 28-digit code
Paysera does not know (an amount picked from the printed presets by presses; refused, DECLINED
receipt, nothing moved) and a code of a wallet that cannot pay 100.00 (refused, nothing moved).

Then Rapyd POS at the same kiosk: a cash-out of 100.00 from a wallet of 500.00 by the envelope
with an OTP from the sandbox (session, withdraw, the recycler pays, the wallet debited once, the
session closed, the journal completed), a cash-in (the start code, notes of 50 and 100,
CONFIRM, then the envelope with a fresh OTP: the wallet credited 150.00, the session closed,
PAID IN receipt) and an OTP older than its 30 s (the sandbox clock moved by 31 s, once and
last: the daemon signs with the real clock and Rapyd takes a timestamp within 60 s; refused as
``otp_expired``, DECLINED receipt, no session, nothing moved).

Then Cashii Remote Payments at the same kiosk: a cash-out of 100.00 from the envelope
(``kiosk:cashout?v=1&provider=cashii&amount=100.00&currency=AED``): the kiosk creates one
payment and prints its pay slip (the payment page's QR and the 16-digit code, text and PNG);
the customer pays it in the app from an account of 500.00 (the sandbox's ``pay`` hook), the
kiosk reads it ``paid`` and the recycler pays 100.00, the journal completed; then a payment the
customer rejects in the app (void, a receipt saying no cash was paid out, the recycler
unchanged).

Then PayBy's own cash-out at the same kiosk: the envelope
(``kiosk:cashout?v=1&provider=payby&amount=100.00&currency=AED``); the kiosk creates a DYNQR
order and prints its QR; the customer pays it in the PayBy app (the sandbox's ``app-pay`` hook);
the recycler pays 100.00 (PAID OUT receipt); then the same with the recycler stopping after the
first of two 50.00 notes: the other 50.00 is refunded to the customer (a partial refund,
SUCCESS), nothing owed, the receipt says both.
Prints what happened and exits 0 only if every step held.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.simkiosk import (
    STORE_BALANCE,
    STORE_PARTNER_ID,
    DaemonProcess,
    KioskFiles,
    receipts_of,
    sandbox_kiosk,
    wait_for,
)

ORDER = ("150.00", "AED")


def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(  # noqa: S310 - the loopback sandbox
        url,
        data=data,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback sandbox
        raw = resp.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def _query(files: KioskFiles, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    from kiosk.journal import read_rows

    return read_rows(files.journal, sql, args)


def _tx(files: KioskFiles) -> sqlite3.Row | None:
    rows = _query(files, "SELECT * FROM transactions ORDER BY id DESC LIMIT 1")
    return rows[0] if rows else None


def _count(files: KioskFiles, kind: str) -> int:
    return len(_query(files, "SELECT seq FROM events WHERE kind = ?", (kind,)))


def _insert(control: Any, value: int, patience_s: float = 10.0) -> None:
    """Push a note in; an acceptor still busy with the previous one refuses it, and the
    customer pushes it again."""
    from drivers.errors import CommandRefused

    deadline = time.monotonic() + patience_s
    while True:
        try:
            control.call("insert", value=value)
            return
        except CommandRefused:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_qr_png(text: str, path: Path) -> Path:
    """The merchant's page shows the tokenUrl as a QR code; this is its picture."""
    import segno

    segno.make_qr(text, error="m").save(str(path), kind="png", scale=8, border=4)
    return path


def _show_order(url: str, control: Any, root: Path, amount: str) -> dict[str, Any]:
    order: dict[str, Any] = _http(
        f"{url}/_sandbox/payby/orders", {"amount": amount, "currency": "AED"}
    )
    control.call("show", path=str(make_qr_png(order["tokenUrl"], root / f"qr-{amount}.png")))
    return order


def _ended(files: KioskFiles, ref_after: int, *states: str) -> sqlite3.Row:
    def check() -> sqlite3.Row | None:
        t = _tx(files)
        return t if t is not None and t["id"] > ref_after and t["state"] in states else None

    return wait_for(check, timeout=60)  # type: ignore[no-any-return]


def _cancel_with_notes_in(
    url: str, files: KioskFiles, control: Any, root: Path, rows: list[tuple[str, str]]
) -> None:
    """The customer gives up after one note: the cash is owed, with a receipt saying so."""
    last = _tx(files)
    before = last["id"] if last is not None else 0
    time.sleep(3.5)  # the panel shows the last result for a few seconds
    _show_order(url, control, root, "100.00")
    wait_for(
        lambda: (t := _tx(files)) is not None and t["id"] > before and t["state"] == "accepting"
    )
    _insert(control, 5000)
    wait_for(lambda: (t := _tx(files)) is not None and t["credited"] == 5000)
    control.call("press", button="cancel")
    tx = _ended(files, before, "owed", "cancelled", "completed")
    if tx["state"] != "owed" or tx["owed"] != 5000:
        raise RuntimeError(f"cancel with a note in ended {tx['state']}, owed {tx['owed']}")
    rows.append(("cancel with a note in", f"{tx['ref']} owed AED 50.00, with its receipt"))


def _pay_held_by_a_slow_network(
    url: str, files: KioskFiles, control: Any, root: Path, rows: list[tuple[str, str]]
) -> None:
    """The pay request is held by a slow network past the kiosk's timeout (and re-sends fail):
    the customer leaves with a PENDING receipt; the held request lands and the outbox
    settles the payment in the background, paid once, never owed."""
    last = _tx(files)
    before = last["id"] if last is not None else 0
    time.sleep(3.5)
    order = _show_order(url, control, root, "50.00")
    _http(f"{url}/_sandbox/payby/faults", {"op": "payOrder", "mode": "hold", "delay_s": 9})
    _http(f"{url}/_sandbox/payby/faults", {"op": "payOrder", "mode": "error_500", "count": 2})
    wait_for(
        lambda: (t := _tx(files)) is not None and t["id"] > before and t["state"] == "accepting"
    )
    _insert(control, 5000)
    tx = _ended(files, before, "pending", "completed", "owed")
    rows.append(("pay held by the network", f"{tx['ref']} {tx['state']}: PENDING receipt printed"))
    if tx["state"] != "pending":
        raise RuntimeError(f"expected pending, got {tx['state']}")
    tx = _ended(files, before, "completed", "owed")
    remote = _http(f"{url}/_sandbox/payby/orders/{order['orderNo']}")
    if tx["state"] != "completed" or remote.get("status") != "PAID_SUCCESS":
        raise RuntimeError(f"pending payment ended {tx['state']}, order {remote.get('status')}")
    rows.append(("outbox, in the background", f"{tx['ref']} completed: paid once, nothing owed"))


PAYSERA_KIOSK = "KSK-DEMO-PSR"
PAYSERA_WALLET = 50000  # AED 500.00 in the cash-out customer's wallet
CASHOUT = "100.00"


def _envelope(code: str, amount: str) -> str:
    """What the Paysera app shows for a cash-out of ``amount``: the kiosk envelope."""
    return f"kiosk:cashout?v=1&provider=paysera&code={code}&amount={amount}&currency=AED"


def _aed(minor: int) -> str:
    from kiosk.money import Money

    return str(Money.of(minor, "AED"))


class _Customers:
    """Customers at a kiosk with a SMART Payout (a recycler) that pays notes out: what they
    show the camera, what the recycler holds, the receipts and the journal's payouts."""

    provider = ""

    def __init__(
        self, url: str, files: KioskFiles, control: Any, root: Path, rows: list[tuple[str, str]]
    ) -> None:
        self.url, self.files, self.control, self.root, self.rows = url, files, control, root, rows
        self.shown = 0

    def hook(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return _http(f"{self.url}/_sandbox/{self.provider}/{path}", body)

    def levels(self) -> dict[int, int]:
        state = self.control.call("state")["validator"]
        return {int(v): int(n) for v, n in state.get("levels", {}).items() if n}

    def held(self) -> int:
        return sum(v * n for v, n in self.levels().items())

    def show(self, text: str) -> None:
        """The customer holds the code up to the camera (its QR, as the app shows it)."""
        self.shown += 1
        name = f"{self.provider}-{self.shown}.png"
        self.control.call("show", path=str(make_qr_png(text, self.root / name)))

    def start(self, text: str, *states: str) -> int:
        """Show ``text`` once the panel is ready again; the new transaction's id before."""
        last = _tx(self.files)
        before = last["id"] if last is not None else 0
        wait_for(lambda: self.control.call("state")["panel"]["state"] == "ready", timeout=30)
        self.show(text)
        if states:
            wait_for(
                lambda: (
                    (t := _tx(self.files)) is not None and t["id"] > before and t["state"] in states
                ),
                timeout=30,
            )
        return before

    def receipt(self, ref: str, word: str) -> Path:
        """The receipt of ``ref`` that says ``word`` (printed just after the journal's end)."""

        def printed() -> Path | None:
            found = receipts_of(self.files.receipts, ref)
            return next((p for p in found if word in p.read_text(encoding="utf-8")), None)

        try:
            return wait_for(printed, timeout=10)  # type: ignore[no-any-return]
        except TimeoutError:
            raise RuntimeError(f"no receipt of {ref} says {word!r}") from None

    def payouts(self, tx: sqlite3.Row) -> list[sqlite3.Row]:
        return _query(
            self.files,
            "SELECT * FROM effects WHERE tx_id = ? AND kind = 'payout'",
            (tx["id"],),
        )

    def paid_notes(self, levels: dict[int, int]) -> str:
        """The notes the recycler paid since it held ``levels`` ("2 x 50")."""
        after = self.levels()
        return " + ".join(
            f"{levels[v] - after.get(v, 0)} x {v // 100}"
            for v in sorted(levels, reverse=True)
            if levels[v] > after.get(v, 0)
        )


class _Paysera(_Customers):
    """The Paysera Wallet customers."""

    provider = "paysera"

    def wallet(self, balance: int) -> dict[str, Any]:
        w: dict[str, Any] = self.hook("wallets", {"currency": "AED", "balance": balance})
        return w

    def balance(self, w: dict[str, Any]) -> tuple[int, int]:
        got = self.hook(f"wallets/{w['wallet_id']}")
        return int(got["balance"]), int(got["held"])

    # --- the journeys ---------------------------------------------------------------------

    def cash_out(self) -> None:
        w = self.wallet(PAYSERA_WALLET)
        code = str(self.hook("codes", {"wallet_id": w["wallet_id"]})["code"])
        self.rows.append(
            (
                "Paysera wallet",
                f"{w['evp']} holds {_aed(PAYSERA_WALLET)}; the app gives a 28-digit"
                " reservation code",
            )
        )
        levels, held = self.levels(), self.held()
        before = self.start(_envelope(code, CASHOUT))
        self.rows.append(
            ("customer shows envelope", f"kiosk:cashout?...&provider=paysera&amount={CASHOUT}")
        )
        tx = _ended(self.files, before, "completed", "owed", "refused", "pending", "unknown")
        if tx["state"] != "completed":
            raise RuntimeError(f"Paysera cash-out ended {tx['state']} ({tx['reason']})")
        paid = held - self.held()
        if paid != 10000 or tx["dispensed"] != 10000:
            raise RuntimeError(f"the recycler paid out {paid}, the journal says {tx['dispensed']}")
        notes = self.paid_notes(levels)
        self.rows.append(
            (
                "Paysera cash-out",
                f"{tx['ref']}: created, reserved with the code, confirmed;"
                f" the recycler paid out {_aed(paid)} ({notes})",
            )
        )
        remote = self.remote(tx)
        bal = self.balance(w)
        if bal != (PAYSERA_WALLET - 10000, 0) or remote.get("status") != "confirmed":
            raise RuntimeError(f"wallet {bal} (balance, held), transaction {remote.get('status')}")
        self.rows.append(
            (
                "wallet after",
                f"{_aed(PAYSERA_WALLET)} -> {_aed(bal[0])}: debited once,"
                f" transaction {tx['provider_ref']} confirmed",
            )
        )
        payouts = self.payouts(tx)
        if len(payouts) != 1:
            raise RuntimeError(f"{len(payouts)} payouts in the journal")
        receipt = self.receipt(tx["ref"], "PAID OUT")
        self.rows.append(("receipt (ESC/POS)", f"{receipt.with_suffix('.png')} (PAID OUT)"))
        self.rows.append(
            (
                "journal",
                f"{tx['ref']} completed, one payout of {_aed(tx['dispensed'])}, nothing owed",
            )
        )

    def cash_in(self) -> None:
        w = self.wallet(0)
        before = self.start(w["evp"], "accepting")
        self.rows.append(("customer shows EVP code", f"{w['evp']}: insert notes, then CONFIRM"))
        for total, value in ((5000, 5000), (15000, 10000)):
            _insert(self.control, value)
            wait_for(lambda t=total: (x := _tx(self.files)) is not None and x["credited"] == t)
        self.control.call("press", button="confirm")
        tx = _ended(self.files, before, "completed", "owed", "pending", "cancelled")
        bal = self.balance(w)
        if tx["state"] != "completed" or bal != (15000, 0):
            raise RuntimeError(f"cash-in ended {tx['state']} ({tx['reason']}), wallet {bal}")
        self.receipt(tx["ref"], "PAID IN")
        self.rows.append(
            (
                "Paysera cash-in",
                f"{tx['ref']}: notes 50 + 100, CONFIRM pressed; wallet"
                f" {_aed(0)} -> {_aed(bal[0])}, PAID IN receipt",
            )
        )

    def declined(
        self, name: str, text: str, reason: str, word: str, w: dict[str, Any], presses: int = 0
    ) -> sqlite3.Row:
        """``text`` refused for ``reason``: a DECLINED receipt saying ``word``; neither the
        recycler nor wallet ``w`` moved. ``presses``: a bare code, the preset picked so."""
        held, bal = self.held(), self.balance(w)
        before = self.start(text)
        if presses:
            wait_for(lambda: self.control.call("state")["panel"]["state"] == "choose", timeout=30)
            for _ in range(presses):
                self.control.call("press", button="confirm")
                time.sleep(0.3)
        tx = _ended(self.files, before, "refused", "completed", "owed", "pending")
        if (tx["state"], tx["reason"]) != ("refused", reason):
            raise RuntimeError(f"{name}: ended {tx['state']} ({tx['reason']})")
        receipt = self.receipt(tx["ref"], "NOT DONE")
        if word not in receipt.read_text(encoding="utf-8"):
            raise RuntimeError(f"{name}: the DECLINED receipt does not say {word!r}")
        if self.held() != held or self.balance(w) != bal or self.payouts(tx):
            raise RuntimeError(f"{name}: money moved")
        if tx["provider_ref"]:  # the reservation Paysera may hold is revoked (the outbox)
            try:
                wait_for(lambda: self.remote(tx)["status"] == "revoked", timeout=15)
            except TimeoutError:
                raise RuntimeError(f"{name}: Paysera's transaction is not revoked") from None
        return tx

    def remote(self, tx: sqlite3.Row) -> dict[str, Any]:
        found: dict[str, Any] = self.hook(f"transactions/{tx['provider_ref']}")
        return found

    def invalid_code(self) -> None:
        w = self.wallet(PAYSERA_WALLET)
        unknown = "4" * 28  # a bare code: the kiosk prints its presets, 2 presses: 100.00
        tx = self.declined("invalid code", unknown, "invalid_code", "not accepted", w, presses=2)
        self.rows.append(
            (
                "invalid code",
                f"{tx['ref']}: a bare 28-digit code Paysera does not know, {_aed(tx['amount_due'])}"
                " picked with 2 presses: refused (invalid_code), DECLINED receipt, transaction"
                " revoked, nothing moved",
            )
        )

    def insufficient_funds(self) -> None:
        w = self.wallet(2000)
        code = str(self.hook("codes", {"wallet_id": w["wallet_id"]})["code"])
        tx = self.declined(
            "insufficient funds",
            _envelope(code, CASHOUT),
            "insufficient_funds",
            "Not enough funds",
            w,
        )
        self.rows.append(
            (
                "insufficient funds",
                f"{tx['ref']}: AED {CASHOUT} from a wallet of {_aed(2000)}: refused"
                " (insufficient_funds), DECLINED receipt, transaction revoked, nothing moved",
            )
        )


RAPYD_PHONE = "+971501234567"  # the cash-out customer (and the expired OTP)
RAPYD_CASHIN_PHONE = "+971502345678"  # the cash-in customer
RAPYD_WALLET = 50000  # AED 500.00
RAPYD_START = "kiosk:cashin?v=1&provider=rapyd"


def _rapyd_code(action: str, otp: str, phone: str, amount: str | None = None) -> str:
    """What the Rapyd app shows: the kiosk envelope with the OTP and the phone number."""
    code = f"kiosk:{action}?v=1&provider=rapyd&otp={otp}&phone={urllib.parse.quote(phone)}"
    return code if amount is None else f"{code}&amount={amount}&currency=AED"


class _Rapyd(_Customers):
    """The Rapyd POS customers: each shows an envelope with an OTP from the app (30 s)."""

    provider = "rapyd"

    def wallet(self, phone: str, balance: int) -> None:
        accounts = [{"currency": "AED", "balance": balance}]
        self.hook("wallets", {"phone_number": phone, "accounts": accounts})

    def otp(self, phone: str) -> str:
        return str(self.hook("otps", {"phone_number": phone})["otp"])

    def balance(self, phone: str) -> int:
        got = self.hook(f"wallets/{urllib.parse.quote(phone, safe='')}")
        return sum(int(a["balance"]) for a in got["accounts"] if a["currency"] == "AED")

    def sessions(self) -> tuple[int, int]:
        """(unclosed, closed) POS sessions at Rapyd."""
        got = self.hook("sessions")
        return len(got["unclosed"]), int(got["closed"])

    def closed(self, name: str, closed_before: int, opened: int = 1) -> int:
        """Every session closed again, ``opened`` more than before (the close may go through
        the outbox just after the journey's end)."""
        try:
            wait_for(lambda: self.sessions() == (0, closed_before + opened), timeout=15)
        except TimeoutError:
            raise RuntimeError(f"{name}: sessions at Rapyd {self.sessions()}") from None
        return closed_before + opened

    def cash_out(self) -> None:
        self.wallet(RAPYD_PHONE, RAPYD_WALLET)
        _, closed = self.sessions()
        levels, held = self.levels(), self.held()
        otp = self.otp(RAPYD_PHONE)
        self.rows.append(
            (
                "Rapyd wallet",
                f"{RAPYD_PHONE} holds {_aed(RAPYD_WALLET)}; the app gives a 6-digit OTP (30 s)",
            )
        )
        before = self.start(_rapyd_code("cashout", otp, RAPYD_PHONE, CASHOUT))
        self.rows.append(
            ("customer shows envelope", f"kiosk:cashout?...&provider=rapyd&amount={CASHOUT}")
        )
        tx = _ended(self.files, before, "completed", "owed", "refused", "pending", "unknown")
        if tx["state"] != "completed":
            raise RuntimeError(f"Rapyd cash-out ended {tx['state']} ({tx['reason']})")
        paid = held - self.held()
        if paid != 10000 or tx["dispensed"] != 10000:
            raise RuntimeError(f"the recycler paid out {paid}, the journal says {tx['dispensed']}")
        self.rows.append(
            (
                "Rapyd cash-out",
                f"{tx['ref']}: session opened with the OTP, withdrawn;"
                f" the recycler paid out {_aed(paid)} ({self.paid_notes(levels)})",
            )
        )
        remote: dict[str, Any] = self.hook(f"transactions/{tx['provider_ref']}")
        bal = self.balance(RAPYD_PHONE)
        if bal != RAPYD_WALLET - 10000 or (remote["kind"], remote["amount"]) != ("withdraw", 10000):
            raise RuntimeError(f"wallet {bal}, transaction {remote}")
        if remote.get("reversed"):
            raise RuntimeError(f"Rapyd's withdrawal was reversed by {remote['reversed']}")
        self.closed("Rapyd cash-out", closed)
        self.rows.append(
            (
                "wallet after",
                f"{_aed(RAPYD_WALLET)} -> {_aed(bal)}: debited once (withdrawal"
                f" {tx['provider_ref']}), session closed",
            )
        )
        if len(self.payouts(tx)) != 1:
            raise RuntimeError(f"{len(self.payouts(tx))} payouts in the journal")
        receipt = self.receipt(tx["ref"], "PAID OUT")
        self.rows.append(("receipt (ESC/POS)", f"{receipt.with_suffix('.png')} (PAID OUT)"))
        self.rows.append(
            (
                "journal",
                f"{tx['ref']} completed, one payout of {_aed(tx['dispensed'])}, nothing owed",
            )
        )

    def cash_in(self) -> None:
        self.wallet(RAPYD_CASHIN_PHONE, 0)
        _, closed = self.sessions()
        before = self.start(RAPYD_START, "accepting")
        for total, value in ((5000, 5000), (15000, 10000)):
            _insert(self.control, value)
            wait_for(lambda t=total: (x := _tx(self.files)) is not None and x["credited"] == t)
        self.control.call("press", button="confirm")
        # The notes are in: the panel asks for the code again (green, READY) and the
        # customer makes a fresh OTP in the app only now (it lives 30 s).
        wait_for(
            lambda: (
                (t := _tx(self.files)) is not None
                and t["state"] == "awaiting_otp"
                and self.control.call("state")["panel"]["state"] == "ready"
            ),
            timeout=15,
        )
        self.show(_rapyd_code("cashin", self.otp(RAPYD_CASHIN_PHONE), RAPYD_CASHIN_PHONE))
        tx = _ended(self.files, before, "completed", "owed", "pending", "cancelled")
        bal = self.balance(RAPYD_CASHIN_PHONE)
        if tx["state"] != "completed" or bal != 15000:
            raise RuntimeError(f"Rapyd cash-in ended {tx['state']} ({tx['reason']}), wallet {bal}")
        self.closed("Rapyd cash-in", closed)
        self.receipt(tx["ref"], "PAID IN")
        self.rows.append(
            (
                "Rapyd cash-in",
                f"{tx['ref']}: {RAPYD_START}, notes 50 + 100, CONFIRM, then the OTP code;"
                f" wallet {_aed(0)} -> {_aed(bal)}, session closed, PAID IN receipt",
            )
        )

    def expired_otp(self) -> None:
        """An OTP older than its 30 seconds (the sandbox clock moved by 31 s: once, as the
        daemon signs with the real clock and Rapyd takes a timestamp within 60 s)."""
        held, bal, sessions = self.held(), self.balance(RAPYD_PHONE), self.sessions()
        otp = self.otp(RAPYD_PHONE)
        _http(f"{self.url}/_sandbox/clock", {"advance_s": 31})
        before = self.start(_rapyd_code("cashout", otp, RAPYD_PHONE, CASHOUT))
        tx = _ended(self.files, before, "refused", "completed", "owed", "pending")
        if (tx["state"], tx["reason"]) != ("refused", "otp_expired"):
            raise RuntimeError(f"expired OTP: ended {tx['state']} ({tx['reason']})")
        receipt = self.receipt(tx["ref"], "NOT DONE")
        if "expired" not in receipt.read_text(encoding="utf-8"):
            raise RuntimeError("expired OTP: the DECLINED receipt does not say so")
        moved = (self.held(), self.balance(RAPYD_PHONE), self.sessions()) != (held, bal, sessions)
        if moved or self.payouts(tx):
            raise RuntimeError("expired OTP: money moved or a session opened")
        self.rows.append(
            (
                "expired OTP",
                f"{tx['ref']}: an OTP 31 s old (sandbox clock), AED {CASHOUT}: refused"
                " (otp_expired), DECLINED receipt, no session, nothing moved",
            )
        )


CASHII_PAYER = "5550001112223334"  # the customer's Cashii account
CASHII_BALANCE = 50000  # AED 500.00 in it
CASHII_ENVELOPE = f"kiosk:cashout?v=1&provider=cashii&amount={CASHOUT}&currency=AED"


def _words(path: Path) -> str:
    """A receipt's text with its line breaks undone (the printer wraps at 48 columns)."""
    return " ".join(path.read_text(encoding="utf-8").split())


class _Cashii(_Customers):
    """The Cashii customers: the kiosk creates a payment and prints its pay slip (the payment
    page's QR and the 16-digit code); the customer pays it, or rejects it, in the app."""

    provider = "cashii"

    def account(self, balance: int) -> None:
        self.hook("accounts", {"account": CASHII_PAYER, "balance": balance, "currency": "AED"})

    def balance(self) -> int:
        got = self.hook(f"accounts/{CASHII_PAYER}")
        return int(got["balances"].get("AED", 0))

    def payments(self, ref: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's payments (of the transaction ``ref``)."""
        found: list[dict[str, Any]] = self.hook("payments")["payments"]
        return [p for p in found if ref is None or p["metadata"].get("reference") == ref]

    def slip(self) -> tuple[sqlite3.Row, dict[str, Any], Path]:
        """The envelope shown: the transaction waiting for the payment, the one payment it
        created, and the pay slip the printer simulator rendered (its ``.txt``)."""
        made = len(self.payments())
        before = self.start(CASHII_ENVELOPE, "waiting", "refused", "pending", "void")
        tx = _ended(self.files, before, "waiting", "refused", "pending", "void")
        if tx["state"] != "waiting":
            raise RuntimeError(f"Cashii cash-out ended {tx['state']} ({tx['reason']})")
        created = self.payments()[made:]
        if [p["id"] for p in created] != [tx["provider_ref"]]:
            raise RuntimeError(f"{len(created)} payments created for {tx['ref']}")
        slip = self.receipt(tx["ref"], "Amount to pay")  # the title is double width
        pid = tx["provider_ref"]
        code = " ".join(pid[i : i + 4] for i in range(0, 16, 4))
        text = _words(slip)
        if code not in text or f"payment?code={pid}" not in text or f"AED {CASHOUT}" not in text:
            raise RuntimeError(f"the pay slip {slip} lacks the code, the QR or the amount")
        return tx, created[0], slip

    def cash_out(self) -> None:
        self.account(CASHII_BALANCE)
        levels, held = self.levels(), self.held()
        self.rows.append(
            (
                "Cashii account",
                f"{CASHII_PAYER} holds {_aed(CASHII_BALANCE)} in the app",
            )
        )
        tx, payment, slip = self.slip()
        self.rows.append(
            ("customer shows envelope", f"kiosk:cashout?...&provider=cashii&amount={CASHOUT}")
        )
        code = " ".join(payment["id"][i : i + 4] for i in range(0, 16, 4))
        self.rows.append(
            (
                "pay slip (ESC/POS)",
                f"{slip.with_suffix('.png')} (+ .txt): payment {payment['id']} pending;"
                f" the payment page's QR and the code {code}",
            )
        )
        self.hook(f"payments/{payment['id']}/pay", {"account": CASHII_PAYER})
        tx = _ended(self.files, tx["id"] - 1, "completed", "owed", "void", "pending", "unknown")
        if tx["state"] != "completed":
            raise RuntimeError(f"Cashii cash-out ended {tx['state']} ({tx['reason']})")
        paid = held - self.held()
        if paid != 10000 or tx["dispensed"] != 10000:
            raise RuntimeError(f"the recycler paid out {paid}, the journal says {tx['dispensed']}")
        self.rows.append(
            (
                "Cashii cash-out",
                f"{tx['ref']}: paid in the app, read paid by the kiosk;"
                f" the recycler paid out {_aed(paid)} ({self.paid_notes(levels)})",
            )
        )
        payments = self.payments(tx["ref"])
        bal = self.balance()
        if len(payments) != 1 or payments[0]["status"] != "paid" or bal != CASHII_BALANCE - 10000:
            raise RuntimeError(f"payments {payments}, account {bal}")
        self.rows.append(
            (
                "account after",
                f"{_aed(CASHII_BALANCE)} -> {_aed(bal)}: one payment ({payment['id']}), paid",
            )
        )
        if len(self.payouts(tx)) != 1:
            raise RuntimeError(f"{len(self.payouts(tx))} payouts in the journal")
        receipt = self.receipt(tx["ref"], "PAID OUT")
        self.rows.append(("receipt (ESC/POS)", f"{receipt.with_suffix('.png')} (PAID OUT)"))
        self.rows.append(
            (
                "journal",
                f"{tx['ref']} completed, one payout of {_aed(tx['dispensed'])}, nothing owed",
            )
        )

    def rejected(self) -> None:
        """The customer rejects the payment in the app: void, nothing paid out."""
        held, bal = self.held(), self.balance()
        tx, payment, slip = self.slip()
        self.hook(f"payments/{payment['id']}/reject", {})
        tx = _ended(self.files, tx["id"] - 1, "void", "completed", "owed", "pending", "unknown")
        if (tx["state"], tx["reason"]) != ("void", "payment_rejected"):
            raise RuntimeError(f"rejected payment: ended {tx['state']} ({tx['reason']})")
        receipt = self.receipt(tx["ref"], "NOT DONE")
        if "no cash was paid out" not in _words(receipt):
            raise RuntimeError("rejected payment: the receipt does not say nothing was paid out")
        if self.held() != held or self.balance() != bal or self.payouts(tx) or tx["owed"]:
            raise RuntimeError("rejected payment: money moved")
        if [p["status"] for p in self.payments(tx["ref"])] != ["rejected"]:
            raise RuntimeError(f"rejected payment: {self.payments(tx['ref'])}")
        self.rows.append(
            (
                "payment rejected",
                f"{tx['ref']}: slip {slip.with_suffix('.png').name}, the customer rejects"
                f" payment {payment['id']} in the app: void (payment_rejected), receipt"
                ' "no cash was paid out", recycler unchanged',
            )
        )


PAYBY_PAYER = "100000777777"  # the customer's PayBy member id (their app)
PAYBY_ENVELOPE = f"kiosk:cashout?v=1&provider=payby&amount={CASHOUT}&currency=AED"


def _minor(amount: dict[str, Any]) -> int:
    """A PayBy money object of the hooks (``{"currency", "amount"}``) in minor units."""
    from kiosk.money import Money

    return Money.from_decimal(str(amount["amount"]), str(amount["currency"])).minor


class _PayBy(_Customers):
    """PayBy's own cash-out: the kiosk, as a PayBy merchant, creates an order and prints its
    QR; the customer pays it in the PayBy app; what the recycler cannot pay is refunded."""

    provider = "payby"

    def order(self, tx: sqlite3.Row) -> dict[str, Any]:
        view: dict[str, Any] = self.hook(f"orders/{tx['provider_ref']}")
        return view

    def slip(self) -> tuple[sqlite3.Row, Path]:
        before = self.start(PAYBY_ENVELOPE, "waiting", "refused", "pending", "void")
        tx = _ended(self.files, before, "waiting", "refused", "pending", "void")
        if tx["state"] != "waiting":
            raise RuntimeError(f"PayBy cash-out ended {tx['state']} ({tx['reason']})")
        slip = self.receipt(tx["ref"], "Amount to pay")
        order = self.order(tx)
        if str(order["tokenUrl"]) not in _words(slip) or order["status"] != "CREATED":
            raise RuntimeError(f"the slip {slip} lacks the order's QR, or the order is not new")
        return tx, slip

    def paid(self, tx: sqlite3.Row) -> sqlite3.Row:
        """The customer pays the QR in the PayBy app; the kiosk reads it paid and pays out."""
        self.hook(f"orders/{tx['provider_ref']}/app-pay", {"payer": PAYBY_PAYER})
        return _ended(self.files, tx["id"] - 1, "completed", "owed", "void", "pending", "unknown")

    def cash_out(self) -> None:
        levels, held = self.levels(), self.held()
        tx, slip = self.slip()
        self.rows.append(
            ("customer shows envelope", f"kiosk:cashout?...&provider=payby&amount={CASHOUT}")
        )
        self.rows.append(
            (
                "pay slip (ESC/POS)",
                f"{slip.with_suffix('.png')} (+ .txt): PayBy order {tx['provider_ref']}"
                " (DYNQR), its QR to pay in the PayBy app",
            )
        )
        tx = self.paid(tx)
        paid = held - self.held()
        if tx["state"] != "completed" or paid != 10000 or len(self.payouts(tx)) != 1:
            raise RuntimeError(f"PayBy cash-out ended {tx['state']}, the recycler paid {paid}")
        order = self.order(tx)
        if order["status"] != "PAID_SUCCESS" or _minor(order["refundedAmount"]) != 0:
            raise RuntimeError(f"PayBy's order: {order['status']}, {order['refundedAmount']}")
        receipt = self.receipt(tx["ref"], "PAID OUT")
        self.rows.append(
            (
                "PayBy cash-out",
                f"{tx['ref']}: paid in the app (PAID_SUCCESS), the recycler paid out"
                f" {_aed(paid)} ({self.paid_notes(levels)}); receipt {receipt.name}",
            )
        )

    def short_payout(self) -> None:
        """The recycler stops after one of the two notes: the other half is refunded."""
        levels, held = self.levels(), self.held()
        self.control.call("payout_stop_after", notes=1)
        tx, _ = self.slip()
        tx = self.paid(tx)
        paid = held - self.held()
        order = self.order(tx)
        refunded = _minor(order["refundedAmount"])
        if (tx["state"], tx["reason"], tx["owed"], paid) != ("completed", "refunded", 0, 5000):
            raise RuntimeError(f"short payout: ended {tx['state']} ({tx['reason']}), paid {paid}")
        if refunded != 5000:
            raise RuntimeError(f"short payout: PayBy refunded {_aed(refunded)}")
        receipt = self.receipt(tx["ref"], "refunded")
        if "AED 50.00 refunded to your PayBy account" not in _words(receipt):
            raise RuntimeError(f"short payout: the receipt {receipt} does not say the refund")
        self.rows.append(
            (
                "PayBy short payout",
                f"{tx['ref']}: the recycler stops after {self.paid_notes(levels)};"
                f" AED 50.00 refunded to the customer (partial refund {tx['ref']}-refund,"
                " SUCCESS); nothing owed; receipt: paid out 50.00, 50.00 refunded",
            )
        )


def _payout_journeys(sandbox: Any, root: Path, rows: list[tuple[str, str]]) -> bool:
    """Paysera Wallet's, Rapyd POS's and Cashii's journeys at a kiosk whose validator is a
    SMART Payout (eSSP, its simulator on a pseudo-terminal inside the daemon), which pays
    cash-outs in notes."""
    from drivers.sim.control import SimControl

    files = sandbox_kiosk(
        root / "kiosk-paysera",
        sandbox,
        kiosk_id=PAYSERA_KIOSK,
        receipts_dir=root / "receipts-paysera",
        validator="essp",
        validator_port="sim",
        payout=True,
    )
    daemon = DaemonProcess(files)
    try:
        ready = daemon.start()
        rows.append(
            (
                "payout kiosk started",
                f"ready in {ready:.2f} s (kiosk run --simulate, SMART Payout over eSSP,"
                f" pid {daemon.pid})",
            )
        )
        paysera = _Paysera(sandbox.url, files, SimControl(files.control_socket), root, rows)
        rows.append(("recycler", f"holds {_aed(paysera.held())} to pay out"))
        paysera.cash_out()
        paysera.cash_in()
        paysera.invalid_code()
        paysera.insufficient_funds()
        rapyd = _Rapyd(sandbox.url, files, paysera.control, root, rows)
        rows.append(("recycler", f"holds {_aed(rapyd.held())} to pay out"))
        rapyd.cash_out()
        rapyd.cash_in()
        rapyd.expired_otp()  # it moves the sandbox clock (Cashii does not mind)
        cashii = _Cashii(sandbox.url, files, paysera.control, root, rows)
        rows.append(("recycler", f"holds {_aed(cashii.held())} to pay out"))
        cashii.cash_out()
        cashii.rejected()
        payby = _PayBy(sandbox.url, files, paysera.control, root, rows)
        rows.append(("recycler", f"holds {_aed(payby.held())} to pay out"))
        payby.cash_out()
        payby.short_payout()
        return True
    except Exception as exc:  # the table says which step failed
        rows.append(("FAILED", f"{type(exc).__name__}: {exc} (log: {daemon.log_path})"))
        return False
    finally:
        rows.append(("payout kiosk stopped", f"exit status {daemon.stop()}"))


def _out_dir(out: Path) -> Path:
    """``--out``, made if missing; :class:`~kiosk.errors.UsageError` (exit 2) when a file is
    in the way or it cannot be written."""
    from kiosk.paths import writable_dir

    return writable_dir("--out", out, "the receipts, journal and logs")


def run_demo(out: Path | None, validator: str = "sim") -> int:
    from drivers.sim.control import SimControl
    from kiosk.sandbox.server import start_sandbox

    root = _out_dir(out) if out else Path(tempfile.mkdtemp(prefix="kiosk-demo-"))
    rows: list[tuple[str, str]] = []

    def step(name: str, fn: Callable[[], str]) -> None:
        try:
            rows.append((name, fn()))
        except Exception as exc:
            rows.append((name, f"FAILED: {exc}"))
            raise

    # The expired OTP moves the sandbox clock 31 s ahead, and the sandbox keeps it (clock.json):
    # a second run in the same DIR would move it 62 s ahead, past the 60 s Rapyd allows the
    # daemon's timestamps (signed with the real clock). Each run starts on the real clock.
    (root / "sandbox" / "clock.json").unlink(missing_ok=True)
    with start_sandbox(root / "sandbox") as sandbox:
        files = sandbox_kiosk(
            root / "kiosk", sandbox, receipts_dir=root / "receipts", validator=validator
        )
        daemon = DaemonProcess(files)
        ok = False
        try:
            step(
                "daemon started",
                lambda: f"ready in {daemon.start():.2f} s (kiosk run --simulate, pid {daemon.pid})",
            )
            control = SimControl(files.control_socket)
            order: dict[str, Any] = _http(
                f"{sandbox.url}/_sandbox/payby/orders",
                {"amount": ORDER[0], "currency": ORDER[1], "subject": "Game top up"},
            )
            rows.append(
                (
                    "merchant created order",
                    f"{ORDER[1]} {ORDER[0]}, orderNo {order['orderNo']}, {order['status']}",
                )
            )
            qr = make_qr_png(order["tokenUrl"], root / "order-qr.png")
            control.call("show", path=str(qr))
            rows.append(("customer shows QR", f"{qr.name} seen by the simulated camera"))

            tx = wait_for(lambda: (t := _tx(files)) is not None and t["state"] == "accepting" and t)
            rows.append(
                (
                    "journey started",
                    f"{tx['ref']}: order resolved, store balance ok, "
                    f"due {ORDER[1]} {tx['amount_due'] / 100:.2f}",
                )
            )

            _insert(control, 10000)
            wait_for(lambda: (t := _tx(files)) is not None and t["credited"] == 10000)
            rows.append(("note AED 100.00", "stacked, credited (10000)"))

            returned = _count(files, "note.returned")
            _insert(control, 20000)
            wait_for(lambda: _count(files, "note.returned") > returned)
            rows.append(("note AED 200.00", "returned from escrow: would overpay"))

            _insert(control, 5000)
            tx = wait_for(
                lambda: (
                    (t := _tx(files)) is not None
                    and t["state"] in ("completed", "owed", "refused", "cancelled")
                    and t
                ),
                timeout=30,
            )
            rows.append(("note AED 50.00", f"stacked; total {tx['credited'] / 100:.2f} reached"))
            if tx["state"] != "completed":
                raise RuntimeError(f"journey ended {tx['state']} ({tx['reason']})")

            remote = _http(f"{sandbox.url}/_sandbox/payby/orders/{order['orderNo']}")
            status = remote.get("status") if isinstance(remote, dict) else None
            rows.append(("PayBy order", f"{status} (paid from store wallet {STORE_PARTNER_ID})"))
            if status != "PAID_SUCCESS":
                raise RuntimeError(f"order is {status} at the sandbox")
            balance = _http(f"{sandbox.url}/_sandbox/payby/balance/{STORE_PARTNER_ID}")
            after = balance.get("balances", {}).get(ORDER[1]) if isinstance(balance, dict) else None
            rows.append(("store wallet", f"{ORDER[1]} {STORE_BALANCE} -> {ORDER[1]} {after}"))

            printed = receipts_of(files.receipts, tx["ref"])
            pngs = [p.with_suffix(".png") for p in printed if p.with_suffix(".png").exists()]
            if not pngs:
                raise RuntimeError(f"no receipt PNG in {files.receipts}")
            for p in pngs:
                rows.append(("receipt (ESC/POS)", f"{p} (+ .txt)"))
            events = len(_query(files, "SELECT seq FROM events WHERE tx_id = ?", (tx["id"],)))
            rows.append(
                (
                    "journal",
                    f"{tx['ref']} completed, {events} events, nothing owed"
                    if not tx["owed"]
                    else f"owed {tx['owed']}",
                )
            )
            _cancel_with_notes_in(sandbox.url, files, control, root, rows)
            _pay_held_by_a_slow_network(sandbox.url, files, control, root, rows)
            ok = True
        except Exception as exc:  # the table says which step failed
            rows.append(("FAILED", f"{type(exc).__name__}: {exc} (log: {daemon.log_path})"))
        finally:
            code = daemon.stop()
            rows.append(("daemon stopped", f"exit status {code}"))
        if ok:
            ok = _payout_journeys(sandbox, root, rows)

    width = max(len(name) for name, _ in rows)
    via = {"sim": "", "id003": " (JCM ID-003 on the wire)", "essp": " (ITL eSSP on the wire)"}
    print(
        "\nkiosk demo: PayBy Cash Top Up, then Paysera Wallet and Rapyd POS (cash-out, cash-in),"
        f" Cashii and PayBy (cash-out) on simulated hardware{via.get(validator, '')}\n"
    )
    for name, result in rows:
        print(f"  {name:<{width}}  {result}")
    print(f"\n  files: {root}\n")
    print("  every journey held" if ok else "  a journey FAILED", file=sys.stdout)
    return 0 if ok else 1
