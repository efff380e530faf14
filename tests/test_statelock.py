"""One daemon per state directory (kiosk/statelock.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.simkiosk import write_kiosk
from kiosk.statelock import StateLock, StateLocked

HOLD = """
import sys, time
from pathlib import Path
from kiosk.statelock import StateLock
StateLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _holder(state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    assert proc.stdout is not None
    proc.stdout.close()


def test_second_lock_names_the_first(tmp_path: Path) -> None:
    with (
        StateLock(tmp_path),
        pytest.raises(StateLocked, match=rf"pid {os.getpid()}\b.*already runs on"),
    ):
        StateLock(tmp_path).acquire()
    StateLock(tmp_path).acquire().release()  # released: free again


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    with pytest.raises(StateLocked, match=f"pid {proc.pid}"):
        StateLock(tmp_path).acquire()
    _kill(proc)
    StateLock(tmp_path).acquire().release()  # SIGKILL leaves no stale lock


def test_second_kiosk_run_refuses_and_names_the_first(tmp_path: Path) -> None:
    files = write_kiosk(tmp_path / "k", payby_url="http://127.0.0.1:9", payby_public_pem=b"")
    proc = _holder(files.state_dir)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "kiosk", "run", "--config", str(files.config), "--simulate"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        _kill(proc)
    assert run.returncode == 2, run.stderr
    assert f"another kiosk daemon (pid {proc.pid}" in run.stderr
    assert f"already runs on {files.state_dir}; stop it first" in run.stderr
    assert "Traceback" not in run.stderr
