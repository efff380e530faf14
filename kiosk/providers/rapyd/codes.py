"""The codes a Rapyd customer shows the kiosk: kiosk envelopes only (Rapyd has no code of its
own; the customer's app shows the OTP and the phone number as an envelope)::

    kiosk:cashout?v=1&provider=rapyd&otp=876680&phone=%2B14155559992[&amount=10.00&currency=GBP]
    kiosk:cashin?v=1&provider=rapyd                                 starts a cash-in
    kiosk:cashin?v=1&provider=rapyd&otp=876680&phone=%2B14155559992 the OTP, once the notes are in

An OTP lives 30 seconds: a cash-in's OTP is asked for only after the notes (a start code that
already carries one is refused by the journey). The OTP and the phone number are ASCII digits
(``valid_otp``, ``valid_phone``: ``[0-9]`` patterns); an envelope with any other field is
refused. Both are hidden from ``repr`` and never in a refusal's message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.providers.base import Envelope
from kiosk.providers.rapyd.client import valid_otp, valid_phone

_FIELDS: Final = frozenset({"v", "provider", "amount", "currency", "otp", "phone"})


@dataclass(frozen=True, slots=True)
class RapydCashOut:
    otp: str = field(repr=False)
    phone: str = field(repr=False)
    amount: Money | None = None
    kind: str = "rapyd_cashout"


@dataclass(frozen=True, slots=True)
class RapydCashIn:
    """A cash-in envelope: without credentials it starts the journey; with them it is the
    OTP the journey asks for once the notes are in."""

    otp: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    kind: str = "rapyd_cashin"


def recognise(text: str, cfg: Any) -> None:
    """Rapyd's codes are all envelopes (the router reads those)."""
    return None


def _credentials(env: Envelope) -> tuple[str, str] | None:
    otp, phone = env.fields.get("otp"), env.fields.get("phone")
    if otp is None and phone is None:
        return None
    if otp is None or not valid_otp(otp):
        raise PayloadError("kiosk envelope: a Rapyd OTP is 4 to 10 digits")
    if phone is None or not valid_phone(phone):
        raise PayloadError("kiosk envelope: a Rapyd phone number is + and 7 to 15 digits")
    return otp, phone


def envelope(env: Envelope) -> RapydCashOut | RapydCashIn:
    if set(env.fields) - _FIELDS:
        raise PayloadError("kiosk envelope: a Rapyd code carries no field but the OTP and phone")
    creds = _credentials(env)
    if env.action == "cashout":
        if creds is None:
            raise PayloadError("kiosk envelope: a Rapyd cash-out needs the OTP and the phone")
        return RapydCashOut(*creds, amount=env.amount)
    return RapydCashIn(*creds) if creds else RapydCashIn()
