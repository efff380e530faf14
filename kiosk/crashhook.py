"""Fault injection at every durable step, for ``kiosk bench crashpoints`` and the tests.

A *durable step* is one journal commit that writes at least one event of a transaction
(kiosk-level logs such as ``daemon.ready`` or ``printer.status`` do not count, so the steps
of a journey are numbered the same on every run). Two environment variables, read once:

- ``KIOSK_CRASH_LOG=PATH``: append ``<n> <event kinds>`` to PATH after each durable step
  (the harness learns how many steps a journey has and what each one is);
- ``KIOSK_CRASH_AT=<n>:before`` or ``<n>:after``: the process kills itself with SIGKILL right
  before durable step ``n`` commits, or right after. SIGKILL, not an exception: nothing of
  Python's clean-up runs, as in a power cut of the Pi (the disk keeps what was fsync'd).

Unset (always, in production) the hook costs one attribute test per commit.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


class CrashHook:
    def __init__(self, at: str | None, log: str | None) -> None:
        self.step = 0
        self.target: int | None = None
        self.when = ""
        if at:
            n, _, when = at.partition(":")
            if not n.isdigit() or when not in ("before", "after"):
                raise ValueError(f"KIOSK_CRASH_AT={at!r}: expected <n>:before or <n>:after")
            self.target, self.when = int(n), when
        self.log = Path(log) if log else None

    @classmethod
    def from_env(cls) -> CrashHook | None:
        at, log = os.environ.get("KIOSK_CRASH_AT"), os.environ.get("KIOSK_CRASH_LOG")
        return cls(at, log) if at or log else None

    def before(self) -> None:
        """About to commit a durable step."""
        self.step += 1
        if self.target == self.step and self.when == "before":
            _die()

    def after(self, kinds: list[str]) -> None:
        """A durable step committed (and was fsync'd)."""
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(f"{self.step} {' '.join(kinds)}\n")
                f.flush()
                os.fsync(f.fileno())
        if self.target == self.step and self.when == "after":
            _die()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
