"""The router against hostile text (``kiosk bench fuzz router``).

The properties (each a function of a :class:`random.Random`, raising :class:`Broken` when it
does not hold):

- **total**: :func:`kiosk.router.route` returns a request or raises
  :class:`~kiosk.errors.PayloadError`, never anything else, for any text: random text of every
  plane (lone surrogates too), byte-ish text (code points below 256), raw bytes through
  :func:`~kiosk.router.route_bytes` (which agrees with ``route`` on what decodes), and
  sentences of the codes' own tokens; :func:`~kiosk.router.kind_of` agrees with it;
- **clean**: a refusal's message is a short printable ASCII sentence holding no piece of the
  text: none of the code's secrets, no 16 characters of the text, no run of 5 digits (a
  tokenUrl's foreign host excepted: named once it is a plain host name);
- **mutated**: a valid code after one to four edits (a character inserted, deleted or replaced,
  a piece doubled or cut off, two swapped) is still total and clean;
- **refused**: a valid code with one or more of its digits in another script (raw, or
  percent-encoded in an envelope), a space, invisible or control character anywhere (raw, or
  percent-encoded in an envelope's field), or an envelope field given twice, is refused;
- **same**: a valid code (generated afresh, every kind) routes to its request, twice the same;
  so do its equivalent forms: an envelope's fields in any order and any of their characters
  percent-encoded, and, outside a tokenUrl, its letters in another case (if still accepted).

Wiring::

    from kiosk.fuzz.router import fuzz_router
    status = fuzz_router(seconds=600, seed=1)   # 0: no failure; 1: failures, printed

Only the standard library (``random``): it runs on a kiosk without the development tools. A
failure is printed with its property and case seed: ``PROPERTIES[name](random.Random(case))``
runs the same case again. ``tests/fuzz/test_router_fuzz.py`` runs the same properties briefly
from hypothesis.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from kiosk.errors import PayloadError
from kiosk.fuzz import where
from kiosk.money import CURRENCIES, Money
from kiosk.providers.cashii.codes import CashiiCashOut
from kiosk.providers.payby.codes import PayByCashOut, PayByTopUp
from kiosk.providers.payby.config import PayByConfig
from kiosk.providers.paysera.codes import PayseraCashIn, PayseraCashOut
from kiosk.providers.rapyd.codes import RapydCashIn, RapydCashOut
from kiosk.router import MAX_AMOUNT_DIGITS, MAX_PAYLOAD, kind_of, route, route_bytes

TOKEN_HOST: Final = "checkout.payby.com"  # noqa: S105 - a host name
CONFIGS: Final = {"payby": PayByConfig(token_hosts=(TOKEN_HOST,))}


class Broken(Exception):
    """A property that does not hold, for ``text``."""

    def __init__(self, prop: str, text: str | bytes, why: str) -> None:
        self.prop, self.text, self.why = prop, text, why
        super().__init__(f"{prop}: {why}")


# -- characters a hostile code is made of -----------------------------------------------------

ZEROS: Final = (0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0BE6, 0x0E50, 0x0F20, 0x1040,
                0x17E0, 0x1810, 0xFF10, 0x104A0, 0x1D7CE, 0x1D7D8, 0x1E950)  # fmt: skip
"""The zero of scripts whose digits ``\\d``, ``str.isdigit()``, ``int()`` and ``Decimal()``
take (Arabic-Indic, Extended Arabic-Indic, NKo, Devanagari, Bengali, Tamil, Thai, Tibetan,
Myanmar, Khmer, Mongolian, full-width, Osmanya, mathematical bold and double-struck, Adlam)."""
SPACES: Final = (" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u180e\u2000\u2001\u2002\u2003"
                 "\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b\u200c\u200d\u2028\u2029"
                 "\u202f\u205f\u2060\u3000\ufeff\x00\x7f")  # fmt: skip
"""Whitespace, invisible and control characters (every one refused, anywhere in a code)."""
PUNCTUATION: Final = ":/?#[]@!$&'()*+,;=%\\._~-\"<>^`{|} "
TOKENS: Final = (
    "kiosk:", "KIOSK:", "cashout", "cashin", "refund", "?", "&", "=", "v", "1", "2", "provider",
    "payby", "paysera", "rapyd", "cashii", "code", "amount", "currency", "otp", "phone", "AED",
    "EUR", "BUSD", "eur", "50.00", "0.00000001", "999999999999.99", "1" + "0" * 13, "-", ".",
    "e", "%2B", "%2b", "+", "%", "%00", "%20", "%D9%A5", "%FF", "%C0%AF", "0" * 28,
    "0155567464130298871198969060", "EVP", "evp", "000000014471", "876680", "14155559992",
    "https://", "http://", "HTTPS://", TOKEN_HOST, "CHECKOUT.PAYBY.COM", "evil.example", "@",
    "\\", ":", ":443", ":8443", "/", "#", "[", "]", ".", "%2E", "/pay-page/main?ft=9f8e7d",
    " ", "\t", "\u00a0", "\u200b", "\u0665", "\uff15", "\U0001d7d3", "\ud800",
)  # fmt: skip
"""Pieces of every code, of their delimiters and of the tricks against them."""


def hostile_char(rng: random.Random) -> str:
    """A character a scanned code might be attacked with: ASCII, its punctuation, another
    script's digit, a space of any kind, a control character, or any code point."""
    r = rng.random()
    if r < 0.3:
        return chr(rng.randrange(0x20, 0x7F))
    if r < 0.5:
        return rng.choice(PUNCTUATION)
    if r < 0.65:
        return chr(rng.choice(ZEROS) + rng.randrange(10))
    if r < 0.8:
        return rng.choice(SPACES)
    if r < 0.85:
        return chr(rng.randrange(0x20))
    return chr(rng.randrange(0x110000))  # surrogates included


