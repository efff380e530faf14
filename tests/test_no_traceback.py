"""Issue 16: no command prints a traceback; each error is one line and an exit status (0 ok,
1 failed, 2 bad configuration or usage, 70 internal error, 141 the reader went away).

In-process through ``kiosk.cli.main`` where the failure is the command's; the real ``kiosk``
console script where it is the process's (a closed pipe, the daemon's start-up, a crash).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from kiosk.cli import main
from kiosk.journal import Journal
from tests.conftest import KEY, write_secrets

_SCRIPT = Path(sys.executable).with_name("kiosk")
KIOSK = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "kiosk"]
ROOT = os.geteuid() == 0  # permissions do not stop root: those cases need another user
ON_A_PI = Path("/dev/gpiochip0").exists()  # real pins: the daemon's GPIO would be used


def _clean(err: str) -> None:
    assert "Traceback" not in err and 'File "' not in err, err


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    _clean(err)
    return status, out, err


def _kiosk(
    *args: str, stdout: int = subprocess.PIPE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KIOSK, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path: the admin socket's path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="knt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _config(root: Path, hardware: str = "") -> Path:
    secrets = write_secrets(root / "secrets.toml", f'journal_key = "{KEY.hex()}"\n')
    cfg = root / "kiosk.toml"
    cfg.write_text(
        f'[kiosk]\nid = "KT1"\ncurrency = "AED"\nstate_dir = "{root / "state"}"\n'
        f'secrets_file = "{secrets}"\n[fleet]\nport = 0\n{hardware}'
    )
    return cfg


def _journal_with_a_liability(config_file: Path) -> Path:
    path = config_file.parent / "state" / "journal.db"
    j = Journal.open(path, kiosk_id="KT1", code_key=KEY)
    tx = j.begin("payby_cashin", currency="AED")
    j.owe(tx.id, 5000, "ended_by_cancel")
    j.close()
    return path


# --- the journal: read-only commands create nothing; a write needs the kiosk's journal --------


def test_settle_a_missing_or_settled_liability(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _journal_with_a_liability(config_file)
    settle = ["liabilities", "--config", str(config_file), "--note", "paid back", "--settle"]
    status, _, err = _run([*settle, "9"], capsys)
    assert status == 1 and "no open liability 9: see kiosk liabilities --all" in err
    assert _run([*settle, "1"], capsys)[:2] == (0, "liability 1 settled\n")
    status, _, err = _run([*settle, "1"], capsys)
    assert status == 1 and "no open liability 1" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["journal"],
        ["journal", "verify"],
        ["journal", "KT1-000001"],
        ["liabilities"],
        ["liabilities", "--all"],
        ["liabilities", "--settle", "1", "--note", "paid back"],
        ["reconcile"],
    ],
    ids=" ".join,
)
def test_no_journal_is_a_message_and_nothing_is_created(
    argv: list[str], config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = config_file.parent / "state"
    status, out, err = _run([*argv, "--config", str(config_file)], capsys)
    assert status == 1 and out == ""
    assert err == (
        f"kiosk: no journal at {state / 'journal.db'}: has the kiosk run here?"
        " (check kiosk.state_dir)\n"
    )
    assert not state.exists()  # neither the state directory nor an empty journal


def test_read_only_commands_do_not_write_the_journal(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _journal_with_a_liability(config_file)
    before = path.read_bytes()
    for argv in (["journal"], ["journal", "verify"], ["liabilities", "--all"], ["reconcile"]):
        assert _run([*argv, "--config", str(config_file)], capsys)[0] == 0
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["journal.db"]  # no -wal, no -shm


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "has no kiosk tables, this kiosk reads schema"),
        (b"not a database, a text file " * 100, "cannot read it (file is not a database)"),
    ],
    ids=["empty file", "not a database"],
)
def test_a_journal_that_is_not_one_is_a_message(
    content: bytes, said: str, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file.parent / "state" / "journal.db"
    path.parent.mkdir()
    path.write_bytes(content)
    status, _, err = _run(["journal", "--config", str(config_file)], capsys)
    assert status == 1 and said in err and err.count("\n") == 1
    assert path.read_bytes() == content  # not migrated into a journal


@pytest.mark.skipif(ROOT, reason="root writes any directory")
def test_journal_in_an_unwritable_state_dir_is_read(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _journal_with_a_liability(config_file)
    path.parent.chmod(0o555)  # WAL mode: SQLite cannot make its -shm file here
    try:
        status, out, _ = _run(["liabilities", "--config", str(config_file)], capsys)
        assert status == 0 and "AED 50.00" in out
        assert _run(["journal", "verify", "--config", str(config_file)], capsys)[0] == 0
        status, _, err = _run(
            ["liabilities", "--settle", "1", "--note", "x", "--config", str(config_file)], capsys
        )
        assert status == 1 and "readonly database" in err
    finally:
        path.parent.chmod(0o755)


@pytest.mark.skipif(ROOT, reason="root reads any file")
def test_an_unreadable_journal_names_the_user_to_run_as(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _journal_with_a_liability(config_file)
    path.chmod(0)
    try:
        status, _, err = _run(["journal", "--config", str(config_file)], capsys)
    finally:
        path.chmod(0o644)
    assert status == 1 and f"journal {path}: cannot" in err and "sudo -u kiosk" in err


# --- kiosk sandbox -------------------------------------------------------------------------------


def test_sandbox_on_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = _run(["sandbox", "--port", str(port), "--dir", str(tmp_path)], capsys)
    assert status == 1
    assert err.startswith(f"kiosk: the sandbox cannot listen on 127.0.0.1:{port}: the port is in")


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--host", "10.1.2.3"], "host '10.1.2.3': the sandbox binds loopback only"),
        (["--host", "no.such.host.invalid"], "host 'no.such.host.invalid': the sandbox binds"),
        (["--port", "70000"], "port 70000: expected 0-65535"),
        (["--port", "-1"], "port -1: expected 0-65535"),
    ],
)
def test_sandbox_bad_host_or_port_is_usage(
    flags: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _run(["sandbox", *flags, "--dir", str(tmp_path / "sb")], capsys)
    assert status == 2 and err.startswith(f"kiosk: {said}")
    assert not (tmp_path / "sb").exists()  # refused before anything is written


def test_sandbox_port_that_is_not_a_number_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sandbox", "--port", "abc"])
    assert exc.value.code == 2
    _clean(capsys.readouterr().err)


@pytest.mark.parametrize("where", ["file", "file/below"])
def test_sandbox_dir_that_is_a_file(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    status, _, err = _run(["sandbox", "--port", "0", "--dir", str(tmp_path / where)], capsys)
    assert status == 2
    assert err.startswith(f"kiosk: sandbox state directory {tmp_path / where}: a file is in")


@pytest.mark.skipif(ROOT, reason="root writes any directory")
def test_sandbox_dir_that_is_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        status, _, err = _run(["sandbox", "--port", "0", "--dir", str(locked / "sb")], capsys)
        assert status == 2 and "cannot write there" in err
        status, _, err = _run(["sandbox", "--port", "0", "--dir", str(locked)], capsys)
        assert status == 2 and "cannot write there" in err
    finally:
        locked.chmod(0o755)


# --- kiosk demo, kiosk sim ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "file/below"])
def test_demo_out_on_a_file(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    status, _, err = _run(["demo", "--out", str(tmp_path / where)], capsys)
    assert status == 2 and err.startswith(f"kiosk: --out {tmp_path / where}: a file is in")


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--notes", "abc"], "--notes abc: expected up to 24 note values in minor units"),
        (["--notes", "500,,1000"], "--notes 500,,1000: expected"),
        (["--notes", "0"], "--notes 0: expected"),
        (["--notes", "5\u00b2"], "--notes 5\u00b2: expected"),
        (["--notes", "9" * 5000], "--notes 99999999999999"),  # int() refuses 4301 digits
        (["--levels", "1000x1x2"], "--levels 1000x1x2: expected VALUExCOUNT pairs"),
        (["--levels", "1000xabc"], "--levels 1000xabc: expected VALUExCOUNT pairs"),
        (["--levels", "1000"], "--levels 1000: expected VALUExCOUNT pairs"),
        (["--levels", "700x3"], "--levels 700x3: 700 is not a note of this validator"),
        (["--currency", "XYZ"], "--currency: unknown currency 'XYZ'"),
        (["--protocol", "id003", "--levels", "1000x3"], "--levels is the eSSP SMART Payout's"),
        (
            ["--protocol", "id003", "--notes", "1,2,3,4,5,6,7,8,9"],
            "--notes 1,2,3,4,5,6,7,8,9: expected up to 8",
        ),
    ],
)
def test_sim_validator_bad_values_are_usage(
    flags: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sim", "validator", "--protocol", "essp", "--link", str(tmp_path / "v"), *flags]
    status, _, err = _run(argv, capsys)
    assert status == 2 and err.startswith(f"kiosk: {said}")


@pytest.mark.parametrize("flag", ["--link", "--control"])
def test_sim_validator_paths_below_a_file_are_usage(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    paths = {"--link": str(tmp_path / "v"), "--control": str(tmp_path / "c.sock")}
    paths[flag] = str(tmp_path / "file" / "x")
    argv = ["sim", "validator", "--protocol", "essp"]
    status, _, err = _run([*argv, *(a for kv in paths.items() for a in kv)], capsys)
    assert status == 2 and err.startswith(f"kiosk: {flag} {tmp_path / 'file'}: a file is in")


def test_sim_printer_out_on_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    argv = ["sim", "printer", "--link", str(tmp_path / "p"), "--out", str(tmp_path / "file")]
    status, _, err = _run(argv, capsys)
    assert status == 2 and err.startswith(f"kiosk: --out {tmp_path / 'file'}: a file is in")


# --- logging -------------------------------------------------------------------------------------


def test_a_bad_log_level_is_a_message(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _journal_with_a_liability(config_file)
    monkeypatch.setenv("KIOSK_LOG_LEVEL", "loud")
    status, out, err = _run(["journal", "--config", str(config_file)], capsys)
    assert status == 0 and "KT1-000001" in out
    assert err == "KIOSK_LOG_LEVEL=loud: one of DEBUG, INFO, WARNING, ERROR; using INFO\n"


# --- an internal error: one line, exit 70; kiosk run crashes for systemd ------------------------

SECRET_URL = "https://pay.example/sgs/pay?token=abcdef1234567890abcdef"


def test_an_unexpected_error_is_one_line_and_exit_70(
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(args: object) -> int:
        raise ValueError(f"a bug near\n{SECRET_URL}")

    monkeypatch.setattr("kiosk.cli.cmd_journal", broken)
    caplog.set_level(logging.DEBUG, logger="kiosk.cli")
    status, out, err = _run(["journal", "--config", str(config_file)], capsys)
    assert status == 70 and out == ""
    assert err.startswith("kiosk: internal error: ValueError: a bug near https://pay.example/")
    assert err.endswith("(run it again with -v for the details; please report it)\n")
    assert err.count("\n") == 1 and "abcdef1234567890" not in err  # one line, redacted
    (record,) = [r for r in caplog.records if r.name == "kiosk.cli"]
    assert record.levelno == logging.DEBUG  # the traceback: with -v only
    assert "Traceback" in (record.exc_text or "") or record.exc_info


def test_kiosk_run_crash_is_logged_and_raised(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(self: object) -> int:
        raise RuntimeError("the loop died")

    monkeypatch.setattr("kiosk.daemon.Daemon.run", crash)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # main() wraps it: put it back after
    with pytest.raises(RuntimeError, match="the loop died"):
        main(["run", "--simulate", "--config", str(config_file)])
    (record,) = [r for r in caplog.records if r.name == "kiosk.cli"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "kiosk run: crashed: RuntimeError: the loop died"
    assert record.exc_info or "Traceback" in (record.exc_text or "")


CRASH = f"""
import sys
import kiosk.daemon

