"""One daemon per state directory: an exclusive, non-blocking ``flock`` on
``<state_dir>/kiosk.lock``, held for the daemon's life.

The holder writes its pid and start time (UTC, ISO 8601) into the file, so the second
``kiosk run`` can name the first. The kernel releases a flock when its process dies, even by
SIGKILL, so a power cut or a crash never leaves a stale lock behind: the file may remain, the
lock does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

from kiosk.errors import StorageError

LOCK_NAME = "kiosk.lock"


class StateLocked(StorageError):
    """Another kiosk daemon holds the state directory's lock (``kiosk run`` exits 2)."""

    exit_status = 2

    def __init__(self, state_dir: Path, holder: str) -> None:
        self.state_dir, self.holder = state_dir, holder
        super().__init__(
            f"another kiosk daemon ({holder}) already runs on {state_dir}; stop it first"
        )


class StateLock:
    """The lock on ``state_dir``; :meth:`acquire` it, :meth:`release` it (or use ``with``)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        """Take the lock or raise :class:`StateLocked` naming the holder. Never blocks."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StateLocked(self.state_dir, holder) from None
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"{self.path}: cannot lock: {exc}") from exc
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} started={started}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the fd releases the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """'pid N, started T' from the lock file, or 'pid unknown' if it is not written yet."""
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
    if "pid" not in fields:
        return "pid unknown"
    started = f", started {fields['started']}" if "started" in fields else ""
    return f"pid {fields['pid']}{started}"