# -- valid codes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    """A valid code: its text, the request it routes to and its secrets. An envelope also
    has its head (``kiosk:cashout``) and its fields as written (``key``, percent-encoded)."""

    text: str
    request: object
    secrets: tuple[str, ...] = ()
    link: bool = False
    head: str = ""
    fields: tuple[tuple[str, str], ...] = ()


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _amount(rng: random.Random) -> tuple[str, str, Money]:
    """An envelope amount (text, currency, Money), computed apart from the router."""
    cur = CURRENCIES[rng.choice(sorted(CURRENCIES))]
    n = rng.randrange(1, MAX_AMOUNT_DIGITS + 1)
    whole = rng.choice("123456789") + _digits(rng, n - 1)
    frac = _digits(rng, rng.randrange(cur.exponent + 1))
    if rng.random() < 0.2 and frac.strip("0"):  # below one: 0.05
        whole = "0"
    minor = int(whole) * 10**cur.exponent + int(frac.ljust(cur.exponent, "0"))
    return f"{whole}.{frac}" if frac else whole, cur.code, Money(minor, cur)


_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")


def _envelope(
    rng: random.Random, head: str, fields: list[tuple[str, str]], request: object
) -> Code:
    secrets = tuple(_ESCAPE.sub("", v) for k, v in fields if k in ("code", "otp", "phone"))
    rng.shuffle(fields)
    if rng.random() < 0.5:  # the usual order: v and provider first
        fields.sort(key=lambda f: {"v": 0, "provider": 1}.get(f[0], 2))
    text = head + "?" + "&".join(f"{k}={v}" for k, v in fields)
    return Code(text, request, secrets, head=head, fields=tuple(fields))


KINDS: Final = 9
ENVELOPES: Final = range(3, KINDS)
"""Kinds of :func:`valid` codes: 0 a tokenUrl, 1 a reservation code, 2 an EVP code, then
envelopes (Paysera, Rapyd cash-out, Rapyd OTP, Rapyd cash-in start, Cashii, PayBy)."""


def valid(rng: random.Random, kind: int | None = None) -> Code:
    """A fresh valid code of ``kind``, or of one of the kinds the router knows."""
    kind = rng.randrange(KINDS) if kind is None else kind
    if kind == 0:
        ft = "".join(rng.choice("0123456789abcdef") for _ in range(32))
        host = TOKEN_HOST + (":443" if rng.random() < 0.1 else "")
        text = f"https://{host}/pay-page/main?BIZ_TYPE=202&ft={ft}&t={_digits(rng, 13)}"
        return Code(text, PayByTopUp(text), (ft,), link=True)
    if kind == 1:
        code = _digits(rng, 28)
        return Code(code, PayseraCashOut(code), (code,))
    if kind == 2:
        wallet = rng.randrange(1, 10**12)
        return Code(rng.choice(("EVP", "evp", "Evp")) + f"{wallet:012d}", PayseraCashIn(wallet))
    amount = _amount(rng) if rng.random() < 0.7 else None
    money = amount[2] if amount else None
    tail = [("amount", amount[0]), ("currency", amount[1])] if amount else []
    action, fields, request = "cashout", list[tuple[str, str]](), object()
    if kind == 3:
        code = _digits(rng, 28)
        fields, request, provider = [("code", code)], PayseraCashOut(code, money), "paysera"
    elif kind in (4, 5):
        otp = _digits(rng, rng.randrange(4, 11))
        phone = "+" + rng.choice("123456789") + _digits(rng, rng.randrange(6, 15))
        fields = [("otp", otp), ("phone", rng.choice(("%2B", "%2b")) + phone[1:])]
        provider = "rapyd"
        if kind == 5:
            action, tail, request = "cashin", [], RapydCashIn(otp, phone)
        else:
            request = RapydCashOut(otp, phone, money)
    elif kind == 6:
        action, fields, tail, request, provider = "cashin", [], [], RapydCashIn(), "rapyd"
    elif kind == 7:
        fields, request, provider = [], CashiiCashOut(money), "cashii"
    else:
        fields, request, provider = [], PayByCashOut(money), "payby"
    head = ("KIOSK:" if rng.random() < 0.05 else "kiosk:") + action
    all_fields = [("v", "1"), ("provider", provider), *fields, *tail]
    return _envelope(rng, head, all_fields, request)


# -- the checks -----------------------------------------------------------------------------

_DIGIT_RUN: Final = re.compile(r"[0-9]{5,}")
_FOREIGN_HOST: Final = re.compile(r"link host '[a-z0-9.-]{1,64}'")


def _clean(prop: str, text: str, message: str, secrets: Sequence[str]) -> None:
    if not (message.isascii() and message.isprintable() and 0 < len(message) <= 200):
        raise Broken(prop, text, f"refusal message not a short ASCII sentence: {message!r}")
    if _DIGIT_RUN.search(_FOREIGN_HOST.sub("", message)):
        raise Broken(prop, text, f"refusal message holds a number of 5 digits: {message!r}")
    for secret in secrets:
        if secret and secret in message:
            raise Broken(prop, text, f"refusal message holds a secret: {message!r}")
    told = _FOREIGN_HOST.sub("link host <host>", message)  # a plain host name may be told
    for i in range(len(text) - 15):
        if text[i : i + 16] in told:
            raise Broken(prop, text, f"refusal message holds the text: {message!r}")


def total(text: str, secrets: Sequence[str] = (), prop: str = "total") -> object | None:
    """The request ``text`` routes to, or None for a clean refusal; Broken otherwise."""
    try:
        request: object | None = route(text, configs=CONFIGS)
    except PayloadError as exc:
        _clean(prop, text, str(exc), secrets)
        request = None
    except Exception as exc:  # the point: anything but a PayloadError is a failure
        raise Broken(prop, text, f"{type(exc).__name__} at {where(exc)}: {exc}") from exc
    kind = getattr(request, "kind", "unknown")
    if kind_of(text, configs=CONFIGS) != kind:
        raise Broken(prop, text, f"kind_of disagrees with route ({kind})")
    return request


def total_bytes(data: bytes) -> object | None:
    try:
        request: object | None = route_bytes(data, configs=CONFIGS)
    except PayloadError:
        request = None
    except Exception as exc:  # the point: anything but a PayloadError is a failure
        raise Broken("bytes", data, f"{type(exc).__name__} at {where(exc)}: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return request
    if len(data) <= MAX_PAYLOAD and total(text, prop="bytes") != request:
        raise Broken("bytes", data, "route_bytes and route disagree")
    return request


def refused(prop: str, text: str, code: Code) -> str:
    if total(text, code.secrets, prop) is not None:
        raise Broken(prop, text, "accepted: it must be refused")
    return "refused"


def same(prop: str, text: str, code: Code) -> str:
    first = total(text, code.secrets, prop)
    if first != code.request:
        raise Broken(prop, text, f"routed to {first!r}, not {code.request!r}")
    if total(text, code.secrets, prop) != first:
        raise Broken(prop, text, "routed differently the second time")
    return "routed"


def _outcome(request: object | None) -> str:
    return "refused" if request is None else "routed"


# -- mutations ------------------------------------------------------------------------------


def edit(rng: random.Random, text: str, n: int) -> str:
    """``text`` after ``n`` edits: a hostile character inserted, deleted or replaced, a piece
    doubled, the text cut short, two neighbours swapped."""
    for _ in range(n):
        i = rng.randrange(len(text) + 1)
        op = rng.randrange(6)
        if op == 0 or not text:
            text = text[:i] + hostile_char(rng) + text[i:]
        elif op == 1:
            text = text[:i] + text[i + 1 :]
        elif op == 2:
            text = text[:i] + hostile_char(rng) + text[i + 1 :]
        elif op == 3:
            j = rng.randrange(i, len(text) + 1)
            text = text[:j] + text[i:j] + text[j:]
        elif op == 4:
            text = text[:i]
        elif i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text


def _value_digits(code: Code) -> list[tuple[int, int]]:
    """(field, position) of each digit in the envelope's values, outside ``%XX`` escapes."""
    found = []
    for n, (_, value) in enumerate(code.fields):
        i = 0
        while i < len(value):
            if value[i] == "%":
                i += 3
                continue
            if "0" <= value[i] <= "9":
                found.append((n, i))
            i += 1
    return found


