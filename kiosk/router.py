"""Turns a decoded text into a typed request, or a clean refusal (:class:`PayloadError`).

What a customer can show the kiosk:

==========================  ===============================================  ===================
kind                        form                                             journey
==========================  ===============================================  ===================
``payby_tokenurl``          ``https://<allowed host>/...`` (PayBy order)     PayBy Cash Top Up
``paysera_reservation``     28 digits (Paysera app's reservation code)       Paysera cash-out
``paysera_cashin``          ``EVP`` + 12 digits (zero-padded wallet id)      Paysera cash-in
``rapyd_otp``               ``kiosk:otp?v=1&provider=rapyd&code=…&phone=…``  Rapyd session
``kiosk_cashout``           ``kiosk:cashout?v=1&provider=…&amount=…&…``      provider cash-out
==========================  ===============================================  ===================

The **kiosk envelope** is a URI a wallet app shows as a QR to ask for cash out with the amount
already chosen (README: "The kiosk envelope")::

    kiosk:cashout?v=1&provider=paysera&code=0155567464130298871198969060&amount=50.00&currency=EUR
    kiosk:cashout?v=1&provider=rapyd&code=876680&phone=%2B971501234567&amount=100.00&currency=USD
    kiosk:cashout?v=1&provider=cashii&amount=250.00&currency=SYP
    kiosk:otp?v=1&provider=rapyd&code=876680&phone=%2B971501234567

Codes, OTPs and tokenUrls are bearer credentials: the request objects hide them from ``repr``,
a refusal's message never contains them, and the journal keeps only a keyed hash.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from kiosk.errors import MoneyError, PayloadError
from kiosk.money import Money

MAX_PAYLOAD = 2048
ENVELOPE_VERSION = "1"
CASHOUT_PROVIDERS = ("paysera", "rapyd", "cashii")

_RESERVATION = re.compile(r"\d{28}")
_EVP = re.compile(r"EVP(\d{12})")
_OTP = re.compile(r"\d{4,8}")
_PHONE = re.compile(r"\+[1-9]\d{7,14}")  # E.164


@dataclass(frozen=True, slots=True)
class PayByTopUp:
    """A PayBy Cash Top Up order's tokenUrl."""

    token_url: str = field(repr=False)
    kind: str = "payby_tokenurl"


@dataclass(frozen=True, slots=True)
class PayseraReservation:
    """A Paysera reservation code for cash-out (the amount comes from the panel's presets)."""

    code: str = field(repr=False)
    kind: str = "paysera_reservation"


@dataclass(frozen=True, slots=True)
class PayseraCashIn:
    """A Paysera cash-in code: the wallet the notes go to."""

    wallet_id: int
    kind: str = "paysera_cashin"


@dataclass(frozen=True, slots=True)
class RapydOtp:
    """A Rapyd one-time code (valid 30 s) and the customer's phone number."""

    otp: str = field(repr=False)
    phone: str = field(repr=False)
    kind: str = "rapyd_otp"


@dataclass(frozen=True, slots=True)
class CashOutEnvelope:
    """A cash-out request from a wallet app: provider, its code, the amount."""

    provider: str
    amount: Money
    code: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    kind: str = "kiosk_cashout"


Request = PayByTopUp | PayseraReservation | PayseraCashIn | RapydOtp | CashOutEnvelope


