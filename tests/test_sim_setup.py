"""``kiosk sim setup``: a simulated kiosk to run the daemon by hand."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.sandbox.server import start_sandbox
from kiosk.simkiosk import STORE_PARTNER_ID


def _kiosk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_setup_without_sandbox_passes_config_check(tmp_path: Path) -> None:
    done = _kiosk("sim", "setup", "--dir", str(tmp_path / "site"))
    assert done.returncode == 0, done.stderr
    config = Path(done.stdout.strip())
    assert config.is_file()
    secrets = next((tmp_path / "site").rglob("secrets.toml"))
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    check = _kiosk("config", "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert "ok" in check.stdout


def test_setup_against_a_running_sandbox_registers_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = tmp_path / "validator"
    with start_sandbox(tmp_path / "sandbox") as sandbox:
        argv = ["sim", "setup", "--dir", str(tmp_path / "site"), "--sandbox", sandbox.url]
        argv += ["--validator", "essp", "--validator-port", str(port), "--payout"]
        assert main(argv) == 0
        config = Path(capsys.readouterr().out.strip())
        balances = sandbox.payby.balances(STORE_PARTNER_ID)
        assert balances  # the store is registered, with its opening balance
    text = config.read_text()
    assert 'driver = "essp"' in text and f'port = "{port}"' in text and "payout = true" in text
    assert sandbox.url in text
    assert main(["config", "check", "--config", str(config)]) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--validator", "mdb"],
        ["--sandbox", "http://127.0.0.1:9"],
    ],
)
def test_bad_arguments_exit_2_without_traceback(tmp_path: Path, argv: list[str]) -> None:
    done = _kiosk("sim", "setup", "--dir", str(tmp_path / "site"), *argv)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip()


def test_an_unwritable_dir_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = _kiosk("sim", "setup", "--dir", str(blocker / "site"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and str(blocker) in done.stderr