def _with_fields(code: Code, fields: Sequence[tuple[str, str]]) -> str:
    return code.head + "?" + "&".join(f"{k}={v}" for k, v in fields)


def other_digits(rng: random.Random, code: Code) -> str:
    """``code`` with one or more of its ASCII digits in another script: raw, or (in an
    envelope's value) percent-encoded."""
    spots = _value_digits(code) if code.fields else []
    if spots and rng.random() < 0.5:
        fields = list(code.fields)
        for n, i in sorted(rng.sample(spots, rng.randrange(1, min(3, len(spots)) + 1)))[::-1]:
            key, value = fields[n]
            other = chr(rng.choice(ZEROS) + int(value[i]))
            fields[n] = (key, value[:i] + quote(other, safe="") + value[i + 1 :])
        return _with_fields(code, fields)
    places = [i for i, c in enumerate(code.text) if "0" <= c <= "9"]
    chosen = set(rng.sample(places, rng.randrange(1, len(places) + 1)) if rng.random() < 0.3 else
                 [rng.choice(places)])  # fmt: skip
    return "".join(chr(rng.choice(ZEROS) + int(c)) if i in chosen else c
                   for i, c in enumerate(code.text))  # fmt: skip


def space(rng: random.Random, code: Code) -> str:
    """``code`` with a space, invisible or control character: at either end, anywhere, or
    (in an envelope's value) percent-encoded."""
    c = rng.choice(SPACES)
    if code.fields and rng.random() < 0.3:
        fields = list(code.fields)
        n = rng.randrange(len(fields))
        key, value = fields[n]
        i = rng.randrange(len(value) + 1)
        while "%" in value[max(0, i - 2) : i]:  # not inside an escape
            i -= 1
        fields[n] = (key, value[:i] + quote(c, safe="") + value[i:])
        return _with_fields(code, fields)
    where = rng.random()
    i = 0 if where < 0.3 else len(code.text) if where < 0.6 else rng.randrange(len(code.text))
    return code.text[:i] + c * rng.randrange(1, 3) + code.text[i:]


