"""The daemon as a process: the demo journey, refusals of bad codes, start-up readiness."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from drivers.reader.decode import decode_image
from drivers.sim.control import SimControl
from kiosk.demo import make_qr_png, run_demo
from kiosk.sandbox.server import start_sandbox
from kiosk.simkiosk import DaemonProcess, receipts_of, sandbox_kiosk, wait_for

pytestmark = pytest.mark.slow


def test_demo_journey_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "every journey held" in out and "PAID_SUCCESS" in out and "returned" in out
    (txt,) = receipts_of(tmp_path / "receipts", "KSK-DEMO-000001")  # printed over ESC/POS
    assert decode_image(Image.open(txt.with_suffix(".png"))) == ["KSK-DEMO-000001"]
    text = txt.read_text()
    assert "AED 150.00" in text and "AED 100.00, AED 50.00" in text
    # Paysera, at the kiosk with a SMART Payout
    assert "recycler paid out AED 100.00" in out and "debited once" in out
    assert "AED 0.00 -> AED 150.00" in out  # the cash-in credited the wallet
    assert "(invalid_code)" in out and "(insufficient_funds)" in out
    (paid,) = receipts_of(tmp_path / "receipts-paysera", "KSK-DEMO-PSR-000001")
    assert "PAID OUT" in paid.read_text() and "AED 100.00" in paid.read_text()
    # Rapyd POS, at the same kiosk (its transactions follow Paysera's four)
    assert "Rapyd cash-out" in out and "debited once (withdrawal" in out
    assert "session closed, PAID IN receipt" in out and "(otp_expired)" in out
    (rapyd,) = receipts_of(tmp_path / "receipts-paysera", "KSK-DEMO-PSR-000005")
    assert "PAID OUT" in rapyd.read_text() and "501234567" not in rapyd.read_text()
    (expired,) = receipts_of(tmp_path / "receipts-paysera", "KSK-DEMO-PSR-000007")
    assert "NOT DONE" in expired.read_text() and "expired" in expired.read_text()
    # Cashii, at the same kiosk: a pay slip, paid in the app, paid out; then one rejected
    assert "Cashii cash-out" in out and "the recycler paid out AED 100.00" in out
    assert "AED 500.00 -> AED 400.00: one payment" in out and "(payment_rejected)" in out
    slip, paid_out = receipts_of(tmp_path / "receipts-paysera", "KSK-DEMO-PSR-000008")
    assert "Amount to pay: AED 100.00" in slip.read_text() and "PAID OUT" in paid_out.read_text()
    assert "cashii.app/payment?code=" in slip.read_text() and slip.with_suffix(".png").exists()
    slip, void = receipts_of(tmp_path / "receipts-paysera", "KSK-DEMO-PSR-000009")
    assert "rejected in the app" in void.read_text() and "NOT DONE" in void.read_text()


def test_running_daemon_refuses_bad_codes_and_reports_state(tmp_path: Path) -> None:
    with start_sandbox(tmp_path / "sandbox") as sandbox:
        files = sandbox_kiosk(tmp_path / "kiosk", sandbox)
        daemon = DaemonProcess(files)
        daemon.start()
        try:
            control = SimControl(files.control_socket)
            assert control.call("state")["panel"]["state"] == "ready"
            for i, text in enumerate(
                [
                    "hello world",
                    "https://evil.example/pay-page/main?ft=1",
                    "http://checkout.sandbox.payby.test/pay-page/main?ft=1",
                    "A" * 3000,
                ]
            ):
                control.call("show", path=str(make_qr_png(text, tmp_path / f"bad{i}.png")))
            conn = sqlite3.connect(f"file:{files.journal}?mode=ro", uri=True)
            refused = wait_for(
                lambda: (
                    (
                        rows := conn.execute(
                            "SELECT data FROM events WHERE kind = 'code.refused'"
                        ).fetchall()
                    )
                    and len(rows) >= 4
                    and rows
                ),
                timeout=20,
            )
            reasons = [json.loads(r[0])["reason"] for r in refused]
            assert any("not a code" in r for r in reasons)
            assert any("evil.example" in r for r in reasons)
            assert any("not https" in r for r in reasons)
            assert any("too long" in r for r in reasons)
            assert conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 0
            raw = b"".join(p.read_bytes() for p in files.state_dir.glob("journal.db*"))
            assert b"pay-page" not in raw  # codes are never stored
            conn.close()
        finally:
            assert daemon.stop() == 0
        log = daemon.log_path.read_text()
        assert "ready in" in log and "pay-page" not in log


def test_out_of_service_while_a_device_is_missing_or_faulted(tmp_path: Path) -> None:
    with start_sandbox(tmp_path / "sandbox") as sandbox:
        files = sandbox_kiosk(tmp_path / "kiosk", sandbox)
        # the validator's memory is garbage: the device cannot be opened
        (files.state_dir / "sim-validator.json").write_text("{not json")
        daemon = DaemonProcess(files)
        daemon.start()
        try:
            control = SimControl(files.control_socket)
            assert control.call("state")["panel"]["state"] == "out_of_service"
            order = json.loads(
                urllib.request.urlopen(
                    urllib.request.Request(
                        f"{sandbox.url}/_sandbox/payby/orders",
                        json.dumps({"amount": "10.00", "currency": "AED"}).encode(),
                        {"Content-Type": "application/json"},
                    )
                ).read()
            )
            control.call("show", path=str(make_qr_png(order["tokenUrl"], tmp_path / "q.png")))
            wait_for(lambda: control.call("state")["panel"]["state"] == "refused")
            conn = sqlite3.connect(f"file:{files.journal}?mode=ro", uri=True)
            assert conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 0
            conn.close()
        finally:
            assert daemon.stop() == 0
        assert "out of service" in daemon.log_path.read_text()

        # a healthy start, then a fault and its recovery
        (files.state_dir / "sim-validator.json").unlink()
        daemon = DaemonProcess(files, log_path=tmp_path / "second.log")
        daemon.start()
        try:
            control = SimControl(files.control_socket)
            assert control.call("state")["panel"]["state"] == "ready"
            control.call("fault", kind="jam")
            wait_for(lambda: control.call("state")["panel"]["state"] == "out_of_service")
            control.call("clear_fault")
            wait_for(lambda: control.call("state")["panel"]["state"] == "ready")
            # a cashbox removed outside service mode latches (issue 16): the cashbox back, the
            # kiosk stays out of service until a technician clears it
            from kiosk import admin

            sock = files.state_dir / "admin.sock"
            control.call("fault", kind="cashbox_removed")
            wait_for(lambda: control.call("state")["panel"]["state"] == "out_of_service")
            control.call("clear_fault")
            wait_for(lambda: _kinds(files.journal).count("device.recovered") == 2)
            reply = admin.call(sock, {"cmd": "status"})
            assert reply["state"] == "out_of_service"
            assert [t["kind"] for t in reply["tamper"]] == ["cashbox_removed"]
            assert control.call("state")["panel"]["state"] == "out_of_service"
            cleared = admin.call(sock, {"cmd": "tamper_clear", "technician": "e2e"})
            assert cleared["cleared"] == ["cashbox_removed"]
            wait_for(lambda: control.call("state")["panel"]["state"] == "ready")
        finally:
            assert daemon.stop() == 0


def _kinds(journal: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in conn.execute("SELECT kind FROM events ORDER BY seq")]
    finally:
        conn.close()


def test_paper_out_refuses_journeys_and_mid_receipt_queues_for_reprint(tmp_path: Path) -> None:
    from kiosk import admin

    with start_sandbox(tmp_path / "sandbox") as sandbox:
        files = sandbox_kiosk(tmp_path / "kiosk", sandbox)
        daemon = DaemonProcess(files)
        daemon.start()

        def order() -> dict[str, str]:
            req = urllib.request.Request(
                f"{sandbox.url}/_sandbox/payby/orders",
                json.dumps({"amount": "50.00", "currency": "AED"}).encode(),
                {"Content-Type": "application/json"},
            )
            return json.loads(urllib.request.urlopen(req).read())  # type: ignore[no-any-return]

        def rows(sql: str) -> list[tuple[object, ...]]:
            conn = sqlite3.connect(f"file:{files.journal}?mode=ro", uri=True)
            try:
                return list(conn.execute(sql))
            finally:
                conn.close()

        try:
            control = SimControl(files.control_socket)
            # 1. paper out: no journey starts
            control.call("paper", state="out")
            first = order()
            control.call("show", path=str(make_qr_png(first["tokenUrl"], tmp_path / "a.png")))
            wait_for(lambda: rows("SELECT data FROM events WHERE kind = 'code.refused'"))
            assert not rows("SELECT id FROM transactions")
            # 2. paper runs out mid-receipt: the payment stands, the receipt is queued
            control.call("paper", state="ok")
            control.call("paper_runs_out", lines=4)
            second = order()
            control.call("show", path=str(make_qr_png(second["tokenUrl"], tmp_path / "b.png")))
            wait_for(
                lambda: rows("SELECT id FROM transactions WHERE state = 'accepting'"), timeout=20
            )
            control.call("insert", value=5000)
            wait_for(
                lambda: rows("SELECT id FROM transactions WHERE state = 'completed'"), timeout=20
            )
            ((ref,),) = rows("SELECT ref FROM transactions")
            ((status, error),) = rows("SELECT status, last_error FROM receipts")
            assert status == "queued" and "paper" in str(error)
            # 3. the technician loads paper and reprints
            control.call("paper", state="ok")
            wait_for(
                lambda: (
                    admin.call(files.state_dir / "admin.sock", {"cmd": "status"})["state"]
                    == "ready"
                ),
                timeout=10,
            )
            reply = admin.call(files.state_dir / "admin.sock", {"cmd": "reprint", "ref": ref})
            assert reply["ok"] and reply["receipts"][0]["printed"], reply
            assert rows("SELECT status FROM receipts") == [("printed",)]
            assert receipts_of(files.receipts, str(ref))
        finally:
            assert daemon.stop() == 0
