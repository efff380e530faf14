"""Rapyd POS API client (``/v1/pos``, providers.md §3): the calls a cash kiosk needs.

Wiring::

    http = httpx.AsyncClient()                               # owned and closed by the caller
    client = RapydClient(http, base_url="https://pos.rapyd.net",   # sandbox: sandboxpos.rapyd.net
                         signer=Signer(access_key, secret_key), timeout=httpx.Timeout(10.0))
    session = await client.login(pos_id, otp, phone)         # the customer's 30-second OTP
    account = session.account("GBP")
    withdrawal = await client.withdraw(session, account.id, Money.of(1000, "GBP"),
                                       idempotency="KSK-1-000042-withdraw")
    await client.logout(session)                              # after every action

One session is one Deposit or Withdraw, then it must be closed. Every request carries
``access_key`` and the signature headers (:mod:`.signing`); every money call an
``idempotency`` header (Rapyd replays the stored answer of a repeated key and path [INF]).
Replies are the ``status{…}`` envelope; Rapyd signs no reply, so a well-formed envelope over
TLS is Rapyd's own answer (``signed=True`` on its refusals), anything else is not. Errors, all
from :mod:`kiosk.errors`:

- :class:`ProviderUnavailable` — not delivered (connect error): nothing happened;
- :class:`ProviderAmbiguous` — sent, outcome unknown (timeout, reset, HTTP 5xx, 429);
- :class:`ProviderRefused` — Rapyd said no; ``code`` is its ``error_code`` (``ERROR_...``);
- :class:`ProviderProtocolError` — a reply that is not what the API documents.

OTPs, phone numbers, session tokens and amounts are never logged: only the method, the path
template, the outcome and the elapsed time.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import httpx

from kiosk.errors import (
    MoneyError,
    ProviderAmbiguous,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)
from kiosk.money import Money
from kiosk.providers.rapyd import wire
from kiosk.providers.rapyd.signing import Signer

log = logging.getLogger("kiosk.providers.rapyd")

PROVIDER: Final = "rapyd"
PREFIX: Final = "/v1/pos"
_OTP: Final = re.compile(r"[0-9]{4,10}")
_PHONE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SUCCESS: Final = frozenset({"", "0"})


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    currency: str
    alias: str
    balance: Money


@dataclass(frozen=True, slots=True)
class Session:
    """An open POS session: one action, then :meth:`RapydClient.logout`. The token is a bearer
    credential: hidden from ``repr``, sealed in the outbox, never logged."""

    token_id: str = field(repr=False)
    operation_id: str = field(repr=False)
    phone: str = field(repr=False)
    accounts: tuple[Account, ...] = ()

    def account(self, currency: str) -> Account | None:
        return next((a for a in self.accounts if a.currency == currency), None)

    def sealed(self) -> dict[str, str]:
        """What the outbox seals to act on this session later (a reversal, the close)."""
        return {"token_id": self.token_id, "operation_id": self.operation_id, "phone": self.phone}

    @classmethod
    def unsealed(cls, doc: Mapping[str, Any]) -> Session:
        return cls(str(doc["token_id"]), str(doc["operation_id"]), str(doc["phone"]))


def valid_otp(otp: str) -> bool:
    return bool(_OTP.fullmatch(otp))


def valid_phone(phone: str) -> bool:
    """E.164: ``+`` and 7 to 15 ASCII digits, not starting with 0."""
    return bool(_PHONE.fullmatch(phone))


def _broken(message: str) -> ProviderProtocolError:
    return ProviderProtocolError(PROVIDER, message)


def _account(doc: object) -> Account:
    if not isinstance(doc, dict):
        raise _broken("an account is not an object")
    aid, cur = doc.get("account_id"), doc.get("account_currency")
    if not isinstance(aid, str) or not _ID.fullmatch(aid) or not isinstance(cur, str):
        raise _broken("an account without an id or a currency")
    try:
        bal = wire.balance(doc.get("account_balance"), cur)
    except MoneyError as exc:
        raise _broken(f"account balance: {exc}") from exc
    return Account(aid, cur, str(doc.get("account_alias") or cur), bal)


class RapydClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        signer: Signer,
        timeout: httpx.Timeout,
        on_reply: Callable[[bool], None] | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._timeout = timeout
        self._on_reply = on_reply or (lambda got_reply: None)

    async def echo(self) -> None:
        """``GET /v1/pos/echo``: the access key and the signature accepted."""
        await self._call("GET", "/echo", what="echo")

    async def login(self, pos_id: str, otp: str, phone: str) -> Session:
        """Open Session: ``POST /login/{pos_id}/{otp_code}`` with the customer's phone."""
        if not valid_otp(otp):
            raise ValueError("an OTP is 4 to 10 digits")
        if not valid_phone(phone):
            raise ValueError("a phone number in E.164 form (+ and digits)")
        data = await self._call(
            "POST", f"/login/{_id(pos_id)}/{otp}", headers={"phone_number": phone}, what="login"
        )
        token, op = data.get("token_id"), data.get("operation_id")
        if not isinstance(token, str) or not token or not isinstance(op, str) or not op:
            raise _broken("login: no token_id or operation_id")
        accounts = data.get("accounts") or []
        if not isinstance(accounts, list):
            raise _broken("login: accounts is not a list")
        return Session(token, op, phone, tuple(_account(a) for a in accounts))

    async def withdraw(
        self, session: Session, account_id: str, amount: Money, *, idempotency: str
    ) -> str:
        """``POST /withdraw/{account}/{sum}``; returns the withdrawal's ``transaction_id``."""
        path = f"/withdraw/{_id(account_id)}/{wire.path_amount(amount)}"
        data = await self._call(
            "POST", path, headers=_session(session), idempotency=idempotency, what="withdraw"
        )
        return _transaction_id(data, "withdraw")

    async def deposit(self, session: Session, amount: Money, *, idempotency: str) -> str:
        """``POST /deposit/{amount}/{currency}``; returns the deposit's ``transaction_id``."""
        path = f"/deposit/{wire.path_amount(amount)}/{amount.code}"
        data = await self._call(
            "POST",
            path,
            body={"metadata": {"kiosk_reference": idempotency}},
            headers=_session(session),
            idempotency=idempotency,
            what="deposit",
        )
        return _transaction_id(data, "deposit")

    async def reverse(
        self,
        session: Session,
        account_id: str,
        amount: Money,
        withdrawal_id: str,
        *,
        idempotency: str,
    ) -> None:
        """Reverse Withdrawal: ``POST /reversal/{account}/{reversed_amount}`` keyed by the
        withdrawal's ``transaction_id`` (the docs' reply has an empty ``transaction_id``)."""
        path = f"/reversal/{_id(account_id)}/{wire.path_amount(amount)}"
        headers = {**_session(session), "transaction_id": _id(withdrawal_id)}
        await self._call("POST", path, headers=headers, idempotency=idempotency, what="reversal")

    async def logout(self, session: Session) -> None:
        """Close Session: mandatory after each Deposit or Withdraw."""
        await self._call("POST", "/logout", headers=_session(session), what="logout")

    # --- transport -------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency: str | None = None,
        what: str,
    ) -> dict[str, Any]:
        raw = "" if body is None else json.dumps(body, separators=(",", ":"))
        url_path = PREFIX + path
        sent = {**self._signer.headers(method, url_path, raw), **(headers or {})}
        if method == "POST":  # the documented headers name it on every POST, body or not
            sent["Content-Type"] = "application/json"
        if idempotency is not None:
            sent["idempotency"] = idempotency
        started = time.monotonic()
        try:
            response = await self._http.request(
                method,
                self._base + url_path,
                content=raw.encode(),
                headers=sent,
                timeout=self._timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.warning("%s %s not delivered (%s)", method, what, type(exc).__name__)
            self._on_reply(False)
            raise ProviderUnavailable(PROVIDER, f"{what}: not delivered") from exc
        except httpx.HTTPError as exc:
            log.warning("%s %s outcome unknown (%s)", method, what, type(exc).__name__)
            self._on_reply(False)
            raise ProviderAmbiguous(PROVIDER, f"{what}: outcome unknown") from exc
        self._on_reply(True)
        ms = int((time.monotonic() - started) * 1000)
        doc = _json(response.content)
        http_status = response.status_code
        status = doc.get("status") if isinstance(doc, dict) else None
        if not isinstance(status, dict):
            log.warning("%s %s HTTP %d without an envelope %dms", method, what, http_status, ms)
            if http_status >= 500 or http_status == 429:
                raise ProviderAmbiguous(PROVIDER, f"{what}: HTTP {http_status}")
            raise _broken(f"{what}: no status envelope (HTTP {http_status})")
        code = str(status.get("error_code") or status.get("response_code") or "")
        if status.get("status") == "SUCCESS" and code in _SUCCESS and http_status == 200:
            log.info("%s %s ok %dms", method, what, ms)
            data = doc.get("data") if isinstance(doc, dict) else None
            return data if isinstance(data, dict) else {}
        log.warning("%s %s HTTP %d %s %dms", method, what, http_status, code or "-", ms)
        if http_status >= 500 or http_status == 429:
            raise ProviderAmbiguous(PROVIDER, f"{what}: HTTP {http_status}", code=code or None)
        if status.get("status") == "ERROR" and code.startswith("ERROR"):
            message = str(status.get("message") or code)
            if http_status == 401:  # our access key or request signature refused
                raise ProviderAuthFailed(PROVIDER, message, code=code, signed=True)
            raise ProviderRefused(PROVIDER, message, code=code, signed=True)
        raise _broken(f"{what}: unexpected status (HTTP {http_status})")


def _session(session: Session) -> dict[str, str]:
    return {
        "token_id": session.token_id,
        "operation_id": session.operation_id,
        "phone_number": session.phone,
    }


def _transaction_id(data: Mapping[str, Any], what: str) -> str:
    tid = data.get("transaction_id")
    if not isinstance(tid, str) or not _ID.fullmatch(tid):
        raise _broken(f"{what}: no transaction_id")
    return tid


def _id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError("not a Rapyd id")
    return value


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError):
        return None
