"""Paysera's error codes (providers.md §2.6 and the seed's own names) as what the customer is
told: the journey's ``reason``, the line on the receipt and whether the code itself was at fault
(a refused code counts against the kiosk's bounded code attempts).

The seed names ``invalid_request`` ("Invalid reservation code"), ``insufficient_funds`` and
``code_expired``; the documented names are ``invalid_parameters``/``invalid_state`` (no code is
published for a wrong or expired reservation code) and ``not_enough_funds``. Both are mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Told:
    reason: str
    """The journal's reason (``refused:<reason>``)."""
    line: str
    """What the receipt says (no code, no secret)."""
    code_fault: bool = False
    """The customer's code was wrong or expired: counts as a refused code attempt."""


_CODE: Final = Told("invalid_code", "The code was not accepted (wrong or expired).", True)
_EXPIRED: Final = Told("code_expired", "The code has expired. Make a new one in the app.", True)
_FUNDS: Final = Told("insufficient_funds", "Not enough funds in your Paysera wallet.")
_LIMITS: Final = Told("limits_exceeded", "The amount is over your Paysera limits.")
_ACCOUNT: Final = Told("account_unavailable", "Your Paysera account cannot do this now.")
_KIOSK: Final = Told("provider_refused", "Paysera refused the kiosk; nothing was taken.")

TOLD: Final[dict[str, Told]] = {
    "invalid_request": _CODE,
    "invalid_parameters": _CODE,
    "not_found": _CODE,
    "code_expired": _EXPIRED,
    "insufficient_funds": _FUNDS,
    "not_enough_funds": _FUNDS,
    "limits_exceeded": _LIMITS,
    "restriction_limits_exceeded": _LIMITS,
    "rate_limit_exceeded": Told("rate_limited", "Too many attempts; try again later."),
    "no_rights": _ACCOUNT,
    "payment_to_same_account": _ACCOUNT,
    "restriction_violation": _ACCOUNT,
    "client_not_verified": _ACCOUNT,
    "beneficiary_account_inactive": _ACCOUNT,
    "payer_account_inactive": _ACCOUNT,
    "client_restricted": _ACCOUNT,
    "invalid_state": Told("invalid_state", "The transaction can no longer be completed."),
    "unauthorized": _KIOSK,
    "forbidden": _KIOSK,
    "not_acceptable": _KIOSK,
}


def told(code: str | None, description: str = "") -> Told:
    """What the customer is told for Paysera's ``error`` ``code``. An ``invalid_*`` whose
    description speaks of expiry is an expired code (the sandbox's and the seed's wording)."""
    if code in ("invalid_request", "invalid_parameters") and "expire" in description.lower():
        return _EXPIRED
    return TOLD.get(code or "", Told(f"refused:{code or '?'}", "Paysera refused the request."))
