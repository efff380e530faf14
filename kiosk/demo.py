"""``kiosk demo``: the PayBy Cash Top Up journeys on simulated hardware, end to end.

Starts the PayBy sandbox (loopback) and the daemon (``kiosk run --simulate``, a real child
process), then plays the customer: an online merchant creates a 150.00 AED order; its tokenUrl
is rendered as a QR image that the simulated camera sees; notes of 100 (stacked), 200 (would
overpay: returned from escrow) and 50 (stacked) are inserted; the store wallet pays the order
(PAID_SUCCESS at the sandbox) and the receipt is printed (text and PNG). Then a customer who
cancels with a note in (owed, with a receipt), and a pay request held by a slow network
(PENDING receipt; the outbox settles it in the background, paid once). Prints what happened
and exits 0 only if every step held.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
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


def run_demo(out: Path | None, validator: str = "sim") -> int:
    from drivers.sim.control import SimControl
    from kiosk.sandbox.server import start_sandbox

    root = out or Path(tempfile.mkdtemp(prefix="kiosk-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []

    def step(name: str, fn: Callable[[], str]) -> None:
        try:
            rows.append((name, fn()))
        except Exception as exc:
            rows.append((name, f"FAILED: {exc}"))
            raise

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

    width = max(len(name) for name, _ in rows)
    via = {"sim": "", "id003": " (JCM ID-003 on the wire)", "essp": " (ITL eSSP on the wire)"}
    print(f"\nkiosk demo: PayBy Cash Top Up on simulated hardware{via.get(validator, '')}\n")
    for name, result in rows:
        print(f"  {name:<{width}}  {result}")
    print(f"\n  files: {root}\n")
    print("  every journey held" if ok else "  a journey FAILED", file=sys.stdout)
    return 0 if ok else 1
