"""``kiosk support-bundle``: the bundle holds no secret and no customer code, keeps what support
needs (references, amounts, states, reasons), never writes the journal, refuses cleanly."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kiosk import support
from kiosk.errors import ConfigError, KioskError
from kiosk.journal import Call, Journal
from tests.conftest import write_secrets

MEMBERS = {"manifest.json", "config.toml", "journal.json", "logs.txt", "status.json"}
JKEY = os.urandom(32)
MAC_KEY = "Qm7rT2vX9kLp4sWz8nYc3bHf6dJg1aEu"  # 32 characters, as Paysera issues
RAPYD_SECRET = "rsk_9f2Kd7Lq3Xw8Zt1V"
CASHII_API_KEY = "cak_live_7Hq2Lm9Pz4"
RAPYD_ACCESS_KEY = "rak_4TzQ8mW2pL7nX"
TOKEN_FT = "9c1e5b7d3f2a4c6e8a0b1d3f5e7c9a2b"
TOKEN_URL = f"https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft={TOKEN_FT}&t=1732208400000"
ORDER_FT = "4e6a8c0b2d4f6a8c0e2b4d6f8a0c2e4b"
ORDER_QR = f"https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft={ORDER_FT}&t=1732208460000"
PAYBY_ORDER = "131658300517875854"  # a PayBy order number: a reference, kept
RESERVATION = "7305918264401937265518302746"  # Paysera, 28 digits
EVP = "EVP000012345678"
CASHII = "4921771033580064"
CASHII_GROUPED = "4921 7710 3358 0064"
OTP = "730419"
PHONE = "+14155559992"
RAPYD_ENVELOPE = (
    f"kiosk:cashout?v=1&provider=rapyd&otp={OTP}&phone=%2B{PHONE[1:]}&amount=10.00&currency=AED"
)
PAYSERA_ENVELOPE = (
    f"kiosk:cashout?v=1&provider=paysera&code={RESERVATION}&amount=50.00&currency=AED"
)


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, der


@pytest.fixture(autouse=True)
def no_journalctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only a directory of the test's own: no journalctl unless a test puts one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@dataclass
class Kiosk:
    root: Path
    config: Path
    state: Path
    journal: Path
    pem: str
    der: bytes
    forbidden: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.state / "kiosk.log"


def _local(t: float) -> str:
    """A timestamp as Python logging writes it (the daemon's local time)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f",{int(t * 1000) % 1000:03d}"


def build_kiosk(root: Path, pem: str, der: bytes) -> Kiosk:
    etc, state = root / "etc", root / "state"
    etc.mkdir(parents=True)
    secrets = write_secrets(
        etc / "secrets.toml",
        f'journal_key = "{JKEY.hex()}"\n\n[payby]\nprivate_key = """\n{pem}"""\n\n'
        f'[paysera]\nmac_key = "{MAC_KEY}"\n\n[rapyd]\nsecret_key = "{RAPYD_SECRET}"\n\n'
        f'[cashii]\napi_key = "{CASHII_API_KEY}"\n',
    )
    config = etc / "kiosk.toml"
    config.write_text(
        f"""# a technician's comment stays
[kiosk]
id = "KT1"
currency = "AED"
location = "Mall of the Emirates, level 1"
state_dir = "{state}"
secrets_file = "{secrets}"
support_line = "Support: +971 4 000 0000"

[payby]
partner_id = "200000"
public_key_file = "{etc / "payby_public.pem"}"
resolve_token_path = "/acquire2/cashTopUp/resolveToken"

[paysera]
client_id = "kiosk-client-7"

[rapyd]
access_key = "{RAPYD_ACCESS_KEY}"
pos_id = "pos_KT1"

[cashii]
cashout_max = "500.00"
"""
    )
    state.mkdir()
    path = state / "journal.db"
    j = Journal.open(path, kiosk_id="KT1", code_key=JKEY)
    hashes = _write_journeys(j)
    sealed = [r[0] for r in j.db.execute("SELECT sealed FROM outbox WHERE sealed IS NOT NULL")]
    hashes += [r[0] for r in j.db.execute("SELECT hash FROM used_codes")]
    j.close()
    assert sealed and hashes

    now = time.time()
    (state / "kiosk.log").write_text(
        f"{_local(now - 3 * 86400)} INFO kiosk: an OLD LINE from three days ago\n"
        f"{_local(now - 2)} INFO kiosk.daemon: scanned {RAPYD_ENVELOPE}\n"
        f"{_local(now - 2)} INFO kiosk.flows.paysera: KT1-000005: code {RESERVATION}\n"
        f"{_local(now - 1)} WARNING kiosk.daemon: printer: paper out\n"
        f"{_local(now - 1)} ERROR kiosk.config: the key file holds:\n{pem}"
        f"{_local(now - 1)} DEBUG httpx: Authorization: Bearer {CASHII_API_KEY}\n"
        f"{_local(now - 1)} DEBUG kiosk: der {der.hex()} journal_key={JKEY.hex()}\n"
        f"{_local(now - 1)} DEBUG kiosk: cashii pay code {CASHII_GROUPED}, {EVP}\n"
        f"{_local(now)} INFO kiosk.flows.payby: KT1-000001: paid AED 150.00\n"
    )
    k = Kiosk(root, config, state, path, pem, der)
    k.forbidden = _forbidden(pem, der, sealed, hashes)
    return k


def _write_journeys(j: Journal) -> list[str]:
    """Five journeys whose rows carry codes; the code hashes the journal keeps."""
    hashes = [j.code_hash(TOKEN_URL)]
    # 1: a PayBy Cash Top Up whose pay call is queued (its request sealed in the outbox)
    tx = j.begin("payby_cashin", currency="AED", code_hash=hashes[0])
    j.use_code(TOKEN_URL, tx.id)
    j.log("scan", {"text": TOKEN_URL}, tx.id)
    eff = j.intent(tx.id, "resolve", f"{tx.ref}-resolve", request={"token_url": TOKEN_URL})
    j.outcome(eff.id, "done", outcome={"order_no": PAYBY_ORDER, "tokenUrl": TOKEN_URL})
    j.transition(tx.id, "accepting", amount_due=15000, provider_ref=PAYBY_ORDER)
    stack = j.intent(tx.id, "stack", f"{tx.ref}-stack-1", amount=15000, request={"channel": 4})
    j.outcome(stack.id, "done", credit=15000)
    call = Call(
        op="payby.pay",
        kind="pay",
        idem_key=f"{tx.ref}-pay",
        amount=15000,
        request={"token_url": TOKEN_URL, "order_no": PAYBY_ORDER, "amount": 15000},
        public={"order_no": PAYBY_ORDER, "payment_no": f"{tx.ref}-pay"},
        request_time_ms=1_732_208_400_000,
        void_after_ms=1_732_209_300_000,
    )
    j.start_call(tx.id, "paying", call)
    # 2: a Rapyd cash-out from an envelope with the OTP and the phone, paid out short: owed
    tx = j.begin("rapyd_cashout", currency="AED", code_hash=j.code_hash(RAPYD_ENVELOPE))
    hashes.append(j.code_hash(RAPYD_ENVELOPE))
    j.log("scan", {"text": RAPYD_ENVELOPE, "phone": PHONE, "otp": OTP}, tx.id)
    j.transition(tx.id, "opening", amount_due=1000)
    eff = j.intent(tx.id, "open", f"{tx.ref}-open", request={"phone": PHONE, "otp": OTP})
    j.outcome(eff.id, "done", outcome={"envelope": RAPYD_ENVELOPE, "account_id": "ewallet_7f3a"})
    for state in ("open", "withdrawing", "withdrawn", "dispensing"):
        j.transition(tx.id, state)
    j.owe(tx.id, 500, "short_payout")
    j.transition(tx.id, "owed", reason="short_payout")
    # 3: a Cashii cash-out: the payment id is the 16-digit pay code on the slip
    tx = j.begin("cashii_cashout", currency="AED")
    j.transition(tx.id, "creating", amount_due=5000)
    eff = j.intent(tx.id, "create", f"{tx.ref}-create", amount=5000)
    j.outcome(eff.id, "done", outcome={"payment_id": CASHII})
    j.transition(tx.id, "waiting", provider_ref=CASHII)
    slip = {
        "name": f"{tx.ref}-slip",
        "blocks": [
            {"line": f"Reference: {tx.ref}", "bold": True, "align": "left", "double": False},
            {"line": "Amount to pay: AED 50.00", "bold": True, "align": "left", "double": False},
            {"qr": f"https://cashii.app/payment?code={CASHII}", "size": 6},
            {"line": CASHII_GROUPED, "bold": True, "align": "center", "double": False},
        ],
    }
    j.queue_receipt(tx.id, "slip", slip)
    # 4: a PayBy cash-out: its order's tokenUrl is the slip's QR
    tx = j.begin("payby_cashout", currency="AED")
    j.transition(tx.id, "creating", amount_due=2000)
    j.transition(tx.id, "waiting", provider_ref="131658300517875999")
    qr_slip = {"name": f"{tx.ref}-slip", "blocks": [{"qr": ORDER_QR, "size": 6}]}
    j.queue_receipt(tx.id, "slip", qr_slip)
    # 5: a Paysera cash-out from a reservation code, and a cash-in wallet code in its events
    tx = j.begin("paysera_cashout", currency="AED", code_hash=j.code_hash(RESERVATION))
    hashes.append(j.code_hash(RESERVATION))
    j.log("scan", {"text": PAYSERA_ENVELOPE, "wallet": EVP}, tx.id)
    j.transition(tx.id, "refused", reason="code_refused")
    # a kiosk-level event
    j.log("code.refused", {"reason": "not a code this kiosk knows", "text": RESERVATION})
    return hashes


def _forbidden(pem: str, der: bytes, sealed: list[str], hashes: list[str]) -> list[str]:
    b64 = base64.b64encode(JKEY).decode()
    pem_lines = [line for line in pem.splitlines() if line.strip()]
    return [
        JKEY.hex(),
        JKEY.hex().upper(),
        b64,
        b64.rstrip("="),
        *pem_lines,
        der.hex(),
        base64.b64encode(der).decode()[:64],
        MAC_KEY,
        RAPYD_SECRET,
        CASHII_API_KEY,
        RAPYD_ACCESS_KEY,
        TOKEN_URL,
        TOKEN_FT,
        ORDER_QR,
        ORDER_FT,
        RESERVATION,
        " ".join(RESERVATION[i : i + 4] for i in range(0, 28, 4)),
        EVP,
        CASHII,
        CASHII_GROUPED,
        OTP,
        PHONE,
        PHONE[1:],
        RAPYD_ENVELOPE,
        PAYSERA_ENVELOPE,
        *sealed,
        *hashes,
    ]


@pytest.fixture
def kiosk(tmp_path: Path, rsa_key: tuple[str, bytes]) -> Kiosk:
    return build_kiosk(tmp_path / "k", *rsa_key)


def run(argv: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> int:
    """``kiosk ARGV`` through the CLI once it has the command; until then the same
    mapping of errors to exit statuses as :func:`kiosk.cli.main`."""
    from kiosk import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "support-bundle" in sub.choices:
        return cli.main(argv)
    p = argparse.ArgumentParser(prog="kiosk")
    support.add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    try:
        return int(args.fn(args))
    except ConfigError as exc:
        print(f"kiosk: configuration error: {exc}", file=sys.stderr)
        return 2
    except KioskError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))


