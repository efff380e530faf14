"""Rapyd's error codes as what the customer is told. Rapyd publishes no POS error list
(providers.md §3.5); these are the ``ERROR_*`` names the sandbox uses ([INF]) and Rapyd's
general ones. A code this table does not know is still a refusal, said plainly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Told:
    reason: str
    line: str
    otp_fault: bool = False
    """The customer's OTP was wrong or expired: a new one may be shown."""


_OTP: Final = Told("invalid_otp", "The code was not accepted. Make a new one in the app.", True)
_EXPIRED: Final = Told("otp_expired", "The code has expired (30 seconds). Make a new one.", True)
_SESSION: Final = Told("session_error", "Rapyd ended the session; nothing was taken.")

TOLD: Final[dict[str, Told]] = {
    "ERROR_INVALID_OTP": _OTP,
    "ERROR_OTP_EXPIRED": _EXPIRED,
    "ERROR_INVALID_SESSION": _SESSION,
    "ERROR_SESSION_CLOSED": _SESSION,
    "ERROR_INSUFFICIENT_FUNDS": Told("insufficient_funds", "Not enough funds in your wallet."),
    "ERROR_ACCOUNT_NOT_FOUND": Told("no_account", "Your wallet has no account in this currency."),
    "ERROR_UNAUTHORIZED": Told("provider_refused", "Rapyd refused the kiosk; nothing was taken."),
}


def told(code: str | None) -> Told:
    return TOLD.get(code or "", Told(f"refused:{code or '?'}", "Rapyd refused the request."))