def route_bytes(
    data: bytes,
    *,
    payby_hosts: tuple[str, ...] = (),
    seen: Callable[[str], bool] | None = None,
) -> Request:
    """Like :func:`route` for raw bytes (a serial scanner): refuses what is not UTF-8."""
    if len(data) > MAX_PAYLOAD:
        raise PayloadError(f"code too long ({len(data)} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("code is not UTF-8 text") from None
    return route(text, payby_hosts=payby_hosts, seen=seen)


def route(
    text: str,
    *,
    payby_hosts: tuple[str, ...] = (),
    seen: Callable[[str], bool] | None = None,
) -> Request:
    """The request ``text`` carries. ``seen`` answers whether a code was used before (the
    journal's keyed hash); a used code is refused."""
    if len(text) > MAX_PAYLOAD:
        raise PayloadError(f"code too long ({len(text)} characters)")
    if not text.strip() or not text.isprintable():
        raise PayloadError("code holds control characters or nothing")
    request = _classify(text.strip(), payby_hosts)
    if seen is not None and seen(text.strip()):
        raise PayloadError(f"{request.kind}: code already used")
    return request


def _classify(text: str, payby_hosts: tuple[str, ...]) -> Request:
    lower = text.lower()
    if lower.startswith(("https://", "http://")):
        return _payby(text, payby_hosts)
    if lower.startswith("kiosk:"):
        return _envelope(text)
    if text.isdigit():
        if _RESERVATION.fullmatch(text):
            return PayseraReservation(text)
        raise PayloadError(f"{len(text)} digits: a Paysera reservation code has 28")
    if text.upper().startswith("EVP"):
        m = _EVP.fullmatch(text.upper())
        if m is None:
            raise PayloadError("a Paysera cash-in code is EVP and 12 digits")
        return PayseraCashIn(int(m.group(1)))
    raise PayloadError("not a code this kiosk knows")


def _payby(text: str, hosts: tuple[str, ...]) -> PayByTopUp:
    parts = urlsplit(text)
    if parts.scheme != "https":
        raise PayloadError("link is not https")
    host = (parts.hostname or "").lower()
    if host not in hosts:
        raise PayloadError(f"link host {host!r} is not an accepted provider host")
    return PayByTopUp(text)


def _envelope(text: str) -> Request:
    parts = urlsplit(text)
    verb = parts.path.strip("/").lower()
    try:
        fields = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        raise PayloadError("kiosk envelope: malformed query") from None
    if fields.get("v") != ENVELOPE_VERSION:
        raise PayloadError(f"kiosk envelope: version must be {ENVELOPE_VERSION}")
    provider = fields.get("provider", "").lower()
    code, phone = fields.get("code"), fields.get("phone")
    if verb == "otp":
        if provider != "rapyd":
            raise PayloadError("kiosk envelope: otp is for provider rapyd")
        return RapydOtp(_otp(code), _phone(phone))
    if verb != "cashout":
        raise PayloadError("kiosk envelope: unknown request (cashout or otp)")
    if provider not in CASHOUT_PROVIDERS:
        raise PayloadError(f"kiosk envelope: provider must be one of {CASHOUT_PROVIDERS}")
    try:
        amount = Money.from_decimal(fields.get("amount", ""), fields.get("currency", ""))
    except MoneyError as exc:
        raise PayloadError(f"kiosk envelope: amount: {exc}") from None
    if amount.minor <= 0:
        raise PayloadError("kiosk envelope: amount must be positive")
    if provider == "paysera":
        if code is None or not _RESERVATION.fullmatch(code):
            raise PayloadError("kiosk envelope: a Paysera code has 28 digits")
        return CashOutEnvelope(provider, amount, code=code)
    if provider == "rapyd":
        return CashOutEnvelope(provider, amount, code=_otp(code), phone=_phone(phone))
    if code:
        raise PayloadError("kiosk envelope: cashii takes no code (the kiosk creates it)")
    return CashOutEnvelope(provider, amount)


def _otp(code: str | None) -> str:
    if code is None or not _OTP.fullmatch(code):
        raise PayloadError("kiosk envelope: a one-time code is 4 to 8 digits")
    return code


def _phone(phone: str | None) -> str:
    if phone is None or not _PHONE.fullmatch(phone):
        raise PayloadError("kiosk envelope: phone must be E.164 (+ and 8 to 15 digits)")
    return phone


def kind_of(text: str, *, payby_hosts: tuple[str, ...] = ()) -> str:
    """The router's classification of ``text``, ``unknown`` for anything it refuses."""
    try:
        return route(text, payby_hosts=payby_hosts).kind
    except PayloadError:
        return "unknown"