def members(path: Path) -> dict[str, str]:
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for info in tar.getmembers():
            assert info.isfile() and info.mode == 0o600, info.name
            f = tar.extractfile(info)
            assert f is not None
            out[info.name] = f.read().decode()
    return out


def assert_clean(k: Kiosk, files: dict[str, str]) -> None:
    for name, text in files.items():
        for secret in k.forbidden:
            assert secret not in text, f"{name} holds {secret[:40]!r}"
            assert secret not in name
        assert JKEY.decode("latin-1") not in text


def bundle(k: Kiosk, *extra: str) -> tuple[Path, dict[str, str]]:
    out = k.root / f"b{len(list(k.root.glob('b*.tar.gz')))}.tar.gz"
    assert run(["support-bundle", "--config", str(k.config), *extra, "--out", str(out)]) == 0
    return out, members(out)


def test_one_transaction_holds_no_secret_and_no_code(kiosk: Kiosk) -> None:
    out, files = bundle(kiosk, "--ref", "KT1-000001")
    assert set(files) == MEMBERS
    assert (out.stat().st_mode & 0o777) == 0o600
    assert_clean(kiosk, files)

    doc = json.loads(files["journal.json"])
    assert [t["transaction"]["ref"] for t in doc["transactions"]] == ["KT1-000001"]
    item = doc["transactions"][0]
    tx = item["transaction"]
    assert tx["state"] == "paying" and tx["amount_due"] == 15000 and tx["credited"] == 15000
    assert tx["provider_ref"] == PAYBY_ORDER  # a provider's order number is a reference: kept
    assert "code_hash" not in tx
    assert [e["kind"] for e in item["events"]][:3] == ["begin", "scan", "resolve.intent"]
    assert all("hash" not in e and "prev_hash" not in e for e in item["events"])
    assert item["effects"][0]["request"]["token_url"].startswith("<redacted")
    row = item["outbox"][0]
    assert "sealed" not in row and row["status"] == "queued" and row["op"] == "payby.pay"
    assert row["idem_key"] == "KT1-000001-pay"
    assert doc["chain"]["ok"] is True and doc["chain"]["checked"] > 10
    assert "KT1-000002" not in files["journal.json"]

    manifest = json.loads(files["manifest.json"])
    assert manifest["kiosk_id"] == "KT1" and manifest["firmware"]
    assert manifest["asked"]["ref"] == "KT1-000001"
    assert {f["name"] for f in manifest["files"]} == MEMBERS - {"manifest.json"}
    assert manifest["secrets_file"]["keys"]["payby.private_key"] == "<redacted>"
    logs = files["logs.txt"]
    assert "printer: paper out" in logs and "KT1-000001: paid AED 150.00" in logs
    assert "<redacted:reservation_code>" in logs and "otp=<redacted:otp>" in logs
    assert "OLD LINE" not in logs  # outside the transaction's window
    assert "no admin socket" in json.loads(files["status.json"])["note"]


