"""The daemon with a wire-level validator: `kiosk sim validator` runs in its own process on a
pseudo-terminal and the daemon's real protocol driver talks to it byte for byte.

Cash-in accepting and returning notes, every fault, a power cut mid-escrow, a SIGKILL of
the daemon mid-insertion (the device keeps its own memory, as a real one does), and payouts
with the eSSP SMART Payout: whole, stopped short, and cut short by a power cut of the whole
kiosk or of the unit alone (settled exactly from the unit's INCOMPLETE PAYOUT report).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.errors import CommandRefused
from drivers.sim.control import SimControl
from kiosk.demo import make_qr_png
from kiosk.sandbox.server import Sandbox, start_sandbox
from kiosk.simkiosk import DaemonProcess, KioskFiles, receipts_of, sandbox_kiosk, wait_for

pytestmark = pytest.mark.slow
PROTOCOLS = ["id003", "essp"]
FLOAT = "1000x10,2000x10,5000x10"  # notes the SMART Payout holds at start


@dataclass
class Wire:
    sandbox: Sandbox
    files: KioskFiles
    daemon: DaemonProcess
    device: SimControl  # the validator simulator's control socket
    kiosk: SimControl  # the daemon's simulated panel, printer and camera
    tmp: Path

    def order(self, amount: str) -> dict[str, str]:
        req = urllib.request.Request(
            f"{self.sandbox.url}/_sandbox/payby/orders",
            json.dumps({"amount": amount, "currency": "AED"}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def rows(self, sql: str) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.files.journal}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql))
        finally:
            conn.close()

    def start_journey(self, amount: str) -> dict[str, str]:
        order = self.order(amount)
        qr = make_qr_png(order["tokenUrl"], self.tmp / f"qr-{order['orderNo']}.png")
        self.kiosk.call("show", path=str(qr))
        wait_for(
            lambda: self.rows(
                f"SELECT id FROM transactions WHERE provider_ref = '{order['orderNo']}'"
                " AND state = 'accepting'"
            ),
            timeout=20,
        )
        return order

    def insert(self, value: int) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.device.call("insert", value=value)
                return
            except CommandRefused:  # still busy with the previous note: push it again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def panel(self) -> str:
        return str(self.kiosk.call("state")["panel"]["state"])

    def held(self) -> int:
        """Value of every note the device holds: cashbox, and a recycler's payout store."""
        state = self.device.call("state")["validator"]
        stores = [state["cashbox"], state.get("levels", {})]
        return sum(int(v) * n for store in stores for v, n in store.items())


