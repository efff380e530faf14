"""The codes a Paysera customer shows the kiosk, as typed requests (the router asks here).

=====================  ===========================================  ======================
request kind           form                                         journey
=====================  ===========================================  ======================
``paysera_cashout``    28 digits (the app's reservation code)       cash-out, amount from
                                                                    ``[cashout] presets``
``paysera_cashout``    ``kiosk:cashout?v=1&provider=paysera&code=   cash-out of that amount
                       <28 digits>&amount=50.00&currency=EUR``
``paysera_cashin``     ``EVP`` + 12 digits (zero-padded wallet id)  cash-in to that wallet
=====================  ===========================================  ======================

Only ASCII digits count (``[0-9]`` with ``re.ASCII``, never ``\\d``, ``str.isdigit()`` or
``int()`` on unchecked text: they take the digits of every script): a code in any other script
is refused. An envelope carries no field but the ones above. A reservation code is a bearer
credential: hidden from ``repr``, never in a refusal's message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.providers.base import Envelope

_RESERVATION: Final = re.compile(r"[0-9]{28}", re.ASCII)
_EVP: Final = re.compile(r"(?i:EVP)([0-9]{12})", re.ASCII)
_DIGITS: Final = re.compile(r"[0-9]+", re.ASCII)
_ENVELOPE_FIELDS: Final = frozenset({"v", "provider", "amount", "currency", "code"})


@dataclass(frozen=True, slots=True)
class PayseraCashOut:
    """A reservation code for cash-out; ``amount`` None: the customer picks a preset."""

    code: str = field(repr=False)
    amount: Money | None = None
    kind: str = "paysera_cashout"


@dataclass(frozen=True, slots=True)
class PayseraCashIn:
    """A Paysera cash-in code: the wallet the notes go to."""

    wallet_id: int
    kind: str = "paysera_cashin"


def recognise(text: str, cfg: Any) -> PayseraCashOut | PayseraCashIn | None:
    """A Paysera code, ``None`` if ``text`` is not one; PayloadError if it almost is."""
    if _DIGITS.fullmatch(text):
        if _RESERVATION.fullmatch(text):
            return PayseraCashOut(text)
        raise PayloadError(f"{len(text)} digits: a Paysera reservation code has 28")
    if text[:3].isascii() and text[:3].upper() == "EVP":
        m = _EVP.fullmatch(text)
        wallet = int(m.group(1)) if m else 0  # int() of 12 ASCII digits, checked by _EVP
        if wallet <= 0:
            raise PayloadError("a Paysera cash-in code is EVP and 12 digits")
        return PayseraCashIn(wallet)
    return None


def envelope(env: Envelope) -> PayseraCashOut:
    """``kiosk:cashout?...&provider=paysera&code=<28 digits>`` (without an amount: the
    customer picks a preset). Paysera's cash-in is the ``EVP`` code, not an envelope."""
    if env.action != "cashout":
        raise PayloadError("kiosk envelope: Paysera takes cashout envelopes (cash-in: EVP code)")
    if set(env.fields) - _ENVELOPE_FIELDS:
        raise PayloadError("kiosk envelope: a Paysera cash-out carries no field but the code")
    code = env.fields.get("code", "")
    if not _RESERVATION.fullmatch(code):
        raise PayloadError("kiosk envelope: a Paysera code has 28 digits")
    return PayseraCashOut(code, env.amount)