def test_a_period_holds_every_journey_and_no_secret_or_code(kiosk: Kiosk) -> None:
    _, files = bundle(kiosk, "--since", "1h")
    assert_clean(kiosk, files)
    doc = json.loads(files["journal.json"])
    by_ref = {t["transaction"]["ref"]: t for t in doc["transactions"]}
    assert sorted(by_ref) == [f"KT1-00000{i}" for i in range(1, 6)]
    rapyd = by_ref["KT1-000002"]
    assert rapyd["transaction"]["state"] == "owed" and rapyd["transaction"]["owed"] == 500
    assert rapyd["liabilities"][0]["reason"] == "short_payout"
    assert rapyd["liabilities"][0]["amount"] == 500
    assert rapyd["effects"][0]["outcome"]["account_id"] == "ewallet_7f3a"
    cashii = by_ref["KT1-000003"]
    lines = [b.get("line") for b in cashii["receipts"][0]["document"]["blocks"]]
    assert "Reference: KT1-000003" in lines and "Amount to pay: AED 50.00" in lines
    assert cashii["transaction"]["amount_due"] == 5000
    qr = by_ref["KT1-000004"]["receipts"][0]["document"]["blocks"][0]
    assert qr["qr"].startswith("<redacted") and qr["size"] == 6
    assert by_ref["KT1-000005"]["transaction"]["reason"] == "code_refused"
    assert [e["kind"] for e in doc["kiosk_events"]] == ["code.refused"]
    assert doc["kiosk_events"][0]["data"]["reason"] == "not a code this kiosk knows"
    config = files["config.toml"]
    assert 'id = "KT1"' in config and "# a technician's comment stays" in config
    assert 'access_key = "<redacted>"' in config and 'pos_id = "pos_KT1"' in config
    assert 'resolve_token_path = "/acquire2/cashTopUp/resolveToken"' in config
    assert "Support: +971 4 000 0000" in config
    assert '# journal_key = "<redacted>"' in config and '# mac_key = "<redacted>"' in config
    assert "OLD LINE" not in files["logs.txt"]


