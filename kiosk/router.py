"""Turns a decoded text into a typed request, or a clean refusal (:class:`PayloadError`).

The router knows the shape of a code, not its provider: each registered provider recognises
its own codes (``Provider.codes``, e.g. a PayBy tokenUrl, a 28-digit Paysera reservation code,
``EVP`` and 12 digits) and reads its own fields of the **kiosk envelope**, a URI a wallet app
shows as a QR to ask for cash out with the amount already chosen (README: "The kiosk
envelope")::

    kiosk:cashout?v=1&provider=<name>&amount=50.00&currency=EUR&<the provider's fields>
    kiosk:cashin?v=1&provider=<name>&<the provider's fields>

A scanned text is hostile until proved otherwise. Every code this kiosk knows is printable
ASCII, so the rules are ASCII rules (``[0-9]``, never ``\\d``, ``str.isdigit()`` or ``int()``
on unchecked text: those take the digits of every script):

- the whole text: at most :data:`MAX_PAYLOAD` characters, ASCII only (another script's digits,
  invisible or non-breaking spaces are refused here), no control character, no leading or
  trailing space;
- the envelope: ``kiosk:<action>?<fields>``, no fragment; each field ``key=value`` with a
  lower-case ASCII key, a value of unreserved characters and ``%XX`` escapes (a ``+`` must be
  ``%2B``: forms read it as a space) at most :data:`MAX_FIELD` characters long that decodes to
  printable ASCII without spaces; at most :data:`MAX_FIELDS` fields, none twice; ``v`` exactly
  :data:`ENVELOPE_VERSION`; an action of :data:`ACTIONS`; a provider that takes envelopes;
- an amount: with its currency or not at all (a cash-in carries none: the notes decide); a
  plain ASCII decimal with at most :data:`MAX_AMOUNT_DIGITS` digits before the point, no
  leading zero, no sign, no exponent, at most the currency's decimals after the point, and
  positive (the provider's own maximum applies later, in its journey). A cash-out without an
  amount is paid from ``[cashout] presets``;
- each provider's reader refuses the fields it does not know, and checks its own with ASCII
  patterns (PayBy's tokenUrl: ``kiosk.providers.payby.codes``).

Codes, OTPs and tokenUrls are bearer credentials: the request objects hide them from ``repr``,
a refusal's message is a fixed sentence (a length or a limit in it at most, or a foreign
link's plain host name: never a piece of a secret), and the journal keeps only a keyed hash.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol
from urllib.parse import unquote

from kiosk.errors import MoneyError, PayloadError
from kiosk.money import CURRENCIES, Money, currency

MAX_PAYLOAD: Final = 2048
"""Characters in a whole code (a QR holds at most 4,296; no code this kiosk knows nears it)."""
MAX_FIELD: Final = 256
"""Characters in one envelope field's value, as written (percent-encoded)."""
MAX_FIELDS: Final = 16
ENVELOPE_VERSION: Final = "1"
MAX_AMOUNT_DIGITS: Final = 12
ACTIONS: Final = ("cashout", "cashin")

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_ENVELOPE: Final = re.compile(r"kiosk:(?P<action>[a-z]{1,16})\?(?P<query>[^#]*)", re.I | re.A)
_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_RAW_VALUE: Final = re.compile(r"(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})*", re.ASCII)
_VALUE: Final = re.compile(r"[\x21-\x7e]*", re.ASCII)
_AMOUNT: Final = re.compile(
    rf"(?P<whole>0|[1-9][0-9]{{0,{MAX_AMOUNT_DIGITS - 1}}})(?:\.(?P<frac>[0-9]+))?", re.ASCII
)


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
        raise PayloadError(f"code too long ({len(data)} bytes, at most {MAX_PAYLOAD})")
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
    used code is refused. Raises :class:`PayloadError` and nothing else."""
    check_text(text)
    request = _classify(text, configs or {})
    if seen is not None and seen(text):
        raise PayloadError(f"{request.kind}: code already used")
    return request


def check_text(text: str) -> None:
    """The rules for a whole code, whichever it is (PayloadError if one is broken)."""
    if len(text) > MAX_PAYLOAD:
        raise PayloadError(f"code too long ({len(text)} characters, at most {MAX_PAYLOAD})")
    if not text:
        raise PayloadError("code holds nothing")
    if not text.isascii():
        raise PayloadError(
            "code holds characters outside ASCII (another script's digits, invisible spaces):"
            " not a code this kiosk knows"
        )
    if _CONTROL.search(text):
        raise PayloadError("code holds control characters")
    if text[0] == " " or text[-1] == " ":
        raise PayloadError("code has leading or trailing spaces")


def _classify(text: str, configs: Mapping[str, Any]) -> Request:
    from kiosk.providers.registry import providers

    if text[:6].lower() == "kiosk:":
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

    m = _ENVELOPE.fullmatch(text)
    if m is None:
        raise PayloadError("kiosk envelope: malformed (kiosk:<request>?v=1&<fields>)")
    fields = _fields(m["query"])
    if fields.get("v") != ENVELOPE_VERSION:
        raise PayloadError(f"kiosk envelope: version must be {ENVELOPE_VERSION}")
    action = m["action"].lower()
    if action not in ACTIONS:
        raise PayloadError(f"kiosk envelope: unknown request (one of {', '.join(ACTIONS)})")
    name = fields.get("provider", "").lower()
    takers = {n: p for n, p in providers().items() if p.envelope}
    if name not in takers:
        raise PayloadError(f"kiosk envelope: provider must be one of {tuple(takers)}")
    if action == "cashin" and ("amount" in fields or "currency" in fields):
        raise PayloadError("kiosk envelope: a cash-in carries no amount (the notes decide)")
    amount = _amount(fields)
    request: Request = takers[name].resolve("envelope")(Envelope(action, amount, fields))
    return request


def _fields(query: str) -> dict[str, str]:
    """The envelope's query as a mapping of decoded values, by the rules above."""
    parts = query.split("&")
    if len(parts) > MAX_FIELDS:
        raise PayloadError(f"kiosk envelope: more than {MAX_FIELDS} fields")
    fields: dict[str, str] = {}
    for part in parts:
        key, eq, raw = part.partition("=")
        if "+" in raw:
            raise PayloadError("kiosk envelope: a '+' in a field must be written %2B")
        if not eq or not _KEY.fullmatch(key) or not _RAW_VALUE.fullmatch(raw):
            raise PayloadError(
                "kiosk envelope: malformed query (key=value pairs joined by &, values"
                " percent-encoded)"
            )
        if len(raw) > MAX_FIELD:
            raise PayloadError(f"kiosk envelope: a field is longer than {MAX_FIELD} characters")
        if key in fields:
            raise PayloadError("kiosk envelope: a field appears twice")
        try:
            value = unquote(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise PayloadError("kiosk envelope: a field is not UTF-8") from None
        if not _VALUE.fullmatch(value):
            raise PayloadError(
                "kiosk envelope: a field holds spaces, control characters or characters"
                " outside ASCII"
            )
        fields[key] = value
    return fields


def _amount(fields: Mapping[str, str]) -> Money | None:
    """The envelope's amount (``None`` if it has none): by the rules above."""
    if "amount" not in fields and "currency" not in fields:
        return None
    if "amount" not in fields or "currency" not in fields:
        raise PayloadError("kiosk envelope: an amount and its currency come together")
    try:
        cur = currency(fields["currency"])
    except MoneyError:
        raise PayloadError(
            f"kiosk envelope: the amount's currency must be one of {', '.join(sorted(CURRENCIES))}"
        ) from None
    m = _AMOUNT.fullmatch(fields["amount"])
    if m is None:
        raise PayloadError(
            f"kiosk envelope: amount must be a decimal of at most {MAX_AMOUNT_DIGITS} digits"
            " before the point (ASCII digits; no sign, exponent or leading zero)"
        )
    if len(m["frac"] or "") > cur.exponent:
        raise PayloadError(
            f"kiosk envelope: a {cur.code} amount has at most {cur.exponent} decimals"
        )
    try:
        amount = Money.from_decimal(m[0], cur.code)
    except MoneyError:  # not reached: the pattern above is stricter
        raise PayloadError("kiosk envelope: amount cannot be represented") from None
    if amount.minor <= 0:
        raise PayloadError("kiosk envelope: amount must be positive")
    return amount


def kind_of(text: str, *, configs: Mapping[str, Any] | None = None) -> str:
    """The router's classification of ``text``, ``unknown`` for anything it refuses."""
    try:
        return route(text, configs=configs).kind
    except PayloadError:
        return "unknown"
