"""Cashii Remote Payments API client (providers.md §4): create a remote payment, read it.

Wiring::

    http = httpx.AsyncClient()                        # owned and closed by the caller
    client = CashiiClient(http, base_url="https://api.cashii.app", api_key=key,
                          timeout=httpx.Timeout(10.0))
    payment_id = await client.create(Money.of(10098, "SYP"), "Cash withdrawal KSK-1-000042",
                                     metadata={"kiosk_id": "KSK-1", "reference": "KSK-1-000042"})
    payment = await client.get(payment_id)            # poll: only "paid" read here pays out

The kiosk is the merchant: the customer pays the payment in the Cashii app (the payment page
``https://cashii.app/payment?code={id}``), and only a ``paid`` read through this API releases
cash (a redirect's ``status`` is never trusted; the kiosk has no redirect). Cashii documents no
webhooks, no refund or cancel call and no idempotency: a create whose answer was lost is never
sent again (a second one would be a second payment). Errors, all from :mod:`kiosk.errors`:

- :class:`ProviderUnavailable` — not delivered (connect error): nothing happened;
- :class:`ProviderAmbiguous` — sent, outcome unknown (timeout, reset, HTTP 5xx, 429);
- :class:`ProviderRefused` — Cashii said no (401, 404, 422 with a JSON body);
- :class:`ProviderProtocolError` — a reply that is not what the API documents.

Only the method, the path template, the outcome and the elapsed time are logged.
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

log = logging.getLogger("kiosk.providers.cashii")

PROVIDER: Final = "cashii"
PAYMENT_ID: Final = re.compile(r"[0-9]{16}")
STATUSES: Final = frozenset({"pending", "paid", "rejected", "canceled", "refunded"})
NOT_PAID: Final = frozenset({"rejected", "canceled", "refunded"})
"""Final states in which the customer's money is not (or no longer) with the kiosk's account."""


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    status: str
    amount: Money
    payer: str | None
    """``from``: the payer's account number, once paid."""


def _broken(message: str) -> ProviderProtocolError:
    return ProviderProtocolError(PROVIDER, message)


def parse_payment(doc: object) -> Payment:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise _broken("the reply has no data object")
    pid, status = data.get("id"), data.get("status")
    if not isinstance(pid, str) or not PAYMENT_ID.fullmatch(pid):
        raise _broken("a payment id is 16 digits")
    if not isinstance(status, str) or status not in STATUSES:
        raise _broken(f"unknown payment status {str(status)[:40]!r}")
    amount, currency = data.get("amount"), data.get("currency")
    if type(amount) is not int or not isinstance(currency, str):
        raise _broken("a payment's amount is an integer of minor units with a currency")
    try:
        money = Money.of(amount, currency)
    except MoneyError as exc:
        raise _broken(f"payment amount: {exc}") from exc
    payer = data.get("from")
    return Payment(pid, str(status), money, payer if isinstance(payer, str) else None)


class CashiiClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        timeout: httpx.Timeout,
        on_reply: Callable[[bool], None] | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._on_reply = on_reply or (lambda got_reply: None)

    async def create(
        self,
        amount: Money,
        note: str,
        *,
        metadata: Mapping[str, str],
        payable_to: str | None = None,
    ) -> str:
        """``POST /api/v1/remote-payments`` (201): the new payment's 16-digit id."""
        if amount.minor <= 0:
            raise ValueError("a payment amount is positive")
        body: dict[str, Any] = {
            "amount": amount.minor,
            "currency": amount.code,
            "note": note,
            "metadata": dict(metadata),
        }
        if payable_to is not None:
            body["payable_to"] = payable_to
        doc = await self._call("POST", "/api/v1/remote-payments", body, created=True)
        data = doc.get("data") if isinstance(doc, dict) else None
        pid = data.get("id") if isinstance(data, dict) else None
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = f"{pid:016d}"  # the docs show a string; a number is read exactly
        if not isinstance(pid, str) or not PAYMENT_ID.fullmatch(pid):
            raise _broken("create: no 16-digit payment id")
        return pid

    async def get(self, payment_id: str) -> Payment:
        """``GET /api/v1/remote-payments/{id}`` [INF path: the page is cut off before it]."""
        if not PAYMENT_ID.fullmatch(payment_id):
            raise ValueError("a Cashii payment id is 16 digits")
        payment = parse_payment(
            await self._call("GET", f"/api/v1/remote-payments/{payment_id}", None)
        )
        if payment.id != payment_id:
            raise _broken("get: another payment's id in the reply")
        return payment

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, created: bool = False
    ) -> Any:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        what = "create" if created else "get"
        started = time.monotonic()
        try:
            response = await self._http.request(
                method, self._base + path, content=raw, headers=headers, timeout=self._timeout
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
        status = response.status_code
        doc = _json(response.content)
        if status == (201 if created else 200) and isinstance(doc, dict):
            log.info("%s %s ok %dms", method, what, ms)
            return doc
        log.warning("%s %s HTTP %d %dms", method, what, status, ms)
        if status >= 500 or status == 429:
            raise ProviderAmbiguous(PROVIDER, f"{what}: HTTP {status}")
        if status in (400, 401, 403, 404, 409, 422) and isinstance(doc, dict):
            code, message = _error(doc, status)
            if status == 401:  # our API key refused (wrong, revoked or expired)
                raise ProviderAuthFailed(PROVIDER, message, code=code, signed=True)
            raise ProviderRefused(PROVIDER, message, code=code, signed=True)
        raise _broken(f"{what}: unexpected reply (HTTP {status})")


def _error(doc: dict[str, Any], status: int) -> tuple[str, str]:
    """The error body is not documented: ``{"error": {"code", "message"}}``, ``{"error": "…"}``
    or ``{"message": "…"}`` are read; the code falls back to the HTTP status."""
    err = doc.get("error")
    if isinstance(err, dict):
        return str(err.get("code") or status), str(err.get("message") or status)
    if isinstance(err, str):
        return err, str(doc.get("message") or err)
    return str(status), str(doc.get("message") or f"HTTP {status}")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