def test_a_period_with_nothing_in_it_is_still_a_bundle(kiosk: Kiosk) -> None:
    later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600))
    _, files = bundle(kiosk, "--since", later, "--until", f"{later[:10]}T23:59:59+00:00")
    doc = json.loads(files["journal.json"])
    assert doc["transactions"] == [] and doc["kiosk_events"] == []
    assert "no logs" not in files["logs.txt"]  # the file is there, its lines are not
    assert "paper out" not in files["logs.txt"]


def test_the_journal_is_only_read(kiosk: Kiosk) -> None:
    before = kiosk.journal.read_bytes(), kiosk.journal.stat().st_mtime_ns
    listing = sorted(p.name for p in kiosk.state.iterdir())
    bundle(kiosk, "--ref", "KT1-000003")
    bundle(kiosk)
    assert (kiosk.journal.read_bytes(), kiosk.journal.stat().st_mtime_ns) == before
    assert sorted(p.name for p in kiosk.state.iterdir()) == listing  # no -wal, no -shm


def test_beside_a_running_daemon_it_reads_the_latest_commit(kiosk: Kiosk) -> None:
    j = Journal.open(kiosk.journal, kiosk_id="KT1", code_key=JKEY)  # the daemon's writer
    try:
        tx = j.begin("cashii_cashout", currency="AED")
        j.transition(tx.id, "creating", amount_due=7000)
        listing = sorted(p.name for p in kiosk.state.iterdir())
        _, files = bundle(kiosk, "--ref", tx.ref)
        assert sorted(p.name for p in kiosk.state.iterdir()) == listing
    finally:
        j.close()
    doc = json.loads(files["journal.json"])
    assert doc["transactions"][0]["transaction"]["amount_due"] == 7000


