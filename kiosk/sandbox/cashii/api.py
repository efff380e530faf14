"""Cashii sandbox: the Remote Payments API under ``/api/v1`` as documented (providers.md §4,
seed 003), written from Cashii's pages, not from any client. State: :mod:`.ledger`.

API (fault op names in brackets; every call needs ``Authorization: Bearer <key>`` of a
registered merchant [DOC])::

    POST /remote-payments [create]       Content-Type: application/json [DOC]
         {"amount": 10098, "currency": "SYP", "note": "…", "metadata": {…},
          "payable_to"?: "<account>"}
         → 201 {"data": {"id": "1234567890123456"}}                         [DOC]
    GET  /remote-payments/{id} [get]     [INF path: the docs' page stops at its heading]
         → 200 {"data": {"id", "amount", "currency", "note", "metadata", "status",
                "from"? (once paid), "to", "payable_to"? (when set), "created_at"}}

Nothing else: no webhooks, no cancel or refund API [DOC "not documented"], and no idempotency
[DOC: none is documented]: two identical creates make two payments. The user's payment page
(``https://cashii.app/payment?code={id}&redirect=…``) is not served.

Errors [INF: the docs give no format or codes]: ``{"error": {"code", "message"}}`` with
401 ``unauthenticated`` (no, malformed or unknown key; with ``WWW-Authenticate: Bearer``),
404 ``not_found`` (no such payment, another merchant's payment, a malformed id, an unknown
path), 405 ``method_not_allowed``, 415 ``unsupported_media_type`` (a create that is not
``application/json``) and 422 ``validation_error`` (a body that is not a JSON object, an unknown
or missing field, an amount that is not a positive integer, an unknown currency, a note empty
or over 255 characters, metadata that is not an object or over 4 KiB, a bad ``payable_to``).
The key is checked first, so a wrong key is 401 on any path under the prefix.

Hooks under ``/_sandbox/cashii`` (JSON, amounts in minor units, no authentication)::

    POST merchants   {"api_key", "account"}      a commercial account's API key; an account
                                                 may hold several keys, a key one account
    POST accounts    {"account", "balance", "currency"}   sets that currency's balance
                     → {"account", "balances": {currency: minor units}}
    GET  accounts/<account>
    GET  payments    (?status=paid)  → {"payments": [payment…]} in creation order
    GET  payments/<id>               the payment with ``created_at_ms``, ``updated_at_ms``
                                     and, when rejected for funds, ``reason``
    POST payments/<id>/pay     {"account"}   the customer pays in the app: pending → paid, or
                               → rejected when the balance is short; 409 if not pending or
                               ``payable_to`` names another account; 404 an unknown account
    POST payments/<id>/reject  pending → rejected      POST payments/<id>/cancel  → canceled
    POST payments/<id>/refund  paid → refunded, the amount back to the payer
    POST faults      {"op", "mode", "count"?, "delay_s"?} or {"clear": true}; ops create, get;
                     modes drop_response, error_500, delay, hold, http_429
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Final

from kiosk.sandbox.cashii.ledger import (
    ACCOUNT_RE,
    CURRENCIES,
    CashiiError,
    Ledger,
    StateError,
    check_create,
    dumps,
    loads,
)
from kiosk.sandbox.kit import (
    FaultMode,
    FaultPlan,
    HookError,
    Request,
    Response,
    SandboxClock,
    hook_json,
)

PREFIX: Final = "/api/v1"
OPS: Final = ("create", "get")
FAULT_MODES: Final = frozenset(
    {FaultMode.DROP_RESPONSE, FaultMode.ERROR_500, FaultMode.DELAY, FaultMode.HOLD}
    | {FaultMode.HTTP_429}
)
_COLLECTION: Final = "/remote-payments"
_ONE: Final = re.compile(r"/remote-payments/([^/]+)")
_ID: Final = re.compile(r"[0-9]{16}")
_HOOK_PAYMENT: Final = re.compile(r"/payments/([0-9]{16})(?:/(pay|reject|cancel|refund))?")
_BEARER: Final = re.compile(r"Bearer ([!-~]+)", re.IGNORECASE)  # [INF] scheme in any case


class CashiiSandbox:
    """Cashii's Remote Payments for the sandbox server (``name`` "cashii", prefix ``/api/v1``)."""

    name = "cashii"
    prefix = PREFIX

    def __init__(self, state_dir: Path, clock: SandboxClock) -> None:
        self.clock = clock
        self.faults = FaultPlan(OPS)
        self.ledger = Ledger(state_dir / "cashii.json", clock.now_ms)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.ledger.save()

    # --- the API -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        op, payment_id = _route(request)
        fault = self.faults.take(op) if op in OPS else None
        if fault is not None and fault.mode is FaultMode.ERROR_500:
            return Response.text("Internal Server Error", 500)  # no effect
        if fault is not None and fault.mode is FaultMode.HOLD:
            time.sleep(fault.delay_ms / 1000)  # the request lands late
        with self._lock:
            try:
                response = self._process(op, payment_id, request)
            except CashiiError as err:
                response = _refusal(err)
            self.ledger.save()
        return fault.apply(response) if fault is not None else response

    def _process(self, op: str, payment_id: str, request: Request) -> Response:
        merchant = self._authenticate(request)
        if op == "not_found":
            raise CashiiError(404, "not_found", f"no {request.method} {PREFIX}{request.path}")
        if op == "method_not_allowed":
            raise CashiiError(405, "method_not_allowed", f"{request.method} is not allowed here")
        if op == "get":
            if not _ID.fullmatch(payment_id):
                raise CashiiError(404, "not_found", "a remote payment id is 16 digits")
            return Response(200, dumps({"data": self.ledger.find(merchant, payment_id)}))
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise CashiiError(415, "unsupported_media_type", "Content-Type: application/json")
        try:
            doc = loads(request.body)
        except ValueError:
            raise CashiiError(422, "validation_error", "the body is not JSON") from None
        payment_id = self.ledger.create(merchant, check_create(doc))
        return Response(201, dumps({"data": {"id": payment_id}}))

    def _authenticate(self, request: Request) -> str:
        match = _BEARER.fullmatch(request.header("authorization") or "")
        account = self.ledger.merchant(match.group(1)) if match else None
        if account is None:
            raise CashiiError(401, "unauthenticated", "Authorization: Bearer <API key> is wrong")
        return account

    # --- hooks ---------------------------------------------------------------------------------

    def handle_hook(self, request: Request) -> Response:
        with self._lock:
            try:
                return Response.json(self._hook(request.method, request.path, request))
            finally:
                self.ledger.save()

    def _hook(self, method: str, path: str, request: Request) -> dict[str, Any]:
        ledger = self.ledger
        if (method, path) == ("POST", "/merchants"):
            return self._merchant_hook(hook_json(request))
        if (method, path) == ("POST", "/accounts"):
            return self._account_hook(hook_json(request))
        if method == "GET" and path.startswith("/accounts/"):
            account = urllib.parse.unquote(path.removeprefix("/accounts/"))
            if account not in ledger.accounts:
                raise HookError("no such account", 404)
            return _account_view(account, ledger.accounts[account])
        if (method, path) == ("GET", "/payments"):
            wanted = request.query.get("status")
            found = [p for p in ledger.payments.values() if wanted in (None, p["status"])]
            return {"payments": found}
        match = _HOOK_PAYMENT.fullmatch(path)
        if match is not None and (method == "GET") == (match.group(2) is None):
            payment = ledger.payments.get(match.group(1))
            if payment is None:
                raise HookError("no such payment", 404)
            try:
                return self._act(match.group(2), payment, request)
            except StateError as err:
                raise HookError(str(err), 409) from None
        if (method, path) == ("POST", "/faults"):
            doc = hook_json(request)
            if doc.get("clear") is True:
                self.faults.clear()
                return {"cleared": True}
            if doc.get("mode") not in {m.value for m in FAULT_MODES}:
                raise HookError(f"mode must be one of {sorted(m.value for m in FAULT_MODES)}")
            return self.faults.arm_from_hook(doc)
        raise HookError(f"no Cashii hook {method} {path}", 404)

    def _act(self, action: str | None, payment: dict[str, Any], request: Request) -> dict[str, Any]:
        ledger = self.ledger
        if action is None:
            return payment
        if action == "pay":
            account = hook_json(request).get("account")
            if not isinstance(account, str) or account not in ledger.accounts:
                raise HookError("account must name an account made by POST accounts", 404)
            return ledger.pay(payment, account)
        if action == "refund":
            return ledger.refund(payment)
        return ledger.end(payment, "rejected" if action == "reject" else "canceled")

    def _merchant_hook(self, doc: dict[str, object]) -> dict[str, Any]:
        api_key, account = doc.get("api_key"), doc.get("account")
        if not isinstance(api_key, str) or not re.fullmatch(r"[!-~]+", api_key):
            raise HookError("api_key must be a non-empty string of visible ASCII characters")
        account = _hook_account(account)
        owner = self.ledger.merchant(api_key)
        if owner is not None and owner != account:
            raise HookError(f"api_key already belongs to account {owner}", 409)
        self.ledger.merchants[api_key] = account
        self.ledger.accounts.setdefault(account, {})
        return {"api_key": api_key, "account": account}

    def _account_hook(self, doc: dict[str, object]) -> dict[str, Any]:
        account = _hook_account(doc.get("account"))
        balance, currency = doc.get("balance", 0), doc.get("currency")
        if type(balance) is not int or balance < 0:
            raise HookError("balance is an integer ≥ 0 in minor units")
        if currency not in CURRENCIES:
            raise HookError(f"currency must be one of {', '.join(sorted(CURRENCIES))}")
        assert isinstance(currency, str)
        balances = self.ledger.accounts.setdefault(account, {})
        balances[currency] = balance
        return _account_view(account, balances)


def _route(request: Request) -> tuple[str, str]:
    """(op, payment id): op is ``create``, ``get``, ``method_not_allowed`` or ``not_found``."""
    if request.path == _COLLECTION:
        return ("create" if request.method == "POST" else "method_not_allowed"), ""
    match = _ONE.fullmatch(request.path)
    if match is not None:
        op = "get" if request.method == "GET" else "method_not_allowed"
        return op, urllib.parse.unquote(match.group(1))
    return "not_found", ""


def _hook_account(value: object) -> str:
    if not isinstance(value, str) or not ACCOUNT_RE.fullmatch(value):
        raise HookError("account must be 1 to 64 of A-Z a-z 0-9 . _ -")
    return value


def _account_view(account: str, balances: dict[str, int]) -> dict[str, Any]:
    return {"account": account, "balances": dict(balances)}


def _refusal(err: CashiiError) -> Response:
    body = dumps({"error": {"code": err.code, "message": err.message}})
    headers = (("WWW-Authenticate", 'Bearer realm="cashii"'),) if err.status == 401 else ()
    return Response(err.status, body, headers=headers)
