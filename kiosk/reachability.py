"""Is a provider answering? Watched from the outcome of every call, so that a journey that
needs an unreachable provider is refused before any note is taken (at once, not after a
customer has stood through a timeout).

A call that got *any* reply (a success, a signed refusal, even an error page) means the
provider is reachable; a call that got nothing back (connect refused, DNS, a timeout) means it
is not. A provider is **down** while its last outcome is a failure younger than ``hold_s``;
after that the next customer may try again, and the daemon's idle tick probes it meanwhile.

A provider that refused the kiosk's **credentials** (:class:`~kiosk.errors.ProviderAuthFailed`:
a rejected signature or MAC, a revoked key) is down too, and stays down: every call would
fail the same way, and a cash-in would take notes it cannot credit. Only a call that succeeds
again (the idle probe, for a provider that has one) or a restart with fixed keys lifts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Seen:
    ok: bool
    at: float
    since: float  # when it last changed


class Reachability:
    def __init__(self, *, hold_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.hold_s = hold_s
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._clocks: dict[str, tuple[float | None, bool]] = {}
        self._auth: dict[str, str] = {}  # provider -> what it said, while it refuses our keys

    def record(self, provider: str, ok: bool) -> None:
        now = self._clock()
        seen = self._seen.get(provider)
        since = seen.since if seen is not None and seen.ok == ok else now
        self._seen[provider] = _Seen(ok, now, since)

    def recorder(self, provider: str) -> Callable[[bool], None]:
        """The ``on_reply`` callback of ``provider``'s client."""
        return lambda ok: self.record(provider, ok)

    def clock(self, provider: str, skew_s: float | None, refused: bool = False) -> None:
        """``provider``'s clock against ours: ``skew_s`` = ours - theirs, from a reply's time
        (``None``: not measurable); ``refused``: it refused our request's time outright."""
        self._clocks[provider] = (skew_s, refused)

    def ahead_ms(self, provider: str) -> int:
        """How far our clock was last measured ahead of ``provider``'s, ms (0: behind or not
        measured): the outbox waits that much longer before a request is void."""
        skew, _ = self._clocks.get(provider, (None, False))
        return max(0, int((skew or 0.0) * 1000))

    def clock_recorder(self, provider: str) -> Callable[[float | None, bool], None]:
        """The ``on_clock`` callback of ``provider``'s client."""
        return lambda skew_s, refused: self.clock(provider, skew_s, refused)

    def auth(self, provider: str, refused: str | None) -> bool:
        """``provider`` refused the kiosk's credentials (``refused``: what it said, never a
        secret) or accepted them (None). True when that changed (the daemon journals, logs and
        alerts once per change)."""
        before = self._auth.get(provider)
        if refused is None:
            self._auth.pop(provider, None)
        else:
            self._auth[provider] = refused
        return (before is None) != (refused is None)

    def auth_refused(self, provider: str) -> str | None:
        """What ``provider`` said when it refused the kiosk's credentials, while it does."""
        return self._auth.get(provider)

    def is_down(self, provider: str) -> bool:
        if provider in self._auth:
            return True
        seen = self._seen.get(provider)
        return seen is not None and not seen.ok and self._clock() - seen.at < self.hold_s

    def status(self) -> dict[str, dict[str, object]]:
        """Per provider: ``reachable`` and for how many seconds it has been so; once measured,
        ``clock_skew_s`` (our clock minus the provider's) and ``clock_refused`` (the provider
        refused our request's time: fix NTP); ``auth_refused`` while it refuses our keys."""
        now = self._clock()
        out: dict[str, dict[str, object]] = {
            name: {"reachable": s.ok, "for_s": round(now - s.since, 1)}
            for name, s in sorted(self._seen.items())
        }
        for name, (skew, refused) in sorted(self._clocks.items()):
            entry = out.setdefault(name, {})
            if skew is not None:
                entry["clock_skew_s"] = round(skew, 1)
            entry["clock_refused"] = refused
        for name, said in sorted(self._auth.items()):
            out.setdefault(name, {})["auth_refused"] = said
        return out