def cases(rng: random.Random, text: str) -> str:
    """``text`` with some of its ASCII letters in the other case."""
    places = [i for i, c in enumerate(text) if c.isascii() and c.isalpha()]
    chosen = set(rng.sample(places, rng.randrange(1, len(places) + 1))) if places else set()
    return "".join(c.swapcase() if i in chosen else c for i, c in enumerate(text))


def reorder(rng: random.Random, code: Code) -> str:
    """An envelope's fields in another order, some of their characters percent-encoded."""
    fields = list(code.fields)
    rng.shuffle(fields)
    out = []
    for key, value in fields:
        chars, i = [], 0
        while i < len(value):
            step = 3 if value[i] == "%" else 1
            piece = value[i : i + step]
            if step == 1 and rng.random() < 0.2:
                piece = f"%{ord(piece):02{rng.choice('Xx')}}"
            chars.append(piece)
            i += step
        out.append((key, "".join(chars)))
    return _with_fields(code, out)


def twice(rng: random.Random, code: Code) -> str:
    """An envelope with one of its fields twice (the same value or another)."""
    fields = list(code.fields)
    key, value = rng.choice(fields)
    again = value if rng.random() < 0.5 else rng.choice(("1", "2", "EUR", "0", "", "x"))
    fields.insert(rng.randrange(len(fields) + 1), (key, again))
    return _with_fields(code, fields)