def test_logs_come_from_journalctl_when_it_answers(kiosk: Kiosk, no_journalctl: Path) -> None:
    args = kiosk.root / "journalctl.args"
    script = no_journalctl / "journalctl"
    lines = [
        f"2026-11-21T17:00:00+0000 pi kiosk[812]: scanned {PAYSERA_ENVELOPE}",
        f"2026-11-21T17:00:01+0000 pi kiosk[812]: Authorization: Bearer {CASHII_API_KEY}",
        f"2026-11-21T17:00:02+0000 pi kiosk[812]: pay {TOKEN_URL} code {CASHII_GROUPED}",
        "2026-11-21T17:00:03+0000 pi kiosk[812]: KT1-000004: waiting for the app",
    ]
    quoted = " ".join(f"'{line}'" for line in lines)  # shell builtins only: PATH is empty
    script.write_text(f"#!/bin/sh\necho \"$@\" > '{args}'\nprintf '%s\\n' {quoted}\n")
    script.chmod(0o755)
    _, files = bundle(kiosk, "--ref", "KT1-000004")
    assert_clean(kiosk, files)
    assert "KT1-000004: waiting for the app" in files["logs.txt"]
    assert "https://checkout.payby.com/<redacted:url>" in files["logs.txt"]
    assert "paper out" not in files["logs.txt"]  # not the file's lines
    assert json.loads(files["manifest.json"])["logs"] == "journalctl -u kiosk"
    called = args.read_text().split()
    assert called[:2] == ["-u", "kiosk"] and "short-iso" in called
    assert called[called.index("--since") + 1].startswith("@")


def test_journalctl_without_entries_falls_back_to_the_log_files(
    kiosk: Kiosk, no_journalctl: Path
) -> None:
    script = no_journalctl / "journalctl"
    script.write_text("#!/bin/sh\necho '-- No entries --'\n")
    script.chmod(0o755)
    _, files = bundle(kiosk, "--since", "1h")
    assert "printer: paper out" in files["logs.txt"]
    assert "no entries" in json.loads(files["manifest.json"])["logs"]


def test_no_logs_at_all_is_a_note(kiosk: Kiosk) -> None:
    kiosk.log.unlink()
    _, files = bundle(kiosk, "--ref", "KT1-000002")
    assert files["logs.txt"].startswith("no logs available")


def test_the_daemons_status_redacted_when_it_answers(rsa_key: tuple[str, bytes]) -> None:
    root = Path(tempfile.mkdtemp(prefix="ksb", dir="/tmp"))  # a Unix socket path is short
    try:
        k = build_kiosk(root, *rsa_key)
        with _admin_server(k.state / "admin.sock") as seen:
            _, files = bundle(k, "--ref", "KT1-000002")
        assert seen == [{"cmd": "status"}]
        assert_clean(k, files)
        status = json.loads(files["status.json"])
        assert status["answered"] is True
        assert status["status"]["state"] == "ready" and status["status"]["owed"] == 500
        assert "otp=<redacted:otp>" in status["status"]["last_scan"]
    finally:
        shutil.rmtree(root)


