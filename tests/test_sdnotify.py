import os
import socket
from pathlib import Path

import pytest

from kiosk.sdnotify import Notifier, watchdog_interval_s


def test_notifier_speaks_the_systemd_protocol(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    n = Notifier(str(path))
    assert n.enabled
    n.ready("ready; recovered 0")
    assert server.recv(1024) == b"READY=1\nSTATUS=ready; recovered 0"
    n.watchdog()
    assert server.recv(1024) == b"WATCHDOG=1"
    n.stopping()
    assert server.recv(1024) == b"STOPPING=1"
    n.close()
    server.close()


def test_without_systemd_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    n.ready()  # nothing to send to, nothing raised


def test_watchdog_interval_is_half_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None  # meant for another process
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None