def _envelope_code(rng: random.Random) -> Code:
    return valid(rng, rng.choice(ENVELOPES))


# -- the properties -------------------------------------------------------------------------


def prop_text(rng: random.Random) -> str:
    """Random text of every plane, surrogates included."""
    n = rng.randrange(40) if rng.random() < 0.7 else rng.randrange(MAX_PAYLOAD + 100)
    return _outcome(total("".join(hostile_char(rng) for _ in range(n))))


def prop_byteish(rng: random.Random) -> str:
    """Text of code points below 256 (what a scanner's bytes read as Latin-1 would be)."""
    n = rng.randrange(60)
    return _outcome(total("".join(chr(rng.randrange(256)) for _ in range(n))))


def prop_bytes(rng: random.Random) -> str:
    """Raw bytes (a serial scanner), often a valid code's bytes with some flipped."""
    if rng.random() < 0.5:
        data = bytearray(valid(rng).text.encode())
        for _ in range(rng.randrange(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        data = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(80)))
    return _outcome(total_bytes(bytes(data)))


def prop_tokens(rng: random.Random) -> str:
    """Sentences of the codes' own pieces: past the first checks, into the parsers."""
    return _outcome(total("".join(rng.choice(TOKENS) for _ in range(rng.randrange(1, 16)))))


def prop_mutated(rng: random.Random) -> str:
    code = valid(rng)
    return _outcome(total(edit(rng, code.text, rng.randrange(1, 5)), code.secrets, "mutated"))


def prop_other_digits(rng: random.Random) -> str:
    code = valid(rng)
    return refused("other_digits", other_digits(rng, code), code)


def prop_space(rng: random.Random) -> str:
    code = valid(rng)
    return refused("space", space(rng, code), code)


def prop_twice(rng: random.Random) -> str:
    code = _envelope_code(rng)
    return refused("twice", twice(rng, code), code)


def prop_valid(rng: random.Random) -> str:
    code = valid(rng)
    return same("valid", code.text, code)


def prop_reordered(rng: random.Random) -> str:
    code = _envelope_code(rng)
    return same("reordered", reorder(rng, code), code)


def prop_case(rng: random.Random) -> str:
    """Letters in another case: refused, or (outside a tokenUrl) the same request."""
    code = valid(rng)
    text = cases(rng, code.text)
    got = total(text, code.secrets, "case")
    if got is not None and not code.link and got != code.request:
        raise Broken("case", text, f"routed to {got!r}, not {code.request!r}")
    return _outcome(got)


PROPERTIES: Final[dict[str, Callable[[random.Random], str]]] = {
    "text": prop_text,
    "byteish": prop_byteish,
    "bytes": prop_bytes,
    "tokens": prop_tokens,
    "mutated": prop_mutated,
    "other_digits": prop_other_digits,
    "space": prop_space,
    "twice": prop_twice,
    "valid": prop_valid,
    "reordered": prop_reordered,
    "case": prop_case,
}
"""Each property by name: ``PROPERTIES[name](random.Random(case))`` is one case."""


def fuzz_router(seconds: float, seed: int, *, out: Callable[[str], None] = print) -> int:
    """Cases of every property, in turn, for ``seconds`` from ``seed``; 0 when each held, 1
    with the failures printed (each with its property and case seed; at most three a kind)."""
    rng = random.Random(seed)
    names = list(PROPERTIES)
    runs: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for name in names:
            case = rng.getrandbits(64)
            runs[name] += 1
            try:
                outcomes[PROPERTIES[name](random.Random(case))] += 1
            except Broken as exc:
                kind = f"{name}: {exc.why.split(':')[0]}"
                kinds[kind] += 1
                if kinds[kind] <= 3:
                    out(f"FAIL {name} case {case}: {exc.why}\n  text: {exc.text[:500]!r}")
    elapsed = time.monotonic() - started
    out(
        f"fuzz router: {sum(runs.values())} cases in {elapsed:.0f} s (seed {seed}):"
        f" {outcomes['routed']} routed, {outcomes['refused']} refused with a PayloadError,"
        f" {sum(kinds.values())} failures"
    )
    out("  " + ", ".join(f"{name} {runs[name]}" for name in names))
    for kind, n in kinds.most_common():
        out(f"  {n} x {kind}")
    return 1 if kinds else 0
