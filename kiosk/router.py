"""Turns a decoded text into a typed request, or a clean refusal (:class:`PayloadError`).

The router knows the shape of a code, not its provider: each registered provider recognises
its own codes (``Provider.codes``, e.g. a PayBy tokenUrl, a 28-digit Paysera reservation code,
``EVP`` and 12 digits) and reads its own fields of the **kiosk envelope**, a URI a wallet app
shows as a QR to ask for cash out with the amount already chosen (README: "The kiosk
envelope")::

    kiosk:cashout?v=1&provider=<name>&amount=50.00&currency=EUR&<the provider's fields>
    kiosk:cashin?v=1&provider=<name>&<the provider's fields>

The envelope's generic part is checked here: version, action (:data:`ACTIONS`), provider and,
when there is one, a positive amount in minor units of its currency (at most
:data:`MAX_AMOUNT_DIGITS` digits; ASCII digits only). A cash-out without an amount is paid
from ``[cashout] presets``; a cash-in carries none (the notes decide).

Codes, OTPs and tokenUrls are bearer credentials: the request objects hide them from ``repr``,
a refusal's message never contains them, and the journal keeps only a keyed hash.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from kiosk.errors import MoneyError, PayloadError
from kiosk.money import Money

MAX_PAYLOAD = 2048
ENVELOPE_VERSION = "1"
MAX_AMOUNT_DIGITS = 12
ACTIONS = ("cashout", "cashin")
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,8})?")


class Request(Protocol):
    """What every routed request has: its ``kind`` (the journey it starts is registered)."""

    @property
    def kind(self) -> str: ...


def route_bytes(
    data: bytes,
    *,
    configs: Mapping[str, Any] | None = None,
    seen: Callable[[str], bool] | None = None,
) -> Request:
    """Like :func:`route` for raw bytes (a serial scanner): refuses what is not UTF-8."""
    if len(data) > MAX_PAYLOAD:
        raise PayloadError(f"code too long ({len(data)} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("code is not UTF-8 text") from None
    return route(text, configs=configs, seen=seen)


def route(
    text: str,
    *,
    configs: Mapping[str, Any] | None = None,
    seen: Callable[[str], bool] | None = None,
) -> Request:
    """The request ``text`` carries. ``configs``: each provider's config section, by name
    (``Config.providers``; a provider without one still recognises its codes, with its
    defaults). ``seen`` answers whether a code was used before (the journal's keyed hash); a
    used code is refused."""
    if len(text) > MAX_PAYLOAD:
        raise PayloadError(f"code too long ({len(text)} characters)")
    if not text.strip() or not text.isprintable():
        raise PayloadError("code holds control characters or nothing")
    if text != text.strip():
        raise PayloadError("code has leading or trailing spaces")
    request = _classify(text, configs or {})
    if seen is not None and seen(text):
        raise PayloadError(f"{request.kind}: code already used")
    return request


def _classify(text: str, configs: Mapping[str, Any]) -> Request:
    from kiosk.providers.registry import providers

    if text.lower().startswith("kiosk:"):
        return _envelope(text)
    for name, provider in providers().items():
        recognise = provider.resolve("codes")
        if recognise is None:
            continue
        request: Request | None = recognise(text, configs.get(name))
        if request is not None:
            return request
    raise PayloadError("not a code this kiosk knows")


def _envelope(text: str) -> Request:
    from kiosk.providers.base import Envelope
    from kiosk.providers.registry import providers

    parts = urlsplit(text)
    verb = parts.path.strip("/").lower()
    try:
        fields = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        raise PayloadError("kiosk envelope: malformed query") from None
    if fields.get("v") != ENVELOPE_VERSION:
        raise PayloadError(f"kiosk envelope: version must be {ENVELOPE_VERSION}")
    if verb not in ACTIONS:
        raise PayloadError(f"kiosk envelope: unknown request (one of {', '.join(ACTIONS)})")
    name = fields.get("provider", "").lower()
    takers = {n: p for n, p in providers().items() if p.envelope}
    if name not in takers:
        raise PayloadError(f"kiosk envelope: provider must be one of {tuple(takers)}")
    amount = _amount(fields) if "amount" in fields or "currency" in fields else None
    if verb == "cashin" and amount is not None:
        raise PayloadError("kiosk envelope: a cash-in carries no amount (the notes decide)")
    request: Request = takers[name].resolve("envelope")(Envelope(verb, amount, fields))
    return request


def _amount(fields: Mapping[str, str]) -> Money:
    text_amount = fields.get("amount", "")
    if not _AMOUNT.fullmatch(text_amount):
        raise PayloadError(
            f"kiosk envelope: amount must be a decimal of at most {MAX_AMOUNT_DIGITS} digits"
        )
    try:
        amount = Money.from_decimal(text_amount, fields.get("currency", ""))
    except MoneyError as exc:
        raise PayloadError(f"kiosk envelope: amount: {exc}") from None
    if amount.minor <= 0:
        raise PayloadError("kiosk envelope: amount must be positive")
    return amount


def kind_of(text: str, *, configs: Mapping[str, Any] | None = None) -> str:
    """The router's classification of ``text``, ``unknown`` for anything it refuses."""
    try:
        return route(text, configs=configs).kind
    except PayloadError:
        return "unknown"
