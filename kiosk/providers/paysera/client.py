"""Paysera Wallet API client: the transaction calls a kiosk needs (providers.md §2.2-2.6).

Wiring::

    http = httpx.AsyncClient()                          # owned and closed by the caller
    client = PayseraClient(
        http,
        base_url="https://wallet.paysera.com/rest/v1",  # sandbox: wallet-sandbox.paysera.com
        signer=MacSigner(client_id, mac_key),
        timeout=httpx.Timeout(10.0, connect=5.0),
    )
    tx = await client.create(Money.of(5000, "EUR"), "Cash withdrawal", reserve_for_s=300)
    tx = await client.reserve_with_code(tx.key, code)   # the customer's 28-digit code
    tx = await client.confirm(tx.key)

Every request is MAC-signed over its exact body bytes (:mod:`.mac`). Paysera does not sign its
replies: their authority is the TLS connection, so a well-formed JSON reply (a transaction, or
an error body ``{"error": ...}``) is Paysera's own answer (``signed=True`` on the error), while
anything else (an HTML gateway page, a reset, a timeout after sending) is not. Errors, all from
:mod:`kiosk.errors`:

- :class:`ProviderUnavailable` — not delivered (connect error): nothing happened;
- :class:`ProviderAmbiguous` — sent, outcome unknown (timeout, reset, HTTP 5xx, 429);
- :class:`ProviderRefused` — Paysera said no; ``code`` is its ``error`` (``invalid_state``,
  ``not_enough_funds``, ``unauthorized`` ...);
- :class:`ProviderProtocolError` — a reply that is not what the API documents.

Codes, keys and amounts are never logged: only method, path template, outcome and elapsed ms.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from kiosk.providers.paysera.mac import MacSigner

log = logging.getLogger("kiosk.providers.paysera")

PROVIDER: Final = "paysera"
MAX_RESERVE_FOR_S: Final = 300  # the kiosk reserves for minutes at most (the seed's guidance)
_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CODE_RE: Final = re.compile(r"\d{28}")
STATUSES: Final = frozenset(
    {
        "new",
        "waiting",
        "waiting_registration",
        "waiting_funds",
        "waiting_password",
        "reserved",
        "confirmed",
        "rejected",
        "revoked",
        "failed",
        "deleted",
    }
)


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    status: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Transaction:
    key: str
    status: str
    type: str | None
    wallet: int | None
    payments: tuple[Payment, ...]

    @property
    def total(self) -> int:
        return sum(p.amount.minor for p in self.payments)


def _broken(message: str) -> ProviderProtocolError:
    return ProviderProtocolError(PROVIDER, message)


def _money(obj: Mapping[str, Any]) -> Money:
    currency = obj.get("currency")
    if not isinstance(currency, str):
        raise _broken("payment without a currency")
    try:
        price = obj.get("price")
        if type(price) is int:
            return Money.of(price, currency)
        if isinstance(obj.get("price_decimal"), str):
            return Money.from_decimal(obj["price_decimal"], currency)
    except MoneyError as exc:
        raise _broken(f"payment amount: {exc}") from exc
    raise _broken("payment without an integer price")


def parse_transaction(doc: object) -> Transaction:
    if not isinstance(doc, dict):
        raise _broken("the reply is not a transaction object")
    key, status = doc.get("transaction_key"), doc.get("status")
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise _broken("transaction_key missing or malformed")
    if not isinstance(status, str) or status not in STATUSES:
        raise _broken(f"unknown transaction status {str(status)[:40]!r}")
    listed = doc.get("payments") or []
    if not isinstance(listed, list):
        raise _broken("payments is not a list")
    payments = []
    for p in listed:
        if not isinstance(p, dict) or type(p.get("id")) is not int:
            raise _broken("a payment without an id")
        payments.append(Payment(p["id"], str(p.get("status", "")), _money(p)))
    wallet = doc.get("wallet")
    return Transaction(
        key=key,
        status=str(status),
        type=doc.get("type") if isinstance(doc.get("type"), str) else None,
        wallet=wallet if type(wallet) is int else None,
        payments=tuple(payments),
    )


class PayseraClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        signer: MacSigner,
        timeout: httpx.Timeout,
        on_reply: Callable[[bool], None] | None = None,
    ) -> None:
        self._http = http
        self._on_reply = on_reply or (lambda got_reply: None)
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._timeout = timeout

    # --- transactions -------------------------------------------------------------------------

    async def create(
        self,
        amount: Money,
        description: str,
        *,
        reserve_for_s: int,
        allowance_id: int | None = None,
    ) -> Transaction:
        """``POST /transaction``: one payment of ``amount``, reserved for ``reserve_for_s``
        (at most :data:`MAX_RESERVE_FOR_S`); ``allowance_id``: the cash-in allowance."""
        if not 0 < reserve_for_s <= MAX_RESERVE_FOR_S:
            raise ValueError(f"reserve_for_s must be 1..{MAX_RESERVE_FOR_S} seconds")
        if amount.minor <= 0:
            raise ValueError("a transaction amount is positive")
        body: dict[str, Any] = {
            "payments": [
                {"description": description, "price": amount.minor, "currency": amount.code}
            ],
            "reserve_for": reserve_for_s,
        }
        if allowance_id is not None:
            body["allowance"] = {"id": allowance_id, "optional": True}
        return parse_transaction(await self._call("POST", "/transaction", body))

    async def reserve_with_code(self, key: str, code: str) -> Transaction:
        """``PUT /transaction/{key}/reserve`` with the customer's reservation code."""
        if not _CODE_RE.fullmatch(code):
            raise ValueError("a reservation code is 28 digits")
        path = f"/transaction/{_key(key)}/reserve"
        return parse_transaction(await self._call("PUT", path, {"code": code}, what="reserve"))

    async def reserve_to_wallet(self, key: str, wallet_id: int) -> Transaction:
        """``PUT /transaction/{key}/reserve/{walletId}`` (cash-in, through the allowance)."""
        if wallet_id <= 0:
            raise ValueError("a wallet id is positive")
        path = f"/transaction/{_key(key)}/reserve/{wallet_id}"
        return parse_transaction(await self._call("PUT", path, None, what="reserve_wallet"))

    async def confirm(self, key: str) -> Transaction:
        return parse_transaction(
            await self._call("PUT", f"/transaction/{_key(key)}/confirm", None, what="confirm")
        )

    async def revoke(self, key: str) -> Transaction:
        """``DELETE /transaction/{key}``."""
        return parse_transaction(
            await self._call("DELETE", f"/transaction/{_key(key)}", None, what="revoke")
        )

    async def get(self, key: str) -> Transaction:
        return parse_transaction(
            await self._call("GET", f"/transaction/{_key(key)}", None, what="get")
        )

    async def server_time(self, path: str = "/server") -> int:
        """The server's clock, unix seconds (no authentication; the path is [INF])."""
        try:
            response = await self._http.get(self._base + path, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(PROVIDER, f"server time: {type(exc).__name__}") from exc
        doc = _json(response.content)
        value = doc.get("time") if isinstance(doc, dict) else None
        if response.status_code != 200 or type(value) is not int:
            raise _broken("server time: not a time")
        return value

    # --- transport -----------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, what: str = ""
    ) -> object:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        url = self._base + path
        headers = {"Authorization": self._signer.authorization(method, url, raw)}
        if raw:
            headers["Content-Type"] = "application/json"
        label = what or path
        started = time.monotonic()
        try:
            response = await self._http.request(
                method, url, content=raw, headers=headers, timeout=self._timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.warning("%s %s not delivered (%s)", method, label, type(exc).__name__)
            self._on_reply(False)
            raise ProviderUnavailable(PROVIDER, f"{label}: not delivered") from exc
        except httpx.HTTPError as exc:
            log.warning("%s %s outcome unknown (%s)", method, label, type(exc).__name__)
            self._on_reply(False)
            raise ProviderAmbiguous(PROVIDER, f"{label}: outcome unknown") from exc
        self._on_reply(True)
        ms = int((time.monotonic() - started) * 1000)
        doc = _json(response.content)
        status = response.status_code
        if status == 200 and doc is not None:
            log.info("%s %s ok %dms", method, label, ms)
            return doc
        code = doc.get("error") if isinstance(doc, dict) else None
        log.warning("%s %s HTTP %d %s %dms", method, label, status, code or "-", ms)
        if isinstance(code, str) and 400 <= status < 500 and status != 429:
            desc = doc.get("error_description") if isinstance(doc, dict) else None
            if status == 401:  # unauthorized: our MAC (client id, key or clock) refused
                raise ProviderAuthFailed(PROVIDER, str(desc or code), code=code, signed=True)
            raise ProviderRefused(PROVIDER, str(desc or code), code=code, signed=True)
        if status >= 500 or status == 429:
            raise ProviderAmbiguous(PROVIDER, f"{label}: HTTP {status}", code=code or None)
        raise _broken(f"{label}: unexpected reply (HTTP {status})")


def _key(key: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"not a Paysera transaction key: {key!r}")
    return key


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
