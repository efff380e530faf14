"""Cashii's codes: one envelope, ``kiosk:cashout?v=1&provider=cashii[&amount=50.00&currency=SYP]``
(without an amount the customer picks one of ``[cashout] presets``). It carries no credential:
the kiosk creates the payment and the customer pays it in the Cashii app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.providers.base import Envelope


@dataclass(frozen=True, slots=True)
class CashiiCashOut:
    amount: Money | None = None
    kind: str = "cashii_cashout"


def recognise(text: str, cfg: Any) -> None:
    """Cashii's only code is the envelope (the router reads it)."""
    return None


def envelope(env: Envelope) -> CashiiCashOut:
    if env.action != "cashout":
        raise PayloadError("kiosk envelope: Cashii takes cashout envelopes only")
    extra = set(env.fields) - {"v", "provider", "amount", "currency"}
    if extra:
        raise PayloadError("kiosk envelope: a Cashii cash-out carries no other field")
    return CashiiCashOut(env.amount)