async def crash(self):
    raise RuntimeError("the loop died at {SECRET_URL}")

kiosk.daemon.Daemon.run = crash
from kiosk.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kiosk_run_crash_shows_systemd_one_redacted_traceback(config_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CRASH, "run", "--simulate", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1  # an uncaught exception: systemd sees the failure
    assert "ERROR kiosk.cli: kiosk run: crashed: RuntimeError: the loop died" in done.stderr
    assert done.stderr.count("Traceback") == 1  # the log's, not the interpreter's again
    assert "abcdef1234567890" not in done.stderr


# --- kiosk run on hardware that is absent --------------------------------------------------------


@pytest.mark.skipif(ON_A_PI, reason="on a Pi the daemon would drive the real GPIO pins")
@pytest.mark.parametrize(
    ("table", "said", "logged"),
    [
        ("validator", "validator", "validator: cannot open (/dev/nonexistent: cannot open"),
        ("printer", "printer: cannot open", "printer: cannot open ("),
    ],
)
def test_kiosk_run_without_a_device_is_out_of_service(
    short_dir: Path, table: str, said: str, logged: str
) -> None:
    """A device that is not there: the daemon starts, out of service and saying why, and opens
    it again every few seconds (it may be plugged in later; a daemon that refused to start
    would soon hit systemd's start limit and stay down)."""
    driver = "essp" if table == "validator" else "escpos"
    cfg = _config(
        short_dir, f'[hardware.{table}]\ndriver = "{driver}"\nport = "/dev/nonexistent"\n'
    )
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "KIOSK_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen(
        [*KIOSK, "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    lines: list[str] = []
    ready = threading.Event()

    def read(stderr: IO[str]) -> None:
        for line in stderr:
            lines.append(line)
            if "ready in" in line:
                ready.set()

    reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "".join(lines)
        status = _kiosk("status", "--json", "--config", str(cfg))
        assert status.returncode == 3, status  # out of service, and it says why
        assert said in json.dumps(json.loads(status.stdout)["reasons"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
        proc.stderr.close()
    log = "".join(lines)
    assert logged in log and "out of service" in log
    _clean(log)


@pytest.mark.skipif(ON_A_PI, reason="a Pi has its GPIO")
def test_kiosk_run_without_gpio_says_what_to_do(short_dir: Path) -> None:
    cfg = _config(short_dir)
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "no-such-factory"}
    done = _kiosk("run", "--config", str(cfg), env=env)
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith("kiosk: gpio panel: ") and last.endswith("elsewhere run with --simulate")
    _clean(done.stderr)


def test_kiosk_run_state_dir_below_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").write_text("not a directory")
    cfg = _config(tmp_path).read_text().replace('/state"', '/state/below"')
    (tmp_path / "kiosk.toml").write_text(cfg)
    status, _, err = _run(["run", "--simulate", "--config", str(tmp_path / "kiosk.toml")], capsys)
    assert status == 1 and err.startswith(f"kiosk: state directory {tmp_path / 'state/below'}: ")
    assert "check kiosk.state_dir in" in err


# --- a closed pipe: kiosk status | head ----------------------------------------------------------


def _fake_daemon(sock_path: Path, reply: bytes | None) -> socket.socket:
    """An admin socket answering one request with ``reply`` (None: hang up without a word)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen()

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                if reply is not None:
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return server


def _closed_pipe() -> int:
    """The write end of a pipe whose reader has gone: the first write fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    return w


def test_status_into_a_closed_pipe(short_dir: Path) -> None:
    cfg = _config(short_dir)
    (short_dir / "state").mkdir()
    doc = {"ok": True, "state": "ready", "kiosk": "KT1"}
    _fake_daemon(short_dir / "state" / "admin.sock", json.dumps(doc).encode() + b"\n")
    w = _closed_pipe()
    try:
        done = _kiosk("status", "--json", "--config", str(cfg), stdout=w)
    finally:
        os.close(w)
    assert (done.returncode, done.stderr) == (141, "")  # as `seq 1 9 | true` shows seq's


def test_journal_into_head(config_file: Path) -> None:
    """``kiosk journal --json | head -1`` with more than a pipe's buffer of output."""
    j = Journal.open(config_file.parent / "state" / "journal.db", kiosk_id="KT1", code_key=KEY)
    with j.atomic():
        for _ in range(1500):
            j.begin("payby_cashin", currency="AED")
    j.close()
    kiosk = subprocess.Popen(
        [*KIOSK, "journal", "--json", "--limit", "2000", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert kiosk.stdout is not None and kiosk.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=kiosk.stdout, capture_output=True, text=True)
    kiosk.stdout.close()
    err = kiosk.stderr.read()
    kiosk.stderr.close()
    assert kiosk.wait(60) == 141 and err == ""
    assert head.stdout == "[\n"


def test_a_daemon_that_hangs_up_is_a_message(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(short_dir)
    (short_dir / "state").mkdir()
    _fake_daemon(short_dir / "state" / "admin.sock", None)
    status, _, err = _run(["status", "--config", str(cfg)], capsys)
    assert status == 1
    assert err.startswith(f"kiosk: the daemon on {short_dir / 'state' / 'admin.sock'} did not")
    assert "journalctl -u kiosk" in err
