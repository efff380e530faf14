"""The daemon's log for a window (``journalctl -u kiosk``, else ``state_dir/*.log``, else a
note) and its ``status`` over the admin socket."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from kiosk.errors import KioskError

STATUS_TIMEOUT_S: Final = 3.0
JOURNALCTL_TIMEOUT_S: Final = 60.0
MAX_LOG_BYTES: Final = 16 * 1024 * 1024  # the newest part is kept


_LOG_TIME = r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,6}))?\s?(Z|[+-]\d{2}:?\d{2})?"


def _line_time(line: str) -> datetime | None:
    m = re.match(_LOG_TIME, line)
    if m is None:
        return None
    date, clock, frac, zone = m.groups()
    text = f"{date}T{clock}{'.' + frac.ljust(6, '0') if frac else ''}"
    if zone:
        text += "+00:00" if zone == "Z" else zone
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.astimezone(UTC)  # no offset: the kiosk's local time (Python logging's asctime)


def _window_lines(text: str, since: datetime, until: datetime) -> list[str]:
    """The lines of ``text`` stamped within the window; an unstamped line (a traceback, a
    multi-line message) goes with the line before it."""
    keep, out = True, []
    for line in text.splitlines():
        when = _line_time(line)
        if when is not None:
            keep = since <= when < until
        if keep:
            out.append(line)
    return out


def _journalctl(since: datetime, until: datetime) -> tuple[str | None, str]:
    import shutil
    import subprocess

    exe = shutil.which("journalctl")
    if exe is None:
        return None, "journalctl: not installed"
    cmd = [
        exe, "-u", "kiosk", "--since", f"@{int(since.timestamp())}",
        "--until", f"@{int(until.timestamp()) + 1}", "-o", "short-iso", "--no-pager", "-q",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            cmd, capture_output=True, timeout=JOURNALCTL_TIMEOUT_S, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"journalctl: {type(exc).__name__}"
    text = done.stdout.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("-- ")]
    if done.returncode != 0:
        return None, f"journalctl: exit status {done.returncode}"
    if not lines:
        return None, "journalctl: no entries for the kiosk unit in the window"
    return text, "journalctl -u kiosk"


def collect_logs(state_dir: Path, since: datetime, until: datetime) -> tuple[str, str]:
    """The daemon's log for the window, and where it came from."""
    text, why = _journalctl(since, until)
    if text is not None:
        return text, why
    notes = [why]
    files = sorted(
        p for p in state_dir.glob("*.log") if p.is_file() and not p.is_symlink()
    )  # a symlink could point anywhere: not followed
    parts: list[str] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            notes.append(f"{path}: {type(exc).__name__}")
            continue
        lines = _window_lines(raw.decode("utf-8", "replace"), since, until)
        parts.append(f"==> {path} <==\n" + "".join(f"{ln}\n" for ln in lines))
    if parts:
        return "".join(parts), f"{', '.join(str(p) for p in files)} ({'; '.join(notes)})"
    notes.append(f"no *.log in {state_dir}")
    return f"no logs available ({'; '.join(notes)})\n", "none"


def cap(text: str) -> str:
    data = text.encode()
    if len(data) <= MAX_LOG_BYTES:
        return text
    tail = data[-MAX_LOG_BYTES:].decode("utf-8", "ignore")
    return f"[the first {len(data) - MAX_LOG_BYTES} bytes are left out]\n" + tail


def daemon_status(state_dir: Path) -> dict[str, Any]:
    """The running daemon's ``status``, or a note saying why there is none."""
    from kiosk import admin

    sock = state_dir / "admin.sock"
    if not sock.exists():
        return {"answered": False, "note": f"no admin socket at {sock}: the daemon is not running"}
    try:
        reply = admin.call(sock, {"cmd": "status"}, timeout=STATUS_TIMEOUT_S)
    except (KioskError, OSError, ValueError) as exc:
        return {"answered": False, "note": f"the daemon did not answer on {sock}: {exc}"}
    return {"answered": True, "status": reply}
