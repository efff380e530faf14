"""The Rapyd POS sandbox's state and money rules: POS terminals, wallets and their accounts,
OTPs, sessions, transactions and stored idempotent replies, kept as JSON in ``rapyd.json``.

Balances and transaction amounts are integer minor units; amounts arrive as major-unit decimal
path segments (:func:`parse_amount`) and leave as exact JSON numbers (:func:`major`,
:func:`dumps`). Every refusal is a :class:`RapydError` with Rapyd's ``ERROR_*`` naming.

Session rules (providers.md §3.3, seed 002): an OTP is valid for 30 s from issue ("absolute
30 seconds"), once, for the phone number it was issued to; a session (``token_id`` +
``operation_id``) carries one Deposit or Withdraw and must then be closed (logout).
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

OTP_TTL_MS: Final = 30_000  # [DOC] "valid for absolute 30 seconds"
# code → (exponent, symbol); [INF] the currencies a sandbox wallet may hold and their symbols
CURRENCIES: Final[dict[str, tuple[int, str]]] = {
    "AED": (2, "د.إ"),
    "EUR": (2, "€"),
    "GBP": (2, "£"),  # [DOC] the seed's sample account
    "USD": (2, "$"),
}
_AMOUNT_RE: Final = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_PHONE_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}")  # E.164


class RapydError(Exception):
    """A refusal: the reply is the ``status`` envelope with ``code``, HTTP ``http``."""

    def __init__(self, code: str, message: str, http: int = 400) -> None:
        self.code, self.message, self.http = code, message, http
        super().__init__(f"{code}: {message}")


# --- money on the wire -------------------------------------------------------------------------


def parse_amount(text: str, code: str) -> int:
    """A path amount (``"10"``, ``"10.5"``, ``"10.50"``) in minor units of ``code``.

    Refused with ``ERROR_INVALID_AMOUNT`` [INF code]: anything but plain decimal digits (no
    sign, exponent or leading zeros [INF]), more decimals than the currency has (even zeros:
    ``"10.000"`` [INF]), zero.
    """
    exponent = CURRENCIES[code][0]
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise RapydError("ERROR_INVALID_AMOUNT", f"{text!r} is not a decimal amount")
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > exponent:
        raise RapydError("ERROR_INVALID_AMOUNT", f"{code} amounts have at most {exponent} decimals")
    minor = int(whole + frac.ljust(exponent, "0"))
    if minor <= 0:
        raise RapydError("ERROR_INVALID_AMOUNT", "the amount must be positive")
    return minor


def major(minor: int, code: str) -> Decimal:
    """Minor units as the reply's number: whole amounts bare (``189``, as the docs' sample),
    others with the currency's decimals (``12.50``) [INF]."""
    value = Decimal(minor).scaleb(-CURRENCIES[code][0])
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


def check_currency(code: str) -> str:
    if code not in CURRENCIES:
        known = ", ".join(sorted(CURRENCIES))
        raise RapydError("ERROR_INVALID_CURRENCY", f"unknown currency {code!r}; one of {known}")
    return code


def check_phone(phone: str | None) -> str:
    if phone is None or not _PHONE_RE.fullmatch(phone):
        raise RapydError("ERROR_INVALID_PHONE_NUMBER", "phone_number must be E.164 (+14155559992)")
    return phone


def dumps(obj: object, *, ascii_only: bool = False) -> bytes:
    """Compact JSON; a Decimal is written as a bare number with exactly its digits.
    ``ascii_only``: non-ASCII characters as ``\\u`` escapes (as ``json.dumps`` by default)."""
    parts: list[str] = []
    _write(obj, parts, ascii_only)
    return "".join(parts).encode()


def loads(data: bytes | str) -> Any:
    """JSON with fractions as Decimal (never float)."""
    return json.loads(data, parse_float=Decimal)


def _write(obj: object, out: list[str], ascii_only: bool) -> None:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"refusing non-finite {obj!r}")
        out.append(format(obj, "f"))
    elif isinstance(obj, float):
        raise TypeError(f"refusing float {obj!r}: amounts are Decimal")
    elif isinstance(obj, dict):
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            key_text = json.dumps(str(key), ensure_ascii=ascii_only)
            out.append(("," if i else "") + key_text + ":")
            _write(value, out, ascii_only)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, value in enumerate(obj):
            out.append("," if i else "")
            _write(value, out, ascii_only)
        out.append("]")
    else:
        out.append(json.dumps(obj, ensure_ascii=ascii_only))


# --- the state ---------------------------------------------------------------------------------


