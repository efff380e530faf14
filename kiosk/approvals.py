"""The transactions waiting for a technician's approval, by reference (issue 16).

A journey whose amount is above ``[limits] approval_above`` (or its provider's own
``approval_above``) opens a wait here once ``approval.requested`` is committed
(:func:`kiosk.flows.approval.ask`); the panel's service key or the fleet's signed ``approve``
(:meth:`Approvals.grant`, from ``Daemon._fleet_command``) settles it. One approval per
transaction: a wait is closed by its first grant, its cancel or its timeout, and a grant
for a reference with no open wait is refused with the reason. Held in memory only: after a
restart nothing waits (the journey's recovery ended it, nothing moved), so an approval sent
for it is refused.

Everything here runs on the event loop's thread (the fleet's commands and the journeys both).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kiosk.errors import ApprovalRefused
from kiosk.money import Money


@dataclass(frozen=True, slots=True)
class Waiting:
    tx_id: int
    amount: Money
    granted: asyncio.Future[str]
    """Set to who approved (``fleet``) by :meth:`Approvals.grant`."""


class Approvals:
    def __init__(self) -> None:
        self._waiting: dict[str, Waiting] = {}

    def open(self, ref: str, tx_id: int, amount: Money) -> asyncio.Future[str]:
        """Start waiting for ``ref``'s approval of ``amount``; the future is set by a grant."""
        if ref in self._waiting:
            raise RuntimeError(f"{ref} already waits for an approval")
        granted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = Waiting(tx_id, amount, granted)
        return granted

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
