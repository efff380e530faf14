"""Secrets and customer codes out of text and JSON values: :class:`Redactor`, :func:`redact`,
:func:`redact_json`; :func:`literals_of` gives the forms a secret value may take; and
:class:`RedactingFilter`, the same redaction as a :class:`logging.Filter` for the kiosk's log.

Each secret or code becomes ``<redacted:kind>``; amounts, references, states, timestamps and
reasons stay. Used by ``kiosk support-bundle`` (:mod:`kiosk.support`) on every member of the
bundle. The filter goes on a handler (a filter on a logger does not see the records of its
children), e.g. after :func:`logging.basicConfig`::

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

MIN_LITERAL: Final = 8  # shorter values of the secrets file are not secrets worth a pattern


def _mark(kind: str) -> str:
    return f"<redacted:{kind}>"


_SEP = r"(?:\s|\\[nr])+"  # between PEM lines: a newline, or one escaped in JSON / a repr
_B64 = r"[A-Za-z0-9+/=]"
_PEM_BLOCK = r"-----BEGIN ([A-Z0-9 ]{1,40})-----[\s\S]{0,10000}?-----END \1-----"
_PEM_OPEN = (  # a block cut short (a truncated log line): its full lines, its last
    rf"-----BEGIN [A-Z0-9 ]{{1,40}}-----(?:{_SEP}{_B64}{{64}})*"
    rf"(?:{_SEP}(?=[A-Za-z0-9+/]*[0-9+/=]){_B64}{{1,64}}(?!{_B64}))?"
)
_PEM_MARKER = r"-----(?:BEGIN|END) [A-Z0-9 ]{1,40}-----"
QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
_AUTH = (
    r"(?i)(?<![A-Za-z0-9_-])(?P<head>[\"']?(?:proxy-)?authorization|[\"']?(?:set-)?cookie)"
    rf"(?P<sep>[\"']?\s*[:=]\s*)(?P<val>{QUOTED}|[^\r\n]*)"
)
_BEARER = r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
# name: value / name = value / "name": "value" (headers, dict reprs, JSON in a log line)
_FIELDS = (
    r"sign|signature|x-signature|[a-z_-]*(?:api|mac|secret|private|access|journal)[_-]?key"
    r"|secret|client[_-]?secret|password|passwd|[a-z_]*token|otp|phone(?:[_-]?number)?"
    r"|token[_-]?url|tokenurl|pay[_-]?url|pay[_-]?code|qr"
)
_NAMED = (
    rf"(?i)(?<![A-Za-z0-9_-])(?P<head>[\"']?(?P<name>{_FIELDS}))"
    rf"(?P<sep>[\"']?\s*[:=]\s*)(?P<val>{QUOTED}|[^\s&,;\"'<>)}}\]]+)"
)
# query parameters that are codes (kiosk envelopes, pay pages, tokenUrls): name=value only
_PARAM = r"(?i)(?<![A-Za-z0-9_-])(?P<name>code|otp|phone|ft|key|token)=(?P<val>[^\s&#\"'<>]+)"
_URL = r"(?i)\b(?P<scheme>https?://)(?P<auth>[^/\s?#\"'<>]+)(?P<rest>[/?#][^\s\"'<>]*)?"
_PHONE = r"(?i)(?:(?<![A-Za-z0-9+])\+|%2B)[1-9][0-9]{6,14}(?![0-9])"
_RESERVATION = r"(?<![0-9])[0-9]{4}(?: ?[0-9]{4}){6}(?![0-9])"  # Paysera, 28 digits
_EVP = r"(?i)(?<![A-Za-z0-9])EVP[0-9]{12}(?![0-9])"  # Paysera cash-in
_CARD16 = r"(?<![0-9])[0-9]{4}(?:[ -]?[0-9]{4}){3}(?![0-9])"  # Cashii pay codes
# Rapyd's Open Session puts the customer's OTP in the path: POST /v1/pos/login/{pos_id}/{otp}
_OTP_PATH = r"(?i)(?P<head>/login/[A-Za-z0-9._~%-]{1,64}/)[0-9]{4,10}(?![A-Za-z0-9])"
_LONG = r"[A-Za-z0-9+/_=-]{32,}"
_HEX = r"[0-9A-Fa-f]+"
# what each rule below the literals needs to match at all (a cheap first look)
_TRIGGER = (
    r"[0-9]{4}[ -]?[0-9]{3}|[A-Za-z0-9+/_=-]{32}|://|=|\+|%2[Bb]"
    r"|(?i:evp|bearer|basic|authorization|cookie|sign|key|secret|passw|token|otp|phone|url|code|qr)"
)
_WORD = r"[0-9]{1,14}|[A-Za-z][a-z]*(?:[A-Z]+[a-z]*){0,3}[0-9]{0,4}|"


def _wordy(token: str) -> bool:
    """A path or identifier made of words (``/acquire2/cashTopUp/resolveToken``,
    ``KSK-0001-000042-pay``, ``unconfirmed_note``), not a random string: every piece between
    ``/ _ - . ~`` is a word or a short number, none longer than 20 characters."""
    pieces = re.split(r"[/_.~-]+", token)
    return all(len(p) <= 20 and re.fullmatch(_WORD, p) for p in pieces)


def _long(m: re.Match[str]) -> str:
    token = m.group(0)
    if re.fullmatch(_HEX, token):
        return _mark("hex")
    return token if _wordy(token) else _mark("base64")


def _url(m: re.Match[str]) -> str:
    scheme, auth, rest = m.group("scheme"), m.group("auth"), m.group("rest") or ""
    if "@" in auth:  # user info is a credential
        auth = _mark("userinfo") + "@" + auth.rsplit("@", 1)[1]
    path_only = not any(c in rest for c in "?#&=;")
    if not rest or rest == "/" or (path_only and all(_wordy(s) for s in rest.split("/"))):
        return scheme + auth + rest
    return f"{scheme}{auth}/{_mark('url')}"


def _named(m: re.Match[str]) -> str:
    val = m.group("val")
    if "<redacted" in val:
        return m.group(0)
    quoted = val[:1] in "\"'" and len(val) >= 2
    if not quoted and not re.search(r"[0-9]", val) and len(val) < 12:
        return m.group(0)  # "bad signature: the reply…" is prose, not a header
    if quoted and len(val) == 2:
        return m.group(0)  # empty
    kind = _kind_of(m.group("name"))
    mark = _mark(kind)
    return m.group("head") + m.group("sep") + (val[0] + mark + val[0] if quoted else mark)


def _auth(m: re.Match[str]) -> str:
    val = m.group("val")
    if not val.strip():
        return m.group(0)
    quoted = val[:1] in "\"'" and len(val) >= 2
    mark = _mark("auth")
    return m.group("head") + m.group("sep") + (val[0] + mark + val[0] if quoted else mark)


def _param(m: re.Match[str]) -> str:
    if m.group("val").startswith("<redacted"):
        return m.group(0)
    return f"{m.group('name')}={_mark(_kind_of(m.group('name')))}"


def _kind_of(name: str) -> str:
    n = name.lower().replace("-", "_")
    if "sign" in n:
        return "sign"
    if n.startswith("phone"):
        return "phone"
    if n in ("otp", "code", "pay_code", "paycode", "qr", "ft"):
        return n.replace("paycode", "pay_code")
    if "url" in n:
        return "url"
    if "token" in n:
        return "token"
    return "secret"


@functools.lru_cache(maxsize=8)
def _literal_pattern(literals: tuple[str, ...]) -> re.Pattern[str] | None:
    if not literals:
        return None
    ordered = sorted(set(literals), key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in ordered))


@dataclass(frozen=True, slots=True)
class Redactor:
    """Removes secrets and customer codes from text and JSON values, each replaced by
    ``<redacted:kind>``; amounts, references, states, timestamps and reasons stay.

    ``literals``: the values of the secrets file (and their base64 and hex forms), removed
    wherever they appear. Whatever the literals, removed by their form: PEM blocks; hex
    strings of 32 characters or more and base64 strings of 32 or more that are not a path of
    words; ``Authorization``/``Cookie`` headers and ``Bearer``/``Basic`` credentials;
    ``sign``/``signature`` headers and values named like a key, secret, token, password, OTP,
    phone, pay URL/code; the ``code=``, ``otp=``, ``phone=``, ``ft=``, ``key=``, ``token=``
    parameters (kiosk envelopes, pay pages); the path and query of URLs (the host stays),
    unless the path is plain words without a query; phone numbers (``+`` and 7-15 digits,
    ``%2B`` too); the OTP in a Rapyd Open Session path (``/login/<pos id>/<otp>``);
    Paysera's 28-digit reservation codes and ``EVP`` codes; 16-digit codes
    (Cashii's pay codes, also in groups of 4)."""

    literals: tuple[str, ...] = ()

    def text(self, text: str) -> str:
        if "-----" in text:
            text = re.sub(_PEM_BLOCK, _mark("pem"), text)
            text = re.sub(_PEM_OPEN, _mark("pem"), text)
            text = re.sub(_PEM_MARKER, _mark("pem"), text)
        pattern = _literal_pattern(self.literals)
        if pattern is not None:
            text = pattern.sub(_mark("secret"), text)
        if "/login/" in text.lower():  # before the trigger: the path holds nothing else it sees
            text = re.sub(_OTP_PATH, lambda m: m.group("head") + _mark("otp"), text)
        if not re.search(_TRIGGER, text):
            return text  # most journal values: states, kinds, timestamps, references
        text = re.sub(_AUTH, _auth, text)
        text = re.sub(_BEARER, lambda m: f"{m.group(1)} {_mark('auth')}", text)
        text = re.sub(_NAMED, _named, text)
        text = re.sub(_URL, _url, text)
        text = re.sub(_PARAM, _param, text)
        text = re.sub(_LONG, _long, text)  # before the digit rules: none may split a long token
        text = re.sub(_PHONE, _mark("phone"), text)
        text = re.sub(_RESERVATION, _mark("reservation_code"), text)
        text = re.sub(_EVP, _mark("evp_code"), text)
        return re.sub(_CARD16, _mark("code16"), text)

    def value(self, value: Any) -> Any:
        """A JSON value with every string redacted, and the value of every key that names a
        code or a secret (``token_url``, ``otp``, ``phone``, ``qr``, ``*key``, …) replaced."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):  # a code sent as a JSON number
            kind = {16: "code16", 28: "reservation_code"}.get(len(str(abs(value))))
            return value if kind is None else _mark(kind)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = self.text(str(k))
                out[key] = _mark(_kind_of(str(k))) if _secret_key(str(k), v) else self.value(v)
            return out
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return self.text(str(value))


_SECRET_KEY = rf"(?i)(?:{_FIELDS}|session|sealed|code_hash|credential.*)"


def _secret_key(key: str, value: Any) -> bool:
    return bool(re.fullmatch(_SECRET_KEY, key)) and value not in (None, "", [], {})


def redact(text: str, literals: Sequence[str] = ()) -> str:
    """``text`` without secrets or codes (:class:`Redactor`)."""
    return Redactor(tuple(literals)).text(text)


def redact_json(value: Any, literals: Sequence[str] = ()) -> Any:
    """A JSON value without secrets or codes (:meth:`Redactor.value`)."""
    return Redactor(tuple(literals)).value(value)


# --- the secrets file's values, in every form they may take ---------------------------------


def literals_of(values: Iterable[str]) -> tuple[str, ...]:
    """Each secret value as it may appear: whole, line by line, a PEM's body on one line, in
    base64 (standard and URL-safe, padded or not), in hex, and for a hex value its bytes in
    base64; values shorter than :data:`MIN_LITERAL` are left to the generic rules."""
    import base64

    out: set[str] = set()

    def add(s: str) -> None:
        if len(s) >= MIN_LITERAL:
            out.add(s)

    for value in values:
        lines = [line.strip() for line in value.splitlines()]
        for form in (value, value.strip(), *lines):
            add(form)
        if "-----BEGIN" in value:  # the body on one line (the DER in base64)
            add("".join(line for line in lines if not line.startswith("-----")))
        raw = [value.encode()]
        with contextlib.suppress(ValueError):
            raw.append(bytes.fromhex(value.strip()))
        for data in raw:
            if len(data) < MIN_LITERAL // 2:
                continue
            for enc in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
                add(enc.decode())
                add(enc.decode().rstrip("="))
            add(data.hex())
            add(data.hex().upper())
        if value.strip() and re.fullmatch(_HEX, value.strip()):
            add(value.strip().lower())
            add(value.strip().upper())
    return tuple(sorted(out))


# --- the log filter ----------------------------------------------------------------------------

REDACTION_FAILED: Final = "<redaction failed>"
_TRACEBACKS = logging.Formatter()  # formats an exception as logging's default formatter does


class RedactingFilter(logging.Filter):
    """Redacts each record in place and lets it through: its message with its arguments
    (``record.msg % record.args`` into ``record.msg``, ``record.args`` then None), its
    exception's traceback (into ``record.exc_text``; ``record.exc_info`` is dropped, so that no
    formatter or handler formats the exception afresh) and its stack (``record.stack_info``).

    Put it on each handler: a logger's own filters do not see the records of its children.
    ``literals``: the secrets file's values as :func:`literals_of` gives them, removed
    wherever they appear; without them, the rules by form of :class:`Redactor`.

    Never raises: a record that cannot be redacted (arguments that do not fit its format, an
    object whose ``str()`` fails) goes through with its message ``<redaction failed>`` and no
    arguments, exception or stack, rather than leaking them."""

    def __init__(self, literals: Sequence[str] = (), name: str = "") -> None:
        super().__init__(name)
        self.redactor = Redactor(tuple(literals))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = self.redactor.text(record.getMessage())
            exc_text = record.exc_text
            if record.exc_info and not exc_text:
                exc_text = _TRACEBACKS.formatException(record.exc_info)
            exc_text = self.redactor.text(exc_text) if exc_text else None
            stack = self.redactor.text(record.stack_info) if record.stack_info else None
        except Exception:  # whatever went wrong, nothing of the record's text goes out
            msg, exc_text, stack = REDACTION_FAILED, None, None
        record.msg, record.args = msg, None
        record.exc_info, record.exc_text, record.stack_info = None, exc_text, stack
        return True
