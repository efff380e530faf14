"""The kiosk stops taking codes for a while after too many refused ones (issue 16: someone
trying reservation codes or OTPs at the kiosk). Counted: a code the router refuses, and a
journey that ends ``refused`` with nothing moved. The lock is journaled (``codes.locked``
with its end, wall-clock), so that pulling the plug does not lift it."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from kiosk.config import LimitsConfig


class Lockout:
    def __init__(self, limits: LimitsConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.limits, self.clock = limits, clock
        self._refused: collections.deque[float] = collections.deque()
        self.until = 0.0  # wall-clock end of the current lock (0: none)

    def refused(self) -> float | None:
        """Count one refused code; the lock's end when this one locks the kiosk, else None."""
        now = self.clock()
        self._refused.append(now)
        while self._refused and self._refused[0] < now - self.limits.refused_window_s:
            self._refused.popleft()
        if len(self._refused) >= self.limits.refused_codes and self.limits.lockout_s > 0:
            self._refused.clear()
            self.until = now + self.limits.lockout_s
            return self.until
        return None

    def remaining_s(self) -> float:
        return max(0.0, self.until - self.clock())

    def reason(self) -> str | None:
        left = self.remaining_s()
        if not left:
            return None
        end = time.strftime("%H:%M", time.localtime(self.until))
        return f"too many refused codes: no code is taken until {end} ({left / 60:.0f} min)"
