"""The Cashii sandbox's state and rules: merchants (API key → commercial account), customers'
accounts and their balances, and remote payments, kept as JSON in ``cashii.json``.

Amounts and balances are integers in minor units ("10098 represents 100.98" [DOC]). The only
non-integer numbers are the merchant's own ``metadata`` values, kept as Decimal with exactly
the digits sent (:func:`loads`, :func:`dumps`), so a payment reads back as it was created.

Statuses (providers.md §4.2, seed 003): ``pending`` after creation [DOC]; then ``paid``,
``rejected`` ("e.g. insufficient funds" [DOC]) or ``canceled``; a ``paid`` payment may become
``refunded`` [DOC status; INF transitions]. Every change of status happens through a test hook:
Cashii documents no cancel or refund API and no webhooks.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

# [INF] the currencies the sandbox knows; the docs name USD, EUR, SYP and TRY as examples
CURRENCIES: Final = frozenset({"AED", "EUR", "GBP", "SYP", "TRY", "USD"})
MAX_AMOUNT: Final = 2**53 - 1  # [INF] the largest integer every JSON reader keeps exactly
MAX_NOTE: Final = 255  # [INF] characters; the docs say only "a brief description"
MAX_METADATA: Final = 4096  # [INF] bytes of the compact JSON
ID_DIGITS: Final = 16  # [DOC] "A unique 16-digit identifier"
ACCOUNT_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")  # [INF] the docs give no format
BODY_FIELDS: Final = frozenset({"amount", "currency", "note", "metadata", "payable_to"})
REQUIRED_FIELDS: Final = ("amount", "currency", "note", "metadata")  # [INF] the docs' example


class CashiiError(Exception):
    """A refusal of the API: ``{"error": {"code", "message"}}`` with HTTP ``status`` [INF]."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{status} {code}: {message}")


class StateError(Exception):
    """A hook asks for what the state forbids (e.g. paying a payment twice); HTTP 409."""


# --- JSON --------------------------------------------------------------------------------------


def loads(data: bytes | str) -> Any:
    """Strict JSON: fractions as Decimal (never float); NaN and Infinity refused."""
    return json.loads(data, parse_float=Decimal, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dumps(obj: object) -> bytes:
    """Compact JSON; a Decimal is written as a bare number with exactly its digits."""
    parts: list[str] = []
    _write(obj, parts)
    return "".join(parts).encode()


def _write(obj: object, out: list[str]) -> None:
    if isinstance(obj, Decimal):
        out.append(format(obj, "f") if obj.is_finite() else "null")
    elif isinstance(obj, float):
        raise TypeError(f"refusing float {obj!r}")
    elif isinstance(obj, dict):
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + json.dumps(str(key), ensure_ascii=False) + ":")
            _write(value, out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, value in enumerate(obj):
            out.append("," if i else "")
            _write(value, out)
        out.append("]")
    else:
        out.append(json.dumps(obj, ensure_ascii=False))


# --- the create body ---------------------------------------------------------------------------


def check_create(doc: object) -> dict[str, Any]:
    """The create body as the payment's fields, or a 422 naming the first wrong field.

    [INF] all four fields of the docs' example are required; fields the docs do not name are
    refused (notably ``redirectUrl``: the redirect goes on the payment page's URL [DOC]).
    """
    if not isinstance(doc, dict):
        raise _invalid("the body must be a JSON object")
    unknown = sorted(set(doc) - BODY_FIELDS)
    if unknown:
        raise _invalid(f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(BODY_FIELDS))}")
    for name in REQUIRED_FIELDS:
        if name not in doc:
            raise _invalid(f"{name} is required")
    amount, currency, note, metadata = (doc[k] for k in REQUIRED_FIELDS)
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:
        raise _invalid("amount must be a positive integer in minor units (10098 = 100.98)")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        known = ", ".join(sorted(CURRENCIES))
        raise _invalid(f"currency must be an ISO 4217 code in capitals, one of {known}")
    if not isinstance(note, str) or not note.strip():
        raise _invalid("note must be a non-empty string")
    if len(note) > MAX_NOTE:
        raise _invalid(f"note is longer than {MAX_NOTE} characters")
    if not isinstance(metadata, dict):
        raise _invalid("metadata must be a JSON object")
    if len(dumps(metadata)) > MAX_METADATA:
        raise _invalid(f"metadata is larger than {MAX_METADATA} bytes")
    fields = {"amount": amount, "currency": currency, "note": note, "metadata": metadata}
    if "payable_to" in doc:
        payable_to = doc["payable_to"]  # [INF] null is refused, as any non-account value
        if not isinstance(payable_to, str) or not ACCOUNT_RE.fullmatch(payable_to):
            raise _invalid("payable_to must be a Cashii account number")
        fields["payable_to"] = payable_to
    return fields


def _invalid(message: str) -> CashiiError:
    return CashiiError(422, "validation_error", message)


# --- the state ---------------------------------------------------------------------------------


