"""The code a PayBy customer shows: a Cash Top Up order's tokenUrl (``https://<host>/...``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.providers.base import Envelope


@dataclass(frozen=True, slots=True)
class PayByTopUp:
    """A PayBy Cash Top Up order's tokenUrl (a bearer credential: hidden from ``repr``)."""

    token_url: str = field(repr=False)
    kind: str = "payby_tokenurl"


def recognise(text: str, cfg: Any) -> PayByTopUp | None:
    """A tokenUrl on one of ``cfg.token_hosts`` (https only); ``None`` if not a link.

    A link with user info or a backslash is refused: ``https://evil.example\\@host/`` is read
    by browsers as a link to ``evil.example`` whatever a URL parser says its host is."""
    if not text.lower().startswith(("https://", "http://")):
        return None
    parts = urlsplit(text)
    if parts.scheme != "https":
        raise PayloadError("link is not https")
    if "\\" in text or "@" in parts.netloc:
        raise PayloadError("link carries user info: not a provider link")
    host = (parts.hostname or "").lower()
    if cfg is None:  # a kiosk without [payby] still knows a PayBy link (and refuses it later)
        from kiosk.providers.payby.config import PayByConfig

        cfg = PayByConfig()
    hosts = tuple(cfg.token_hosts)
    if host not in hosts:
        raise PayloadError(f"link host {host!r} is not an accepted provider host")
    return PayByTopUp(text)


@dataclass(frozen=True, slots=True)
class PayByCashOut:
    """``kiosk:cashout?v=1&provider=payby[&amount=…&currency=…]``: the kiosk creates its own
    order for the customer to pay in the PayBy app (no credential in the code)."""

    amount: Money | None = None
    kind: str = "payby_cashout"


def envelope(env: Envelope) -> PayByCashOut:
    if env.action != "cashout":
        raise PayloadError("kiosk envelope: PayBy takes cashout envelopes (cash-in: the tokenUrl)")
    if set(env.fields) - {"v", "provider", "amount", "currency"}:
        raise PayloadError("kiosk envelope: a PayBy cash-out carries no other field")
    return PayByCashOut(env.amount)
