"""The code a PayBy customer shows: a Cash Top Up order's tokenUrl (``https://<host>/...``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.providers.base import Envelope

MAX_TOKEN_URL: Final = 1024
"""Characters in a tokenUrl (PayBy's field is 1,024 long)."""
_LINK: Final = re.compile(r"https?://", re.ASCII | re.IGNORECASE)
_PRINTABLE: Final = re.compile(r"[\x21-\x7e]+", re.ASCII)
_AUTHORITY_END: Final = re.compile(r"[/?#]")
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)


@dataclass(frozen=True, slots=True)
class PayByTopUp:
    """A PayBy Cash Top Up order's tokenUrl (a bearer credential: hidden from ``repr``)."""

    token_url: str = field(repr=False)
    kind: str = "payby_tokenurl"


def recognise(text: str, cfg: Any) -> PayByTopUp | None:
    """A tokenUrl on one of ``cfg.token_hosts``; ``None`` if ``text`` is not a link.

    Parsed strictly, by hand, then checked against :func:`urllib.parse.urlsplit` (a link two
    parsers read differently is refused): printable ASCII without spaces, at most
    :data:`MAX_TOKEN_URL` characters, https only, no backslash anywhere (browsers read
    ``https://evil.example\\@host/`` as a link to ``evil.example``), no user info, no
    percent-encoded host, a plain host name compared exactly (lower case, a trailing dot is
    another name) with the allowed hosts, no port or port 443. A refusal names a foreign host
    once it is a plain host name of at most 64 characters (it tells a technician that a
    sandbox link met a production kiosk; the link's secret, its path and query, is never
    told)."""
    if not _LINK.match(text):
        return None
    if not _PRINTABLE.fullmatch(text):
        raise PayloadError("link holds spaces, control characters or characters outside ASCII")
    if len(text) > MAX_TOKEN_URL:
        raise PayloadError(f"link longer than {MAX_TOKEN_URL} characters: not a provider link")
    if "\\" in text:
        raise PayloadError("link holds a backslash: not a provider link")
    scheme, _, rest = text.partition("://")
    if scheme.lower() != "https":
        raise PayloadError("link is not https")
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    if "@" in authority:
        raise PayloadError("link carries user info: not a provider link")
    if "%" in authority:
        raise PayloadError("link host is percent-encoded: not a provider link")
    if "[" in authority or "]" in authority:
        raise PayloadError("link host is not a plain host name: not a provider link")
    host, colon, port = authority.partition(":")
    if colon and port != "443":
        raise PayloadError("link names a port other than 443: not a provider link")
    host = host.lower()
    if len(host) > 253 or not _HOST.fullmatch(host):
        raise PayloadError("link host is not a plain host name: not a provider link")
    if cfg is None:  # a kiosk without [payby] still knows a PayBy link (and refuses it later)
        from kiosk.providers.payby.config import PayByConfig

        cfg = PayByConfig()
    if host not in {h.lower() for h in cfg.token_hosts}:  # named: a plain host, not a secret
        named = f" {host!r}" if len(host) <= 64 else ""
        raise PayloadError(f"link host{named} is not an accepted provider host")
    try:
        parts = urlsplit(text)
        agreed = parts.scheme == "https" and parts.hostname == host
    except ValueError:
        agreed = False
    if not agreed:
        raise PayloadError("link is ambiguous: not a provider link")
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