@contextlib.contextmanager
def _admin_server(path: Path) -> Iterator[list[dict[str, object]]]:
    """A daemon's admin socket that answers one ``status`` (the requests it saw)."""
    seen: list[dict[str, object]] = []
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(10)

    def answer() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as f:
            seen.append(json.loads(f.readline()))
            reply = {"ok": True, "state": "ready", "owed": 500, "last_scan": RAPYD_ENVELOPE}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        yield seen
    finally:
        thread.join(10)
        srv.close()


def test_a_journal_left_by_a_crash_is_read_from_a_copy(kiosk: Kiosk) -> None:
    """A -wal without its -shm (a crash, a copied card): the commits in the WAL are read,
    and nothing appears beside the journal."""
    j = Journal.open(kiosk.journal, kiosk_id="KT1", code_key=JKEY)
    try:
        tx = j.begin("cashii_cashout", currency="AED")
        j.transition(tx.id, "creating", amount_due=9000)
        crashed = kiosk.root / "crashed"
        crashed.mkdir()
        shutil.copyfile(kiosk.journal, crashed / "journal.db")
        shutil.copyfile(f"{kiosk.journal}-wal", crashed / "journal.db-wal")
    finally:
        j.close()
    kiosk.config.write_text(kiosk.config.read_text().replace(str(kiosk.state), str(crashed)))
    before = {p.name: p.read_bytes() for p in crashed.iterdir()}
    _, files = bundle(kiosk, "--ref", tx.ref)
    assert json.loads(files["journal.json"])["transactions"][0]["transaction"]["amount_due"] == 9000
    assert {p.name: p.read_bytes() for p in crashed.iterdir()} == before


def test_a_file_that_is_not_a_journal_is_refused(
    kiosk: Kiosk, capsys: pytest.CaptureFixture[str]
) -> None:
    kiosk.journal.write_bytes(b"not a database at all" * 100)
    assert run(["support-bundle", "--config", str(kiosk.config), "--since", "1h"]) == 1
    err = capsys.readouterr().err
    assert "journal" in err and "Traceback" not in err


