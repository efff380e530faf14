"""PayBy on the wire: SHA256withRSA signatures and exact JSON (providers.md §1.3-1.4).

Both the client and the sandbox use this module, so a request the client signs is checked by
the sandbox with the same code path that checks the sandbox's replies in the client.

- Signatures are RSASSA-PKCS1-v1_5 with SHA-256 over the *exact raw body bytes*, standard
  Base64 with padding, sent in the ``sign`` header. Nothing is canonicalised.
- Amounts are JSON *numbers* (``150.00``). :func:`dumps` writes :class:`~decimal.Decimal` as a
  bare number with its exact digits and refuses floats; :func:`loads` reads every non-integer
  number as a Decimal. No float is ever created on either side.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kiosk.errors import MoneyError
from kiosk.money import Money

SIGN_HEADER: Final = "sign"
PARTNER_HEADER: Final = "Partner-Id"

#: ``head.code`` values for which PayBy's Java SDK accepts a reply without a ``sign`` header
#: (``OkHttpClientConfig$SignInterceptor``), besides every code starting with ``58``.
UNSIGNED_TOLERATED_CODES: Final = frozenset({"400", "402", "403", "404", "500", "504", "601"})


def unsigned_tolerated(code: str) -> bool:
    """True if a reply with this ``head.code`` may come without a signature."""
    return code in UNSIGNED_TOLERATED_CODES or code.startswith("58")


# --- keys and signatures ---------------------------------------------------------------------


def _pem(data: bytes, label: str) -> bytes:
    """PEM as given, or bare Base64 (as PayBy's portal shows keys) wrapped into PEM."""
    text = data.strip()
    if text.startswith(b"-----"):
        return text
    return (
        b"-----BEGIN "
        + label.encode()
        + b"-----\n"
        + text
        + b"\n-----END "
        + label.encode()
        + b"-----\n"
    )


def generate_key_pair(bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh RSA pair for tests and the demo: (PKCS#8 private PEM, SubjectPublicKeyInfo PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


class Signer:
    """Signs raw bodies with an RSA private key (PKCS#8 or PKCS#1 PEM, unencrypted)."""

    def __init__(self, private_key_pem: bytes) -> None:
        key = serialization.load_pem_private_key(_pem(private_key_pem, "PRIVATE KEY"), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("PayBy signing key must be an RSA private key")
        self._key = key

    def sign(self, body: bytes) -> str:
        """Base64 SHA256withRSA signature of ``body``, for the ``sign`` header."""
        raw = self._key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never show key material
        return f"Signer(rsa-{self._key.key_size})"


class Verifier:
    """Checks ``sign`` headers against an RSA public key (SubjectPublicKeyInfo PEM or Base64)."""

    def __init__(self, public_key_pem: bytes) -> None:
        key = serialization.load_pem_public_key(_pem(public_key_pem, "PUBLIC KEY"))
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("PayBy verification key must be an RSA public key")
        self._key = key

    def verify(self, body: bytes, sign: str) -> bool:
        """True only if ``sign`` is valid Base64 of a signature of exactly ``body``."""
        try:
            raw = base64.b64decode(sign.strip(), validate=True)
            self._key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier(rsa-{self._key.key_size})"


# --- exact JSON ------------------------------------------------------------------------------


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON; Decimal becomes a bare number with exactly its digits.

    Accepts dict (str keys), list, tuple, str, int, bool, None and finite Decimal. A float
    anywhere raises :class:`TypeError`: PayBy amounts must be exact.
    """
    parts: list[str] = []
    _write(obj, parts, 0)
    return "".join(parts).encode("utf-8")


_MAX_DEPTH: Final = 64


def _write(obj: object, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("JSON nested too deeply")
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"refusing non-finite Decimal {obj!r}")
        out.append(format(obj, "f"))  # plain digits, never an exponent
    elif isinstance(obj, float):
        raise TypeError(f"refusing float {obj!r}: use Decimal for amounts")
    elif isinstance(obj, dict):
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, got {type(key).__name__}")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value, out, depth + 1)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _write(value, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(obj).__name__} as PayBy JSON")


def _refuse_constant(name: str) -> object:
    raise ValueError(f"refusing JSON constant {name}")


def loads(data: bytes | str) -> object:
    """Parse JSON with every fractional number as Decimal; NaN/Infinity refused (ValueError)."""
    return json.loads(data, parse_float=Decimal, parse_constant=_refuse_constant)


# --- money -----------------------------------------------------------------------------------


def money_out(money: Money) -> dict[str, object]:
    """PayBy's Money object; ``amount`` is a Decimal that :func:`dumps` writes bare (``150.00``)."""
    return {"currency": money.code, "amount": money.to_decimal()}


def money_in(obj: object) -> Money:
    """From PayBy's ``{"currency", "amount"}``; amount a JSON number (parsed as Decimal/int) or
    a decimal string (the PHP SDK sends strings)."""
    if not isinstance(obj, dict):
        raise MoneyError(f"PayBy amount must be an object, got {type(obj).__name__}")
    amount, code = obj.get("amount"), obj.get("currency")
    if not isinstance(code, str) or not isinstance(amount, (Decimal, int, str)):
        raise MoneyError(f"PayBy amount malformed: {obj!r}")
    return Money.from_decimal(amount, code)
