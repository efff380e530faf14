"""A simulated kiosk on this machine, for ``kiosk demo``, ``kiosk bench`` and the tests.

Writes a config, a secrets file (mode 600) and keys into a directory, spawns ``kiosk run
--simulate`` as a real process, and waits for its ``READY=1`` on a notify socket exactly as
systemd would. Never used by the daemon itself.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiosk.sandbox.server import Sandbox

STORE_PARTNER_ID = "200009990777"
STORE_BALANCE = "1000.00"  # AED in the simulated store's PayBy wallet
TOKEN_HOST = "checkout.sandbox.payby.test"  # noqa: S105 - a host name
PAYSERA_CLIENT_ID = "kiosk-sim"
PAYSERA_ALLOWANCE_ID = 7001  # the sandbox takes any allowance id
RAPYD_ACCESS_KEY = "KIOSKSIM0ACCESS1"
RAPYD_POS_ID = "kiosk-sim-pos-0001"
CASHII_ACCOUNT = "7700000000000001"  # the simulated kiosk operator's Cashii account


@dataclass(frozen=True)
class KioskFiles:
    root: Path
    config: Path
    state_dir: Path
    receipts: Path
    frames: Path
    store_public_pem: bytes
    paysera_mac_key: str = ""
    rapyd_secret_key: str = ""
    cashii_api_key: str = ""

    @property
    def journal(self) -> Path:
        return self.state_dir / "journal.db"

    @property
    def control_socket(self) -> Path:
        return self.state_dir / "sim.sock"


def sandbox_kiosk(
    root: Path, sandbox: Sandbox, *, balance: str = STORE_BALANCE, **options: Any
) -> KioskFiles:
    """:func:`write_kiosk` for the running ``sandbox``: PayBy's key from it, and the kiosk's
    store registered there with ``balance`` AED in its wallet. ``options`` go to write_kiosk."""
    from kiosk.money import Money

    files = write_kiosk(
        root, payby_url=sandbox.url, payby_public_pem=sandbox.payby.public_key_pem, **options
    )
    sandbox.payby.register_merchant(
        STORE_PARTNER_ID, files.store_public_pem, Money.from_decimal(balance, "AED")
    )
    sandbox.paysera.clients[PAYSERA_CLIENT_ID] = files.paysera_mac_key
    from kiosk.sandbox.kit import Request

    sandbox.app.providers["rapyd"].handle_hook(
        Request("POST", "/pos", json.dumps(rapyd_pos(files)).encode())
    )
    sandbox.app.providers["cashii"].handle_hook(
        Request("POST", "/merchants", json.dumps(cashii_merchant(files)).encode())
    )
    return files


def cashii_merchant(files: KioskFiles) -> dict[str, str]:
    """The simulated kiosk's Cashii merchant, as the Cashii sandbox's hook takes it."""
    return {"api_key": files.cashii_api_key, "account": CASHII_ACCOUNT}


def rapyd_pos(files: KioskFiles) -> dict[str, str]:
    """The simulated kiosk's point of sale, as the Rapyd sandbox's hook takes it."""
    return {
        "pos_id": RAPYD_POS_ID,
        "access_key": RAPYD_ACCESS_KEY,
        "secret_key": files.rapyd_secret_key,
    }


def write_kiosk(
    root: Path,
    *,
    payby_url: str,
    payby_public_pem: bytes,
    kiosk_id: str = "KSK-DEMO",
    currency: str = "AED",
    inactivity_timeout_s: float = 60.0,
    receipts_dir: Path | None = None,
    stack_s: float = 0.0,
    validator: str = "sim",
    validator_port: str = "sim",
    payout: bool = False,
    printer: str = "escpos",
    printer_port: str = "sim",
    fleet_url: str = "",
    fleet_port: int = 0,
    fleet_interval_s: float = 60.0,
    fleet_public_key_file: Path | None = None,
) -> KioskFiles:
    """Config, secrets and keys of a simulated kiosk under ``root`` (receipts rendered in
    ``receipts_dir``, default ``root/receipts``). ``validator`` picks the driver: ``sim``
    (interface-level simulator), ``essp`` or ``id003`` on ``validator_port`` (``sim``: the
    protocol's simulator inside the daemon on a pty; a path: an external one). A device
    identity (a fresh Ed25519 key) is written in ``root/etc``, as ``kiosk provision`` does;
    ``fleet_url``/``fleet_port``: where it pushes heartbeats ("": nowhere) and its local
    endpoints (0: none, so that many simulated kiosks run side by side)."""
    from kiosk.providers.payby.client import generate_key_pair

    root.mkdir(parents=True, exist_ok=True)
    state, etc = root / "state", root / "etc"
    receipts, frames = receipts_dir or root / "receipts", state / "frames"
    for d in (state, etc, receipts, frames):
        d.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_key_pair()
    mac_key = secrets.token_urlsafe(24)
    rapyd_key = secrets.token_hex(24)
    cashii_key = "ck_sim_" + secrets.token_hex(20)
    (etc / "payby_public.pem").write_bytes(payby_public_pem)
    _write_identity(etc, kiosk_id)
    secrets_file = etc / "secrets.toml"
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            f'journal_key = "{secrets.token_hex(32)}"\n\n[payby]\n'
            f'private_key = """\n{private_pem.decode()}"""\n'
            f'\n[paysera]\nmac_key = "{mac_key}"\n'
            f'\n[rapyd]\nsecret_key = "{rapyd_key}"\n'
            f'\n[cashii]\napi_key = "{cashii_key}"\n'
        )
    config = etc / "kiosk.toml"
    config.write_text(
        f"""\
[kiosk]
id = "{kiosk_id}"
location = "Simulated kiosk, loopback"
currency = "{currency}"
state_dir = "{state}"
secrets_file = "{secrets_file}"
inactivity_timeout_s = {inactivity_timeout_s}
support_line = "Support: +971 4 000 0000, quote the reference"

[hardware]
simulate = true

[hardware.validator]
driver = "{validator}"
port = "{validator_port}"
stack_s = {stack_s}
poll_interval_s = 0.2
reply_timeout_s = 0.3
retries = 3
payout = {"true" if payout else "false"}

[hardware.printer]
driver = "{printer}"
port = "{printer_port}"
paper_mm = 80
out_dir = "{receipts}"

[hardware.reader]
path = "{frames}"

[payby]
base_url = "{payby_url}/sgs/api"
partner_id = "{STORE_PARTNER_ID}"
public_key_file = "{etc / "payby_public.pem"}"
token_hosts = ["{TOKEN_HOST}"]
timeout_s = 5
pay_wait_s = 8
cashout_max = "1000.00"
cashout_pay_timeout_s = 60
poll_interval_s = 0.5

[cashout]
presets = ["50.00", "100.00", "200.00"]

[fleet]
url = "{fleet_url}"
port = {fleet_port}
interval_s = {fleet_interval_s}
identity_dir = "{etc}"
{f'public_key_file = "{fleet_public_key_file}"' if fleet_public_key_file else ""}

[paysera]
base_url = "{payby_url}/rest/v1"
client_id = "{PAYSERA_CLIENT_ID}"
reserve_for_s = 120
allowance_id = {PAYSERA_ALLOWANCE_ID}
cashout_max = "1000.00"
cashin_max = "5000.00"
approval_above = "0"
code_attempts = 3
timeout_s = 5

[rapyd]
base_url = "{payby_url}"
access_key = "{RAPYD_ACCESS_KEY}"
pos_id = "{RAPYD_POS_ID}"
cashout_max = "1000.00"
cashin_max = "5000.00"
otp_wait_s = 60
otp_attempts = 3
call_wait_s = 8
timeout_s = 5

[cashii]
base_url = "{payby_url}"
payment_page_url = "https://cashii.app/payment"
cashout_max = "1000.00"
poll_interval_s = 0.5
pay_timeout_s = 60
watch_days = 30
timeout_s = 5
""",
        encoding="utf-8",
    )
    return KioskFiles(
        root, config, state, receipts, frames, public_pem, mac_key, rapyd_key, cashii_key
    )


def _write_identity(etc: Path, kiosk_id: str) -> None:
    """``device.key`` (0600) and ``identity.toml``, as ``kiosk provision`` writes them."""
    from kiosk import identity

    me = identity.Identity(f"sim-{kiosk_id.lower()}", identity.new_key())
    fd = os.open(etc / identity.KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(identity.private_pem(me.key))
    (etc / identity.INFO_FILE).write_text(me.info_toml(), encoding="utf-8")


class DaemonProcess:
    """``kiosk run --simulate`` in a child process, ready when it says READY=1."""

    def __init__(
        self,
        files: KioskFiles,
        *,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``env``: variables merged into the child's environment (e.g. ``KIOSK_CRASH_AT``)."""
        self.files = files
        self.env = dict(env or {})
        self.log_path = log_path or files.root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after_s: float | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Spawn and wait for READY=1. Returns seconds from spawn to ready."""
        # in a short temporary directory: an AF_UNIX path holds at most 107 bytes, and a test's
        # directory (pytest-xdist adds a worker's) can be longer than that
        notify_dir = Path(tempfile.mkdtemp(prefix="kiosk-notify-"))
        notify_path = notify_dir / "sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        env = {
            **os.environ,
            **self.env,
            "NOTIFY_SOCKET": str(notify_path),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("WATCHDOG_USEC", None)
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk",
                "run",
                "--config",
                str(self.files.config),
                "--simulate",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        try:
            deadline = self.started_at + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"daemon exited with {self.proc.returncode}; see {self.log_path}"
                    )
                sock.settimeout(max(0.05, min(0.5, deadline - time.monotonic())))
                try:
                    msg = sock.recv(4096).decode(errors="replace")
                except TimeoutError:
                    continue
                if "READY=1" in msg.split("\n"):
                    self.ready_after_s = time.monotonic() - self.started_at
                    return self.ready_after_s
            raise TimeoutError(f"daemon not ready after {timeout} s; see {self.log_path}")
        finally:
            sock.close()
            shutil.rmtree(notify_dir, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: the power cut of a test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as systemd stops it; SIGKILL if it does not stop in ``timeout``."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def receipts_of(receipts_dir: Path, ref: str) -> list[Path]:
    """The rendered receipts (``.txt``; the ``.png`` beside each) that carry ``ref``, oldest
    first: the ESC/POS simulator names them by sequence and first line, not by reference."""
    return [p for p in sorted(receipts_dir.glob("*.txt")) if ref in p.read_text(encoding="utf-8")]


def setup_by_hand(
    root: Path,
    *,
    sandbox_url: str | None,
    validator: str = "sim",
    validator_port: str = "sim",
    payout: bool = False,
) -> KioskFiles:
    """``kiosk sim setup``: a simulated kiosk under ``root`` for running the daemon by hand.
    With ``sandbox_url`` (a running ``kiosk sandbox``), PayBy's key is fetched from its hooks
    and the kiosk's store registered there with :data:`STORE_BALANCE` AED; without, the PayBy
    section points at the sandbox's default address with a placeholder key (re-run with
    ``--sandbox`` once one runs). Raises :class:`~kiosk.errors.KioskError` with a message."""
    from kiosk.errors import KioskError

    if validator not in ("sim", "essp", "id003"):
        raise KioskError(f"--validator {validator!r}: expected sim, essp or id003")
    if payout and validator != "essp":
        raise KioskError("--payout needs --validator essp (a SMART Payout)")
    if validator == "sim" and validator_port != "sim":
        raise KioskError("--validator-port goes with --validator essp or id003")
    options: dict[str, Any] = {
        "validator": validator,
        "validator_port": validator_port,
        "payout": payout,
        "receipts_dir": root / "receipts",
    }
    try:
        if sandbox_url is None:
            from kiosk.providers.payby.client import generate_key_pair

            _, placeholder = generate_key_pair()
            return write_kiosk(
                root, payby_url=SANDBOX_DEFAULT_URL, payby_public_pem=placeholder, **options
            )
        return _register_at(root, sandbox_url.rstrip("/"), options)
    except OSError as exc:
        raise KioskError(f"cannot write the simulated kiosk under {root}: {exc}") from exc


SANDBOX_DEFAULT_URL = "http://127.0.0.1:8700"


def _register_at(root: Path, url: str, options: dict[str, Any]) -> KioskFiles:
    import httpx

    from kiosk.errors import KioskError

    hooks = f"{url}/_sandbox/payby"
    try:
        with httpx.Client(timeout=5.0) as http:
            pem = http.get(f"{hooks}/public-key")
            pem.raise_for_status()
            files = write_kiosk(root, payby_url=url, payby_public_pem=pem.text.encode(), **options)
            reply = http.post(
                f"{hooks}/merchants",
                json={
                    "partnerId": STORE_PARTNER_ID,
                    "publicKeyPem": files.store_public_pem.decode(),
                    "balance": {"currency": "AED", "amount": STORE_BALANCE},
                },
            )
            reply.raise_for_status()
            reply = http.post(
                f"{url}/_sandbox/paysera/clients",
                json={"client_id": PAYSERA_CLIENT_ID, "mac_key": files.paysera_mac_key},
            )
            reply.raise_for_status()
            reply = http.post(f"{url}/_sandbox/rapyd/pos", json=rapyd_pos(files))
            reply.raise_for_status()
            reply = http.post(f"{url}/_sandbox/cashii/merchants", json=cashii_merchant(files))
            reply.raise_for_status()
    except httpx.HTTPError as exc:
        raise KioskError(
            f"the sandbox at {url} did not answer its hooks ({exc}); start it with"
            " `kiosk sandbox` and give its address to --sandbox"
        ) from exc
    return files