def _spawn_simulator(protocol: str, tmp: Path) -> subprocess.Popen[bytes]:
    link, sock = tmp / "validator", tmp / "validator.sock"
    with (tmp / "simulator.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk",
                "sim",
                "validator",
                "--protocol",
                protocol,
                "--link",
                str(link),
                "--currency",
                "AED",
                "--control",
                str(sock),
                *(["--levels", FLOAT] if protocol == "essp" else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: link.exists() and sock.exists(), timeout=20)
    return proc


@pytest.fixture(params=PROTOCOLS)
def wire(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Wire]:
    protocol = request.param
    simulator = _spawn_simulator(protocol, tmp_path)
    try:
        with start_sandbox(tmp_path / "sandbox") as sandbox:
            files = sandbox_kiosk(
                tmp_path / "kiosk",
                sandbox,
                validator=protocol,
                validator_port=str(tmp_path / "validator"),
                payout=protocol == "essp",
            )
            daemon = DaemonProcess(files)
            daemon.start()
            w = Wire(
                sandbox,
                files,
                daemon,
                SimControl(tmp_path / "validator.sock"),
                SimControl(files.control_socket),
                tmp_path,
            )
            try:
                yield w
            finally:
                w.daemon.stop()  # the test may have restarted it
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(10)


def test_cash_in_accepts_and_returns_notes(wire: Wire) -> None:
    start = wire.held()
    wire.start_journey("150.00")
    wire.insert(10000)
    wait_for(lambda: wire.rows("SELECT credited FROM transactions")[0]["credited"] == 10000)
    wire.insert(20000)  # would overpay: returned from escrow over the wire
    wait_for(lambda: wire.rows("SELECT seq FROM events WHERE kind = 'note.returned'"))
    wire.insert(5000)
    wait_for(
        lambda: wire.rows("SELECT state FROM transactions")[0]["state"] == "completed", timeout=20
    )
    assert wire.held() - start == 15000


@pytest.mark.parametrize("kind", ["jam", "fraud", "cashbox_full", "cashbox_removed", "failure"])
def test_each_fault_puts_the_kiosk_out_of_service_until_cleared(wire: Wire, kind: str) -> None:
    assert wire.panel() == "ready"
    wire.device.call("fault", kind=kind)
    wait_for(lambda: wire.panel() == "out_of_service", timeout=10)
    wire.device.call("clear_fault")
    if kind in ("fraud", "cashbox_removed"):  # a tamper latches (issue 16): a technician clears it
        from kiosk import admin

        wait_for(lambda: wire.rows("SELECT seq FROM events WHERE kind = 'device.recovered'"))
        assert wire.panel() == "out_of_service"
        assert wire.rows("SELECT seq FROM events WHERE kind = 'tamper.latched'")
        sock = wire.files.state_dir / "admin.sock"
        assert admin.call(sock, {"cmd": "tamper_clear", "technician": "t"})["cleared"] == [kind]
    wait_for(lambda: wire.panel() == "ready", timeout=10)
    faults = wire.rows("SELECT data FROM events WHERE kind = 'device.fault'")
    assert faults


def test_power_cut_mid_escrow_returns_the_note_and_owes_what_was_stacked(wire: Wire) -> None:
    start = wire.held()
    wire.start_journey("150.00")
    wire.insert(10000)
    wait_for(lambda: wire.rows("SELECT credited FROM transactions")[0]["credited"] == 10000)
    wire.insert(5000)
    wire.device.call("power", on=False)  # the note is still in the acceptor
    tx = wait_for(
        lambda: (r := wire.rows("SELECT * FROM transactions")[0])["state"] == "owed" and r,
        timeout=20,
    )
    assert tx["credited"] == 10000 and tx["owed"] == 10000
    wire.device.call("power", on=True)
    wait_for(lambda: wire.panel() == "ready", timeout=20)
    assert wire.held() - start == 10000  # the 50 was given back at power-up


def test_sigkill_of_the_daemon_mid_insertion_loses_nothing(wire: Wire) -> None:
    rng = random.Random(7)
    start = wire.held()
    for round_no in range(3):
        wire.start_journey("500.00")
        for _ in range(rng.randint(1, 4)):
            wire.insert(5000)
            time.sleep(rng.uniform(0.0, 0.2))
        os.kill(wire.daemon.pid, signal.SIGKILL)
        wire.daemon.proc.wait(10)  # type: ignore[union-attr]
        wire.daemon = DaemonProcess(wire.files, log_path=wire.tmp / f"after-{round_no}.log")
        wire.daemon.start()  # READY only after recovery
        wait_for(lambda: wire.panel() in ("ready", "out_of_service"), timeout=20)
        credited = sum(r["credited"] for r in wire.rows("SELECT credited FROM transactions"))
        unknown = sum(
            r["amount"]
            for r in wire.rows(
                "SELECT amount FROM effects WHERE kind = 'stack' AND status = 'unknown'"
            )
        )
        cashbox = wire.held() - start
        assert credited <= cashbox <= credited + unknown, (credited, cashbox, unknown)
        assert not wire.rows("SELECT id FROM effects WHERE status = 'intent'")
        for tx in wire.rows("SELECT * FROM transactions"):
            assert tx["state"] in ("owed", "cancelled", "completed"), dict(tx)


def _admin_ready(wire: Wire) -> None:
    """Until the daemon's admin socket answers: READY=1 is sent just before it is served."""
    from kiosk import admin
    from kiosk.errors import KioskError

    def answers() -> bool:
        try:
            return bool(admin.call(wire.files.state_dir / "admin.sock", {"cmd": "status"})["ok"])
        except KioskError:
            return False

    wait_for(answers, timeout=20)


def _payout(wire: Wire, amount: int) -> dict[str, object]:
    from kiosk import admin

    _admin_ready(wire)
    reply = admin.call(wire.files.state_dir / "admin.sock", {"cmd": "payout", "amount": amount})
    assert reply["ok"], reply
    return reply


def _levels_value(wire: Wire) -> int:
    levels = wire.device.call("state")["validator"]["levels"]
    return sum(int(v) * n for v, n in levels.items())


@pytest.mark.parametrize("wire", ["essp"], indirect=True)
def test_encrypted_payout_with_smart_payout(wire: Wire) -> None:
    before = _levels_value(wire)
    reply = _payout(wire, 7000)
    assert (reply["state"], reply["dispensed"], reply["owed"]) == ("completed", 7000, 0)
    assert before - _levels_value(wire) == 7000
    state = wire.device.call("state")["validator"]
    assert state["encrypted"] is True
    (eff,) = wire.rows("SELECT * FROM effects WHERE kind = 'payout'")
    assert json.loads(eff["request"])["levels_before"]
    (receipt,) = receipts_of(wire.files.receipts, str(reply["ref"]))
    assert "Cash paid out: AED 70.00" in receipt.read_text()


@pytest.mark.parametrize("wire", ["essp"], indirect=True)
def test_incomplete_payout_is_recorded_exactly(wire: Wire) -> None:
    before = _levels_value(wire)
    wire.device.call("payout_stop_after", notes=1)
    reply = _payout(wire, 7000)
    paid = before - _levels_value(wire)
    assert 0 < paid < 7000
    assert (reply["state"], reply["dispensed"], reply["owed"]) == ("owed", paid, 7000 - paid)
    (liability,) = wire.rows("SELECT * FROM liabilities")
    assert liability["amount"] == 7000 - paid


def _payout_in_background(wire: Wire) -> threading.Thread:
    """``_payout(wire, 7000)`` on a thread, once the admin socket answers; the call fails
    when the daemon or the unit dies mid-payout, which these tests mean to happen."""
    _admin_ready(wire)

    def run() -> None:
        with contextlib.suppress(Exception):  # the admin call dies with the payout
            _payout(wire, 7000)

    thread = threading.Thread(target=run, name="payout", daemon=True)
    thread.start()
    return thread


def _wait_mid_payout(wire: Wire, before: int, payout: threading.Thread) -> None:
    """Until at least one note has left the recycler and the unit is still paying."""

    def mid_payout() -> bool:
        if not payout.is_alive():
            raise RuntimeError("the payout ended before the power cut; see the daemon's log")
        state = wire.device.call("state")["validator"]
        left = before - sum(int(v) * n for v, n in state["levels"].items())
        return bool(state["paying_out"]) and left > 0

    wait_for(mid_payout, timeout=20, interval=0.01)


def _assert_settled_exactly(wire: Wire, dispensed: int) -> None:
    """The payout's transaction ended with exactly what left the recycler paid (from the
    unit's INCOMPLETE PAYOUT report when it was cut short), the rest owed once, no effect left
    as an intent, and the unit paid nothing more afterwards."""
    assert 0 < dispensed <= 7000
    (tx,) = wire.rows("SELECT * FROM transactions WHERE journey = 'local_cashout'")
    state = "completed" if dispensed == 7000 else "owed"
    ended = (tx["state"], tx["dispensed"], tx["owed"])
    assert ended == (state, dispensed, 7000 - dispensed), dict(tx)
    liabilities = wire.rows("SELECT * FROM liabilities WHERE status = 'open'")
    assert [(r["tx_id"], r["amount"]) for r in liabilities] == (
        [(tx["id"], 7000 - dispensed)] if dispensed < 7000 else []
    )
    assert not wire.rows("SELECT id FROM effects WHERE status = 'intent'")
    (eff,) = wire.rows("SELECT * FROM effects WHERE kind = 'payout'")
    assert (eff["status"], eff["amount"]) == ("done" if dispensed == 7000 else "failed", 7000)
    if dispensed < 7000:  # the unit never said the payout ended: its power-up report did
        assert json.loads(eff["outcome"]).get("settled_by") == "device_incomplete_payout"
    levels = _levels_value(wire)
    time.sleep(1.0)  # five polls: a second PAYOUT AMOUNT would move a note by now
    state = wire.device.call("state")["validator"]
    assert not state["paying_out"]
    assert _levels_value(wire) == levels


@pytest.mark.parametrize("wire", ["essp"], indirect=True)
def test_power_cut_of_the_whole_kiosk_mid_payout_is_settled_exactly(wire: Wire) -> None:
    before = _levels_value(wire)
    payout = _payout_in_background(wire)
    _wait_mid_payout(wire, before, payout)
    os.kill(wire.daemon.pid, signal.SIGKILL)  # the host dies: no more polls, no note moves
    wire.device.call("power", on=False)  # and the unit loses its power with it
    wire.daemon.proc.wait(10)  # type: ignore[union-attr]
    payout.join(10)
    dispensed = before - _levels_value(wire)
    wire.device.call("power", on=True)
    wire.daemon = DaemonProcess(wire.files, log_path=wire.tmp / "after-power-cut.log")
    wire.daemon.start()  # READY only after recovery
    wait_for(lambda: wire.panel() in ("ready", "out_of_service"), timeout=20)
    assert before - _levels_value(wire) == dispensed  # recovery paid nothing more
    _assert_settled_exactly(wire, dispensed)


@pytest.mark.parametrize("wire", ["essp"], indirect=True)
def test_power_cut_of_the_unit_alone_mid_payout_is_settled_exactly(wire: Wire) -> None:
    before = _levels_value(wire)
    payout = _payout_in_background(wire)
    _wait_mid_payout(wire, before, payout)
    wire.device.call("power", on=False)  # the daemon stays up and sees the unit go
    dispensed = before - _levels_value(wire)
    payout.join(20)  # the admin call ends when the daemon gives the payout up (left open)
    assert not payout.is_alive()
    wire.device.call("power", on=True)  # the daemon opens it again by itself (no restart)
    wait_for(
        lambda: wire.rows(
            "SELECT id FROM transactions WHERE journey = 'local_cashout'"
            " AND state NOT IN ('checking', 'dispensing')"
        ),
        timeout=20,
    )
    wait_for(lambda: wire.panel() == "ready", timeout=20)  # reopened, its report recovered
    assert before - _levels_value(wire) == dispensed
    _assert_settled_exactly(wire, dispensed)
