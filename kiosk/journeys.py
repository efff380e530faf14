"""Every journey the kiosk runs, as an explicit state machine (``../shared/reference/journeys.md``).

A transaction's state is a row in the journal; :meth:`Journey.check` refuses any transition
not drawn here, so a bug cannot skip a step. Each non-terminal state names what recovery does
when the kiosk restarts and finds a transaction there (``recovery``): that is the contract the
journal's intent/outcome records must satisfy. Terminal states:

- ``completed``: the money moved as the customer wanted;
- ``refused`` / ``cancelled`` / ``void``: nothing moved;
- ``owed``: the customer gave money (or was debited) and did not get what they came for: a
  liability row exists, a receipt says so, the fleet is told;
- ``unknown``: a payout whose outcome neither the device nor the provider can settle: a
  technician counts the cash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

TERMINAL: Final = frozenset({"completed", "refused", "cancelled", "void", "owed", "unknown"})


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    provider: str
    direction: str  # "in" (cash-in), "out" (cash-out), "none" (refund)
    initial: str
    edges: dict[str, frozenset[str]]
    recovery: dict[str, str]
    legacy: frozenset[str] = frozenset()
    """States no transition leads to any more, kept so that a journal written by an older
    build still recovers (each has edges out and a recovery rule)."""

    @property
    def states(self) -> frozenset[str]:
        out = set(self.edges)
        for targets in self.edges.values():
            out |= targets
        return frozenset(out)

    def can(self, src: str, dst: str) -> bool:
        return dst in self.edges.get(src, frozenset())

    def check(self, src: str, dst: str) -> None:
        if not self.can(src, dst):
            raise ValueError(f"{self.name}: no transition {src} -> {dst}")


def _j(
    name: str,
    provider: str,
    direction: str,
    initial: str,
    edges: dict[str, str],
    recovery: dict[str, str],
    legacy: str = "",
) -> Journey:
    return Journey(
        name,
        provider,
        direction,
        initial,
        {k: frozenset(v.split()) for k, v in edges.items()},
        recovery,
        frozenset(legacy.split()),
    )


PAYBY_CASHIN = _j(
    "payby_cashin",
    "payby",
    "in",
    "resolving",
    {
        "resolving": "accepting refused",
        "accepting": "paying cancelled owed",
        "paying": "paid owed pending",
        "pending": "paid owed",
        "pay_unknown": "pending paying paid owed",  # journals written before the outbox
        "paid": "completed",
    },
    {
        "resolving": "nothing moved: refused",
        "accepting": "settle notes in flight with the device's power-up report; "
        "no note ⇒ cancelled, else owed (the notes never reached PayBy)",
        "paying": "the pay may have been sent: pending (a PENDING receipt); the outbox "
        "re-sends the same request until a signed answer, or until it is void",
        "pending": "the outbox goes on: signed paid ⇒ paid; signed not paid once no delivery "
        "is in doubt or the request is void ⇒ owed",
        "pay_unknown": "as pending (the outbox queries getOrder; it owes only after the "
        "request's 15-minute window)",
        "paid": "the receipt, unless the customer left with a PENDING one ⇒ completed",
    },
    legacy="pay_unknown",
)

PAYBY_REFUND = _j(
    "payby_refund",
    "payby",
    "none",
    "requested",
    {
        "requested": "refunding",
        "refunding": "refund_created refund_unknown refused",
        "refund_unknown": "refunding refund_created refused",
        "refund_created": "refund_settled completed owed",
        "refund_settled": "completed owed",
    },
    {
        "requested": "place the refund (idempotent refundMerchantOrderNo)",
        "refunding": "refund query: found ⇒ its status; not found ⇒ place again, same key",
        "refund_unknown": "refund query, then decide",
        "refund_created": "refund query until SUCCESS or FAILURE",
        "refund_settled": "refund query until SUCCESS or FAILURE",
    },
)

PAYSERA_CASHIN = _j(
    "paysera_cashin",
    "paysera",
    "in",
    "accepting",
    {
        "accepting": "creating cancelled owed",
        "creating": "reserving create_unknown owed",
        "create_unknown": "creating reserving owed",
        "reserving": "confirming reserve_unknown owed",
        "reserve_unknown": "confirming owed",
        "confirming": "completed confirm_unknown owed",
        "confirm_unknown": "completed owed",
    },
    {
        "accepting": "no note ⇒ cancelled, else owed",
        "creating": "a transaction left in new moves no money: revoke it if its key is known",
        "create_unknown": "revoke the known key, create again or owe",
        "reserving": "get the transaction, then decide",
        "reserve_unknown": "get the transaction, then decide",
        "confirming": "get the transaction: confirmed ⇒ completed, else owed",
        "confirm_unknown": "get the transaction: confirmed ⇒ completed, else owed",
    },
)

PAYSERA_CASHOUT = _j(
    "paysera_cashout",
    "paysera",
    "out",
    "checking",
    {
        "checking": "creating refused",
        "creating": "reserving refused",
        "reserving": "confirming revoking refused",
        "confirming": "dispensing revoking",
        "revoking": "refused",
        "dispensing": "completed owed unknown",
    },
    {
        "checking": "nothing moved: refused",
        "creating": "revoke the transaction if created: refused",
        "reserving": "revoke (DELETE): refused",
        "confirming": "get the transaction: confirmed ⇒ owed (cash not given), else revoke",
        "revoking": "revoke again until done: refused",
        "dispensing": "device counters settle the amount paid; the rest is owed; "
        "no counters ⇒ unknown (technician)",
    },
)

RAPYD_CASHOUT = _j(
    "rapyd_cashout",
    "rapyd",
    "out",
    "checking",
    {
        "checking": "opening refused",
        "opening": "withdrawing refused",
        "withdrawing": "dispensing closing",
        "dispensing": "closing reversing unknown",
        "reversing": "closing",
        "closing": "completed owed",
    },
    {
        "checking": "nothing moved: refused",
        "opening": "the OTP has expired: refused",
        "withdrawing": "ambiguous withdraw: reverse by transaction_id if known, close session",
        "dispensing": "device counters settle what was paid; reverse the rest",
        "reversing": "reverse again (same transaction_id), close session",
        "closing": "close session again; the money outcome is already journaled",
    },
)

RAPYD_CASHIN = _j(
    "rapyd_cashin",
    "rapyd",
    "in",
    "accepting",
    {
        "accepting": "awaiting_otp cancelled owed",
        "awaiting_otp": "opening owed",
        "opening": "depositing owed",
        "depositing": "closing deposit_unknown owed",
        "deposit_unknown": "closing owed",
        "closing": "completed owed",
    },
    {
        "accepting": "no note ⇒ cancelled, else owed",
        "awaiting_otp": "the customer left: owed",
        "opening": "the OTP has expired: owed",
        "depositing": "the session's state, then decide",
        "deposit_unknown": "the session's state, then decide",
        "closing": "close session again",
    },
)

CASHII_CASHOUT = _j(
    "cashii_cashout",
    "cashii",
    "out",
    "checking",
    {
        "checking": "creating refused",
        "creating": "slip_printed refused",
        "slip_printed": "polling void",
        "polling": "dispensing void",
        "dispensing": "completed owed unknown",
    },
    {
        "checking": "nothing moved: refused",
        "creating": "payment may exist unpaid: void",
        "slip_printed": "keep polling until the timeout, then void",
        "polling": "get the payment: paid ⇒ owed (customer gone), else void",
        "dispensing": "device counters settle what was paid; the rest is owed",
    },
)

LOCAL_CASHOUT = _j(
    "local_cashout",
    "none",
    "out",
    "checking",
    {
        "checking": "dispensing refused",
        "dispensing": "completed owed unknown",
    },
    {
        "checking": "nothing moved: refused",
        "dispensing": "the recycler's levels (before: in the intent) settle what was paid; "
        "the rest is owed; levels unreadable ⇒ unknown (technician)",
    },
)

JOURNEYS: Final[dict[str, Journey]] = {
    j.name: j
    for j in (
        PAYBY_CASHIN,
        PAYBY_REFUND,
        PAYSERA_CASHIN,
        PAYSERA_CASHOUT,
        RAPYD_CASHOUT,
        RAPYD_CASHIN,
        CASHII_CASHOUT,
        LOCAL_CASHOUT,
    )
}