class Ledger:
    """Everything the sandbox remembers; call :meth:`save` after a change (the API does)."""

    def __init__(self, path: Path, now_ms: Callable[[], int]) -> None:
        self._path = path
        self.now_ms = now_ms
        state: dict[str, Any] = loads(path.read_bytes()) if path.exists() else {}
        self.pos: dict[str, dict[str, str]] = state.get("pos", {})  # pos_id → keys
        self.wallets: dict[str, list[dict[str, Any]]] = state.get("wallets", {})  # phone → accts
        self.otps: dict[str, dict[str, Any]] = state.get("otps", {})
        self.sessions: dict[str, dict[str, Any]] = state.get("sessions", {})  # token_id → …
        self.txs: dict[str, dict[str, Any]] = state.get("txs", {})
        self.replies: dict[str, dict[str, Any]] = state.get("replies", {})  # idempotency

    def save(self) -> None:
        doc = {
            "pos": self.pos,
            "wallets": self.wallets,
            "otps": self.otps,
            "sessions": self.sessions,
            "txs": self.txs,
            "replies": self.replies,
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_bytes(dumps(doc))
        tmp.replace(self._path)

    def pos_by_access_key(self, access_key: str) -> tuple[str, dict[str, str]] | None:
        for pos_id, keys in self.pos.items():
            if secrets.compare_digest(keys["access_key"], access_key):
                return pos_id, keys
        return None

    # --- the customer's side (hooks) -----------------------------------------------------------

    def set_wallet(self, phone: str, balances: list[tuple[str, int]]) -> list[dict[str, Any]]:
        """Create the wallet, or set the balances of its accounts (ids kept) [INF]."""
        accounts = self.wallets.setdefault(phone, [])
        for code, balance in balances:
            self._account_in(accounts, code)["balance"] = balance
        return accounts

    def issue_otp(self, phone: str) -> dict[str, Any]:
        live = {
            c for c, o in self.otps.items() if not o["used"] and o["expires_at_ms"] > self.now_ms()
        }
        otp = f"{secrets.randbelow(10**6):06d}"
        while otp in live:
            otp = f"{secrets.randbelow(10**6):06d}"
        self.otps[otp] = {
            "phone_number": phone,
            "expires_at_ms": self.now_ms() + OTP_TTL_MS,
            "used": False,
        }
        return {"otp": otp, "expires_at_ms": self.otps[otp]["expires_at_ms"]}

    # --- the POS API ---------------------------------------------------------------------------

    def login(self, pos_id: str, otp: str, phone: str) -> dict[str, Any]:
        entry = self.otps.get(otp)
        if entry is None or entry["phone_number"] != phone:
            # [INF] a wrong phone number does not use the OTP up
            raise RapydError("ERROR_INVALID_OTP", "no such OTP for this phone number")
        if entry["used"]:
            raise RapydError("ERROR_INVALID_OTP", "the OTP was used already")  # [INF] code
        if self.now_ms() >= entry["expires_at_ms"]:
            raise RapydError("ERROR_OTP_EXPIRED", "the OTP expired; ask for a new one")
        entry["used"] = True
        token, operation = str(uuid.uuid4()), str(uuid.uuid4())
        self.sessions[token] = {
            "token_id": token,
            "operation_id": operation,
            "phone_number": phone,
            "pos_id": pos_id,
            "opened_at_ms": self.now_ms(),
            "action": None,  # the transaction_id of its one Deposit or Withdraw
            "closed_at_ms": None,
        }
        accounts = [self._wire_account(a) for a in self.wallets.get(phone, [])]
        return {"token_id": token, "operation_id": operation, "accounts": accounts}

    def session(
        self,
        pos_id: str,
        token: str | None,
        operation: str | None,
        phone: str | None,
        *,
        need_phone: bool,
    ) -> dict[str, Any]:
        """The open session these headers name, opened by this POS [INF]. ``need_phone``: the
        method's docs list ``phone_number``; otherwise one given must still match [INF]."""
        if not token or not operation:
            raise RapydError("ERROR_INVALID_SESSION", "token_id and operation_id are required")
        if need_phone and phone is None:
            raise RapydError("ERROR_INVALID_SESSION", "phone_number is required")
        session = self.sessions.get(token)
        if session is None or (session["operation_id"], session["pos_id"]) != (operation, pos_id):
            raise RapydError("ERROR_INVALID_SESSION", "no such session (token_id, operation_id)")
        if phone is not None and phone != session["phone_number"]:
            raise RapydError("ERROR_INVALID_SESSION", "phone_number is not the session's")
        if session["closed_at_ms"] is not None:
            raise RapydError("ERROR_SESSION_CLOSED", "the session is closed; open a new one")
        return session

    def withdraw(self, session: dict[str, Any], account_id: str, amount: str) -> dict[str, Any]:
        self._one_action(session)
        account = self._account(session, account_id)
        minor = parse_amount(amount, account["currency"])
        if account["balance"] < minor:
            raise RapydError("ERROR_INSUFFICIENT_FUNDS", "the account cannot cover the amount")
        account["balance"] -= minor
        tx = self._record(session, "withdraw", account, minor)
        return {"transaction_id": tx}

    def deposit(
        self, session: dict[str, Any], amount: str, code: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        self._one_action(session)
        check_currency(code)
        minor = parse_amount(amount, code)
        account = self._account_in(self.wallets.setdefault(session["phone_number"], []), code)
        account["balance"] += minor
        tx = self._record(session, "deposit", account, minor, metadata=metadata)
        return {"transaction_id": tx, "metadata": metadata}

    def reversal(
        self, session: dict[str, Any], account_id: str, amount: str, tx_id: str | None, op: str
    ) -> dict[str, Any]:
        """Credit back part or all of this session's withdrawal; ``op`` names the reversal
        (its ``operation_id``, also its key in :attr:`txs`) [INF]."""
        withdrawal = self.txs.get(tx_id or "")
        if (
            withdrawal is None
            or withdrawal["kind"] != "withdraw"
            or withdrawal["session"] != session["token_id"]
        ):
            raise RapydError(  # [INF] code
                "ERROR_TRANSACTION_NOT_FOUND", "transaction_id is not this session's withdrawal"
            )
        account = self._account(session, account_id)
        if account["account_id"] != withdrawal["account_id"]:
            raise RapydError("ERROR_ACCOUNT_NOT_FOUND", "not the withdrawal's account")
        minor = parse_amount(amount, account["currency"])
        if minor > withdrawal["amount"] - withdrawal["reversed"]:
            left = major(withdrawal["amount"] - withdrawal["reversed"], account["currency"])
            raise RapydError("ERROR_REVERSAL_EXCEEDS", f"at most {left} is left to reverse")
        account["balance"] += minor
        withdrawal["reversed"] += minor
        withdrawal.setdefault("reversals", []).append(op)
        self._record(session, "reversal", account, minor, tx_id=op, of=tx_id)
        return {"transaction_id": "", "operation_id": op}  # [DOC] the shape, "" included

    def logout(self, session: dict[str, Any]) -> None:
        session["closed_at_ms"] = self.now_ms()

    # --- helpers -------------------------------------------------------------------------------

    def _one_action(self, session: dict[str, Any]) -> None:
        if session["action"] is not None:
            raise RapydError(  # [INF] code: the session's one action is spent
                "ERROR_SESSION_CLOSED",
                "this session carried its one Deposit or Withdraw; close it and open a new one",
            )

    def _account(self, session: dict[str, Any], account_id: str) -> dict[str, Any]:
        for account in self.wallets.get(session["phone_number"], []):
            if account["account_id"] == account_id:
                return account
        raise RapydError("ERROR_ACCOUNT_NOT_FOUND", "no such account in this wallet")

    @staticmethod
    def _account_in(accounts: list[dict[str, Any]], code: str) -> dict[str, Any]:
        for account in accounts:
            if account["currency"] == code:
                return account
        account = {"account_id": str(uuid.uuid4()), "currency": code, "balance": 0}
        accounts.append(account)
        return account

    def _record(
        self,
        session: dict[str, Any],
        kind: str,
        account: dict[str, Any],
        minor: int,
        *,
        tx_id: str | None = None,
        **extra: Any,
    ) -> str:
        tx = tx_id or str(uuid.uuid4())
        self.txs[tx] = {
            "transaction_id": tx,
            "kind": kind,
            "amount": minor,
            "currency": account["currency"],
            "account_id": account["account_id"],
            "phone_number": session["phone_number"],
            "reversed": 0,
            "session": session["token_id"],
            "pos_id": session["pos_id"],
            "at_ms": self.now_ms(),
            **extra,
        }
        if kind != "reversal":
            session["action"] = tx
        return tx

    @staticmethod
    def _wire_account(account: dict[str, Any]) -> dict[str, Any]:
        code = account["currency"]
        return {
            "account_id": account["account_id"],
            "account_currency": code,
            "account_alias": code,  # [DOC sample] the alias is the currency code [INF rule]
            "account_balance": major(account["balance"], code),
            "account_currency_symbol": CURRENCIES[code][1],
        }