def test_a_bad_config_is_a_configuration_error(
    kiosk: Kiosk, capsys: pytest.CaptureFixture[str]
) -> None:
    kiosk.config.write_text("[kiosk]\nid = 'KT1'\nbogus = 1\n")
    assert run(["support-bundle", "--config", str(kiosk.config)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_a_secrets_file_that_is_not_toml_still_has_its_lines_removed(kiosk: Kiosk) -> None:
    secrets = kiosk.root / "etc" / "secrets.toml"
    secrets.write_text(secrets.read_text() + "this line [is not = TOML\n")
    _, files = bundle(kiosk, "--since", "1h")
    assert_clean(kiosk, files)
    assert "not valid TOML" in json.loads(files["manifest.json"])["secrets_file"]["note"]


def test_an_unknown_reference_is_refused(kiosk: Kiosk, capsys: pytest.CaptureFixture[str]) -> None:
    out = kiosk.root / "x.tar.gz"
    argv = ["support-bundle", "--config", str(kiosk.config), "--ref", "KT1-999999"]
    assert run([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no transaction KT1-999999" in err and "kiosk journal" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "21/11/2026", "24x"])
def test_a_bad_since_is_a_usage_error(
    kiosk: Kiosk, since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["support-bundle", "--config", str(kiosk.config), "--since", since]) == 2
    err = capsys.readouterr().err
    assert "--since" in err and "ISO 8601" in err and "Traceback" not in err
    assert not list(Path.cwd().glob("kiosk-support-KT1-*.tar.gz"))


def test_until_alone_or_before_since_is_a_usage_error(kiosk: Kiosk) -> None:
    base = ["support-bundle", "--config", str(kiosk.config)]
    assert run([*base, "--until", "2026-11-21"]) == 2
    assert run([*base, "--since", "2026-11-22", "--until", "2026-11-21"]) == 2
    with pytest.raises(SystemExit) as exc:  # argparse: one of --ref and --since
        run([*base, "--ref", "KT1-000001", "--since", "1h"])
    assert exc.value.code == 2


def test_no_journal_is_refused_and_no_state_dir_is_created(
    kiosk: Kiosk, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = kiosk.root / "nowhere"
    kiosk.config.write_text(kiosk.config.read_text().replace(str(kiosk.state), str(absent)))
    out = kiosk.root / "x.tar.gz"
    assert run(["support-bundle", "--config", str(kiosk.config), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no journal at" in err and "state_dir" in err and "Traceback" not in err
    assert not absent.exists() and not out.exists()


def test_an_existing_out_file_is_never_replaced(kiosk: Kiosk) -> None:
    out = kiosk.root / "mine.tar.gz"
    out.write_text("keep me")
    argv = ["support-bundle", "--config", str(kiosk.config), "--out", str(out)]
    assert run(argv) == 1
    assert out.read_text() == "keep me"


def test_the_default_name_and_mode(
    kiosk: Kiosk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    here = kiosk.root / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    old = os.umask(0)
    try:
        assert run(["support-bundle", "--config", str(kiosk.config), "--ref", "KT1-000005"]) == 0
    finally:
        os.umask(old)
    (made,) = here.glob("kiosk-support-KT1-*Z.tar.gz")
    assert (made.stat().st_mode & 0o777) == 0o600
    assert str(made.name) in capsys.readouterr().out
    assert_clean(kiosk, members(made))


def test_an_unreadable_secrets_file_still_leaves_no_secret(kiosk: Kiosk) -> None:
    """Without the secrets file's values, the generic rules still take out the PEM, the hex
    key and the codes (the short API keys need the file: the manifest says so)."""
    secrets = kiosk.root / "etc" / "secrets.toml"
    secrets.rename(kiosk.root / "etc" / "elsewhere.toml")
    _, files = bundle(kiosk, "--since", "1h")
    shorter = {CASHII_API_KEY, RAPYD_SECRET}  # short keys: only the secrets file names them
    for name, text in files.items():
        for secret in kiosk.forbidden:
            if secret not in shorter and secret != RAPYD_ACCESS_KEY:
                assert secret not in text, f"{name} holds {secret[:40]!r}"
    assert RAPYD_ACCESS_KEY not in files["config.toml"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["secrets_file"]["readable"] is False


# --- the redaction rules one by one -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        (RAPYD_ENVELOPE, [OTP, PHONE[1:]], ["provider=rapyd", "amount=10.00"]),
        (PAYSERA_ENVELOPE, [RESERVATION], ["provider=paysera", "amount=50.00"]),
        (f"scanned {RESERVATION}", [RESERVATION], ["scanned"]),
        ("code 7305 9182 6440 1937 2655 1830 2746", ["7305 9182"], ["code"]),
        (f"wallet {EVP.lower()}", [EVP.lower()], ["wallet"]),
        ("7305 9182 6440 1937 2655 1830 2746", ["7305", "2746"], []),  # no word around it
        ("4921-7710-3358-0064", ["4921", "0064"], []),
        ("%2B14155559992", ["14155559992"], []),
        (f"pay {CASHII_GROUPED} or {CASHII}", ["4921", CASHII], ["pay"]),
        (TOKEN_URL, [TOKEN_FT, "pay-page"], ["https://checkout.payby.com/"]),
        ("https://u:pw@api.example/x", ["u:pw"], ["api.example"]),
        (f"call {PHONE} now", [PHONE], ["call", "now"]),
        ('Authorization: MAC id="c1", mac="Zm9v"', ["Zm9v", "c1"], ["Authorization"]),
        ("{'Authorization': 'Bearer abcdefgh12', 'Accept': 'x'}", ["abcdefgh12"], ["Accept"]),
        ('{"sign": "QUJDREVG", "Partner-Id": "200000"}', ["QUJDREVG"], ["200000"]),
        ("api_key=abcdef123456 next", ["abcdef123456"], ["next"]),
        ("x " + "ab12" * 8 + " y", ["ab12" * 8], ["x ", " y"]),
        ("k aB3xQ9zLkP0mN7vR2tY5wE8uI1oS4dF6+/ y", ["aB3xQ9"], ["k ", " y"]),
        ("k Zm9v+14155559992Ym9vYmF6cXV4YWJjZGVmZ2hpams y", ["Zm9v", "YWJj"], ["k ", " y"]),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIB" + "A" * 60 + "\nQ2x==\n-----END PRIVATE KEY-----",
            ["MIIB", "Q2x==", "PRIVATE KEY"],
            [],
        ),
        (
            "KSK-0001-000042 paid AED 150.00 state=completed reason=paid_after_all"
            " at 2026-11-21T17:00:00.123Z order 131658300517875854 (code 62016)"
            " /var/lib/kiosk/receipts/KSK-0001-000042-cashin.png Support: +971 4 000 0000"
            " https://api.payby.com/sgs/api/acquire2/cashTopUp/resolveToken"
            " payby: bad signature: the reply does not verify",
            [],
            [
                "KSK-0001-000042 paid AED 150.00 state=completed reason=paid_after_all",
                "2026-11-21T17:00:00.123Z",
                "131658300517875854",
                "(code 62016)",
                "/var/lib/kiosk/receipts/KSK-0001-000042-cashin.png",
                "+971 4 000 0000",
                "https://api.payby.com/sgs/api/acquire2/cashTopUp/resolveToken",
                "bad signature: the reply",
            ],
        ),
    ],
)
def test_redact(text: str, gone: list[str], kept: list[str]) -> None:
    out = support.redact(text)
    for s in gone:
        assert s not in out
    for s in kept:
        assert s in out
    assert "<redacted:" in out or not gone


def test_redact_literals_and_their_forms(rsa_key: tuple[str, bytes]) -> None:
    pem, _ = rsa_key
    literals = support.literals_of([JKEY.hex(), pem, "short", "cak_live_7Hq2Lm9Pz4"])
    assert "short" not in literals
    b64 = base64.b64encode(JKEY).decode()
    last_line = pem.strip().splitlines()[-2]  # the body's short last line
    text = f"{b64} | {last_line} | {JKEY.hex().upper()} | cak_live_7Hq2Lm9Pz4 | kept"
    out = support.redact(text, literals)
    assert out.count("<redacted:") == 4 and out.endswith("| kept")


def test_redact_json_by_key_and_by_value() -> None:
    doc = {
        "token_url": "https://x.example/t?a=1",
        "tokenUrl": "",
        "otp": OTP,
        "session": {"token_id": "tok_1", "phone": PHONE},
        "code": "62016",
        "payment_id": CASHII,
        "n": int(CASHII),
        "blocks": [{"qr": "kiosk:cashout?v=1", "size": 6}],
        "idem_key": "KT1-000001-pay",
        "amount": 15000,
        "ok": True,
    }
    out = support.redact_json(doc)
    assert out["token_url"].startswith("<redacted") and out["tokenUrl"] == ""
    assert out["otp"].startswith("<redacted") and out["session"].startswith("<redacted")
    assert out["code"] == "62016" and out["idem_key"] == "KT1-000001-pay"
    assert out["payment_id"] == out["n"] == "<redacted:code16>"
    assert out["blocks"] == [{"qr": "<redacted:qr>", "size": 6}]
    assert out["amount"] == 15000 and out["ok"] is True


def test_redact_config_values_keyed_like_secrets() -> None:
    text = (
        '[x]\napi_token = """\nline one\nline two\n"""\nkeys = [\n  "a", # ]\n  "b",\n]\n'
        'public_key_file = "/etc/kiosk/payby_public.pem"\ntoken_hosts = ["checkout.payby.com"]\n'
        "password = 'pw'\ntimeout_s = 15.0\nsecret_count = 3\nname = \"kept\"\n"
    )
    out = support.redact_config(text, support.Redactor())
    assert "line one" not in out and '"a"' not in out and "pw" not in out
    assert 'api_token = "<redacted>"' in out and 'keys = "<redacted>"' in out
    assert 'public_key_file = "/etc/kiosk/payby_public.pem"' in out
    assert 'token_hosts = ["checkout.payby.com"]' in out
    assert "secret_count = 3" in out and 'name = "kept"' in out and "timeout_s = 15.0" in out
