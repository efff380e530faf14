"""SIGKILL the daemon while notes are being inserted; after a restart nothing is lost.

The simulated validator keeps its own non-volatile memory (cashbox counts, a note in escrow,
a note stacked but not acknowledged), like a real device. After each kill and restart, every
note the device put in its cashbox must be credited in the journal, or recorded as unknown
and owed to the customer; no transaction may be left mid-step.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from drivers.sim.control import SimControl
from kiosk.demo import make_qr_png
from kiosk.journeys import TERMINAL
from kiosk.sandbox.server import start_sandbox
from kiosk.simkiosk import DaemonProcess, KioskFiles, sandbox_kiosk, wait_for

pytestmark = pytest.mark.slow


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _rows(files: KioskFiles, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{files.journal}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def check_nothing_lost(files: KioskFiles) -> dict[str, int]:
    device = json.loads((files.state_dir / "sim-validator.json").read_text())
    cashbox = sum(int(v) * n for v, n in device["cashbox"].items())
    credited = sum(r["credited"] for r in _rows(files, "SELECT credited FROM transactions"))
    unknown = sum(
        r["amount"]
        for r in _rows(
            files, "SELECT amount FROM effects WHERE kind = 'stack' AND status = 'unknown'"
        )
    )
    # every note in the cashbox is credited, or unknown-and-owed; nothing credited twice
    assert credited <= cashbox <= credited + unknown, (credited, cashbox, unknown)
    assert not _rows(files, "SELECT id FROM effects WHERE status = 'intent'")
    for tx in _rows(files, "SELECT * FROM transactions"):
        tx_unknown = sum(
            r["amount"]
            for r in _rows(
                files,
                f"SELECT amount FROM effects WHERE tx_id = {tx['id']} AND kind = 'stack'"
                " AND status = 'unknown'",
            )
        )
        if tx["credited"] or tx_unknown:
            assert tx["state"] in ("completed", "owed", "pay_unknown"), dict(tx)
        if tx["state"] == "owed":
            assert tx["owed"] == tx["credited"] + tx_unknown, dict(tx)
        assert tx["state"] in TERMINAL | {"pay_unknown"}, dict(tx)
    owed = sum(r["owed"] for r in _rows(files, "SELECT owed FROM transactions"))
    open_liabilities = sum(
        r["amount"] for r in _rows(files, "SELECT amount FROM liabilities WHERE status = 'open'")
    )
    assert owed == open_liabilities
    return {"cashbox": cashbox, "credited": credited, "unknown": unknown, "owed": owed}


def test_sigkill_while_notes_are_inserted_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    with start_sandbox(tmp_path / "sandbox") as sandbox:
        files = sandbox_kiosk(tmp_path / "kiosk", sandbox, stack_s=0.15)
        kills = 0
        for round_no in range(4):
            daemon = DaemonProcess(files, log_path=tmp_path / f"daemon-{round_no}.log")
            daemon.start()
            control = SimControl(files.control_socket)
            order = _post(
                f"{sandbox.url}/_sandbox/payby/orders", {"amount": "500.00", "currency": "AED"}
            )
            control.call(
                "show",
                path=str(make_qr_png(str(order["tokenUrl"]), tmp_path / f"qr-{round_no}.png")),
            )
            wait_for(
                lambda o=order: _rows(  # type: ignore[misc]
                    files,
                    f"SELECT id FROM transactions WHERE provider_ref = '{o['orderNo']}'"
                    " AND state = 'accepting'",
                )
            )
            for _ in range(rng.randint(1, 6)):
                control.call("insert", value=5000)
                time.sleep(rng.uniform(0.0, 0.3))
            daemon.kill()  # the power cut
            kills += 1
            again = DaemonProcess(files, log_path=tmp_path / f"daemon-{round_no}-after.log")
            again.start()  # READY=1 comes only after recovery
            again.stop()
            figures = check_nothing_lost(files)
        assert kills == 4 and figures["cashbox"] > 0
        assert figures["owed"] >= figures["credited"]  # no journey could finish: all owed
