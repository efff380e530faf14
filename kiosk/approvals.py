"""The transactions waiting for a technician's approval, by reference (issue 16).

A journey whose amount is above ``[limits] approval_above`` (or its provider's own
``approval_above``) opens a wait here once ``approval.requested`` is committed
(:func:`kiosk.flows.approval.ask`); the panel's service key or the fleet's signed ``approve``
(:meth:`Approvals.grant`, from ``Daemon._fleet_command``) settles it. One approval per
transaction: a wait is closed by its first grant, its cancel or its timeout, and a grant
for a reference with no open wait is refused with the reason. Held in memory only: after a
restart nothing waits (the journey's recovery ended it, nothing moved), so an approval sent
for it is refused.

The fleet sees each wait in the heartbeat (:meth:`Approvals.views`: reference, provider,
amount, since, expiry; never a code), and :attr:`Approvals.on_open` (the daemon sets it to
:meth:`kiosk.fleet.runner.Fleet.nudge`) pushes a heartbeat at once when one opens, rather than
with the next interval: it only sets a flag, so opening a wait never waits on the fleet.

Everything here runs on the event loop's thread (the fleet's commands and the journeys both).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kiosk.errors import ApprovalRefused
from kiosk.fleet.view import ApprovalView
from kiosk.money import Money

log = logging.getLogger("kiosk.approvals")


@dataclass(frozen=True, slots=True)
class Waiting:
    tx_id: int
    amount: Money
    granted: asyncio.Future[str]
    """Set to who approved (``fleet``) by :meth:`Approvals.grant`."""
    provider: str = ""
    since: float = 0.0
    """time.time() when the wait opened."""
    expires_at: float = 0.0
    """time.time() when it expires unless approved (the journey's ``approval_timeout_s``)."""


class Approvals:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._waiting: dict[str, Waiting] = {}
        self._clock = clock
        self.on_open: Callable[[], None] | None = None
        """Called (on the loop, without waiting) each time a wait opens: the fleet's nudge."""

    def open(
        self, ref: str, tx_id: int, amount: Money, *, provider: str = "", timeout_s: float = 0.0
    ) -> asyncio.Future[str]:
        """Start waiting for ``ref``'s approval of ``amount`` (``provider``'s journey, for at
        most ``timeout_s``); the future is set by a grant."""
        if ref in self._waiting:
            raise RuntimeError(f"{ref} already waits for an approval")
        granted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        now = self._clock()
        self._waiting[ref] = Waiting(tx_id, amount, granted, provider, now, now + timeout_s)
        if self.on_open is not None:
            try:
                self.on_open()
            except Exception as exc:  # the fleet's nudge never stops a journey
                log.warning("approvals: telling the fleet failed: %s: %s", type(exc).__name__, exc)
        return granted

    def views(self) -> tuple[ApprovalView, ...]:
        """The waits as the fleet sees them, oldest first (no code: a reference and amounts)."""
        return tuple(
            ApprovalView(ref, w.provider, w.amount.minor, w.amount.code, w.since, w.expires_at)
            for ref, w in sorted(self._waiting.items(), key=lambda kv: (kv[1].since, kv[0]))
            if not w.granted.done()
        )

    def close(self, ref: str) -> None:
        """Stop waiting for ``ref`` (granted, cancelled, expired); later grants are refused."""
        self._waiting.pop(ref, None)

    def waiting(self) -> dict[str, Money]:
        """Each reference waiting for approval, with its amount."""
        return {ref: w.amount for ref, w in self._waiting.items()}

    def grant(self, ref: str, by: str, amount: Money | None = None) -> Money:
        """Approve ``ref``'s wait (``amount``: the approval is for that amount only). Returns
        the amount approved; :class:`ApprovalRefused` when there is nothing to approve."""
        w = self._waiting.get(ref)
        if w is None or w.granted.done():
            raise ApprovalRefused(
                f"{ref}: no transaction waits for approval under this reference"
                " (unknown, finished or already approved)"
            )
        if amount is not None and amount != w.amount:
            raise ApprovalRefused(f"{ref}: it waits for approval of {w.amount}, not {amount}")
        w.granted.set_result(by)
        del self._waiting[ref]
        return w.amount