class Ledger:
    """Everything the sandbox remembers; call :meth:`save` after a change (the API does)."""

    def __init__(self, path: Path, now_ms: Callable[[], int]) -> None:
        self._path = path
        self.now_ms = now_ms
        state: dict[str, Any] = loads(path.read_bytes()) if path.exists() else {}
        self.merchants: dict[str, str] = state.get("merchants", {})  # API key → account
        self.accounts: dict[str, dict[str, int]] = state.get("accounts", {})  # → {currency: n}
        self.payments: dict[str, dict[str, Any]] = state.get("payments", {})  # id → payment

    def save(self) -> None:
        """Write the state atomically (a temporary file renamed over the old one)."""
        doc = {"merchants": self.merchants, "accounts": self.accounts, "payments": self.payments}
        tmp = self._path.with_suffix(".tmp")
        tmp.write_bytes(dumps(doc))
        tmp.replace(self._path)

    def merchant(self, api_key: str) -> str | None:
        """The commercial account an API key belongs to, if any (compared in constant time)."""
        found = None
        for key, account in self.merchants.items():
            if secrets.compare_digest(key.encode(), api_key.encode()):
                found = account
        return found

    # --- the API -------------------------------------------------------------------------------

    def create(self, merchant_account: str, fields: dict[str, Any]) -> str:
        """A new ``pending`` payment to ``merchant_account``; its fresh 16-digit id."""
        payment_id = _new_id()
        while payment_id in self.payments:
            payment_id = _new_id()
        self.payments[payment_id] = {
            "id": payment_id,
            **fields,
            "status": "pending",
            "to": merchant_account,
            "created_at_ms": self.now_ms(),
            "updated_at_ms": self.now_ms(),
        }
        return payment_id

    def find(self, merchant_account: str, payment_id: str) -> dict[str, Any]:
        """The payment as the API shows it; another merchant's is 404 as a missing one [INF]."""
        payment = self.payments.get(payment_id)
        if payment is None or payment["to"] != merchant_account:
            raise CashiiError(404, "not_found", f"no remote payment {payment_id}")
        return api_view(payment)

    # --- the customer's side (hooks) -----------------------------------------------------------

    def pay(self, payment: dict[str, Any], account: str) -> dict[str, Any]:
        """The customer pays from ``account``: ``paid``, or ``rejected`` when the account's
        balance in the payment's currency cannot cover it [DOC "e.g. insufficient funds"]."""
        self._expect(payment, "pending", "pay")
        if account not in self.accounts:
            raise KeyError(account)
        restricted = payment.get("payable_to")
        if restricted is not None and restricted != account:
            raise StateError(f"payment {payment['id']} is payable only by {restricted}")
        balances = self.accounts[account]
        code, amount = payment["currency"], payment["amount"]
        if balances.get(code, 0) < amount:
            payment["reason"] = "insufficient_funds"
            return self._move(payment, "rejected")
        balances[code] -= amount
        merchant = self.accounts.setdefault(payment["to"], {})
        merchant[code] = merchant.get(code, 0) + amount
        payment["from"] = account
        return self._move(payment, "paid")

    def refund(self, payment: dict[str, Any]) -> dict[str, Any]:
        """``paid`` → ``refunded``: the amount goes back from the merchant to the payer [INF:
        the merchant's balance may go below zero; there is no refund API to refuse it]."""
        self._expect(payment, "paid", "refund")
        code, amount = payment["currency"], payment["amount"]
        payer = self.accounts.setdefault(payment["from"], {})
        payer[code] = payer.get(code, 0) + amount
        merchant = self.accounts.setdefault(payment["to"], {})
        merchant[code] = merchant.get(code, 0) - amount
        return self._move(payment, "refunded")

    def end(self, payment: dict[str, Any], status: str) -> dict[str, Any]:
        """``pending`` → ``rejected`` or ``canceled`` (the user, or Cashii's checks)."""
        self._expect(payment, "pending", "reject" if status == "rejected" else "cancel")
        return self._move(payment, status)

    def _expect(self, payment: dict[str, Any], status: str, action: str) -> None:
        if payment["status"] != status:
            raise StateError(f"cannot {action} a {payment['status']} payment (needs {status})")

    def _move(self, payment: dict[str, Any], status: str) -> dict[str, Any]:
        payment["status"] = status
        payment["updated_at_ms"] = self.now_ms()
        return payment


def api_view(payment: dict[str, Any]) -> dict[str, Any]:
    """The payment object of ``GET /remote-payments/{id}`` (the attributes of the core-concepts
    page [DOC]; ``from`` only once paid [DOC], kept after a refund [INF]; ``payable_to`` only
    when set and ``created_at`` in ISO 8601 UTC [INF])."""
    view = {k: payment[k] for k in ("id", "amount", "currency", "note", "metadata", "status")}
    if "from" in payment:
        view["from"] = payment["from"]
    view["to"] = payment["to"]
    if "payable_to" in payment:
        view["payable_to"] = payment["payable_to"]
    view["created_at"] = iso_utc(payment["created_at_ms"])
    return view


def iso_utc(ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id() -> str:
    """16 digits, the first not 0 [INF] (so no reader that trims zeros shortens it)."""
    return str(secrets.randbelow(9 * 10 ** (ID_DIGITS - 1)) + 10 ** (ID_DIGITS - 1))
