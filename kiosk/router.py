"""Turns a decoded text into a typed request, or a clean refusal (:class:`PayloadError`).

Today: PayBy Cash Top Up tokenUrls. The other providers' codes (Paysera reservation and
``EVP`` codes, Rapyd OTPs, the kiosk envelope) join here with their journeys. A refusal's
message never contains the code itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kiosk.errors import PayloadError

MAX_PAYLOAD = 2048


@dataclass(frozen=True, slots=True)
class PayByTopUp:
    """A PayBy Cash Top Up order's tokenUrl (a bearer credential: memory only, never logged)."""

    token_url: str = field(repr=False)
    kind: str = "payby_tokenurl"


Request = PayByTopUp


def route(text: str, *, payby_hosts: tuple[str, ...] = ()) -> Request:
    if len(text) > MAX_PAYLOAD:
        raise PayloadError(f"code too long ({len(text)} characters)")
    if not text.isprintable() or not text.strip():
        raise PayloadError("code holds control characters or nothing")
    if text.lower().startswith(("https://", "http://")):
        parts = urlsplit(text)
        if parts.scheme != "https":
            raise PayloadError("link is not https")
        host = (parts.hostname or "").lower()
        if host not in payby_hosts:
            raise PayloadError(f"link host {host!r} is not an accepted provider host")
        return PayByTopUp(text)
    raise PayloadError("not a code this kiosk knows")
