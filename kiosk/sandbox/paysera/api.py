"""Paysera Wallet sandbox: the transaction API as documented (providers.md §2), under
``/rest/v1``, for the kiosk's Paysera journeys, the demo and the tests.

Every request's MAC is checked as Paysera does (:mod:`kiosk.providers.paysera.mac`): an unknown
client, a wrong MAC, a body that does not match its ``body_hash``, a ``ts`` more than 5 minutes
from the sandbox clock, or a nonce used before is refused with 401 ``unauthorized``. The state
machine (§2.4) is enforced with 409 ``invalid_state``. State is in memory, kept in
``paysera.json`` under the sandbox's directory.

API (fault op names in brackets)::

    POST   /transaction [create]              GET /transaction/{key} [get]
    PUT    /transaction/{key}/reserve [reserve]     {"code": 28 digits}
    PUT    /transaction/{key}/reserve/{wallet} [reserve_wallet]   (needs the allowance)
    PUT    /transaction/{key}/confirm [confirm]     DELETE /transaction/{key} [revoke]
    GET    /server                                  the server time, no authentication [INF path]

Hooks under ``/_sandbox/paysera`` (JSON, amounts in minor units)::

    POST clients   {"client_id", "mac_key"}                the kiosk's API client
    POST wallets   {"currency", "balance"}                 → {"wallet_id", "evp"}
    POST codes     {"wallet_id", "expires_s"?: 600}        → {"code"}: a reservation code
    POST codes/expire {"code"}                             the code expires now
    GET  wallets/<id>     GET transactions/<key>
    POST faults    as PayBy's; ops: create reserve reserve_wallet confirm revoke get

Marked [INF]: behaviour Paysera does not document (the error for a wrong or expired code:
``invalid_parameters`` with a description; a reservation past ``reserve_for``: ``failed``).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Final

from kiosk.providers.paysera.mac import parse_header, verify
from kiosk.sandbox.kit import (
    FaultMode,
    FaultPlan,
    HookError,
    Request,
    Response,
    SandboxClock,
    hook_json,
)

PREFIX: Final = "/rest/v1"
OPS: Final = ("create", "reserve", "reserve_wallet", "confirm", "revoke", "get")
TS_WINDOW_S: Final = 300  # [INF] Paysera publishes no tolerance
RESERVABLE: Final = frozenset({"new", "waiting"})
REVOCABLE: Final = frozenset(
    {"new", "waiting", "waiting_funds", "waiting_registration", "waiting_password", "reserved"}
)
_TX_PATH: Final = re.compile(r"/transaction/([A-Za-z0-9]+)(/reserve(?:/(\d+))?|/confirm)?")


class _Error(Exception):
    def __init__(self, status: int, code: str, description: str = "") -> None:
        self.status, self.code, self.description = status, code, description


class PayseraSandbox:
    name = "paysera"
    prefix = PREFIX

    def __init__(self, state_dir: Path, clock: SandboxClock) -> None:
        self.clock = clock
        self.faults = FaultPlan(OPS)
        self._path = state_dir / "paysera.json"
        self._lock = threading.Lock()
        self._nonces: set[tuple[str, str]] = set()
        state: dict[str, Any] = {}
        if self._path.exists():
            state = json.loads(self._path.read_text())
        self.clients: dict[str, str] = state.get("clients", {})
        self.wallets: dict[str, dict[str, Any]] = state.get("wallets", {})
        self.codes: dict[str, dict[str, Any]] = state.get("codes", {})
        self.txs: dict[str, dict[str, Any]] = state.get("txs", {})

    def close(self) -> None:
        self._save()

    def _save(self) -> None:
        doc = {"clients": self.clients, "wallets": self.wallets, "codes": self.codes}
        self._path.write_text(json.dumps({**doc, "txs": self.txs}))

    def _now_s(self) -> int:
        return self.clock.now_ms() // 1000

    # --- the API -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if (request.method, request.path) == ("GET", "/server"):
            return Response.json({"time": self._now_s()})
        match = _TX_PATH.fullmatch(request.path)
        op = _op(request.method, request.path, match)
        if op is None:
            return _error(404, "not_found", "no such API")
        fault = self.faults.take(op)
        if fault is not None and fault.mode is FaultMode.ERROR_500:
            return Response.text("Internal Server Error", 500)
        try:
            with self._lock:
                self._authenticate(request)
                doc = self._dispatch(op, request, match)
                self._save()
            response = Response.json(doc)
        except _Error as err:
            response = _error(err.status, err.code, err.description)
        return fault.apply(response) if fault is not None else response

    def _authenticate(self, request: Request) -> None:
        try:
            h = parse_header(request.header("authorization") or "")
        except ValueError as exc:
            raise _Error(401, "unauthorized", str(exc)) from None
        key = self.clients.get(h.client_id)
        host, _, port = (request.header("host") or "").partition(":")
        uri = PREFIX + request.path
        if request.query:
            uri += "?" + urllib.parse.urlencode(request.query)
        if key is None or not verify(
            key, h, request.method, uri, host, int(port or 80), request.body
        ):
            raise _Error(401, "unauthorized", "the MAC does not verify")
        if abs(h.ts - self._now_s()) > TS_WINDOW_S:
            raise _Error(401, "unauthorized", "ts is too far from the server time")
        if (h.client_id, h.nonce) in self._nonces:
            raise _Error(401, "unauthorized", "nonce already used")
        self._nonces.add((h.client_id, h.nonce))

    def _dispatch(self, op: str, request: Request, match: re.Match[str] | None) -> Any:
        if op == "create":
            return self._create(_body(request))
        assert match is not None
        tx = self.txs.get(match.group(1))
        if tx is None:
            raise _Error(404, "not_found", "no such transaction")
        self._expire(tx)
        if op == "get":
            return tx
        if op == "reserve":
            return self._reserve_code(tx, _body(request))
        if op == "reserve_wallet":
            return self._reserve_wallet(tx, match.group(3))
        if op == "confirm":
            return self._confirm(tx)
        return self._revoke(tx)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        payments = body.get("payments")
        if not isinstance(payments, list) or not payments:
            raise _Error(400, "invalid_parameters", "payments are required")
        if "reserve_for" in body and "reserve_until" in body:
            raise _Error(400, "invalid_parameters", "reserve_for or reserve_until, not both")
        out = []
        for n, p in enumerate(payments, start=1):
            price, currency = (p.get("price"), p.get("currency")) if isinstance(p, dict) else (0, 0)
            if type(price) is not int or price <= 0 or not isinstance(currency, str):
                raise _Error(400, "invalid_parameters", "a payment needs an integer price")
            out.append(
                {
                    "id": n,
                    "status": "new",
                    "price": price,
                    "currency": currency,
                    "description": str(p.get("description", "")),
                }
            )
        key = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        now = self._now_s()
        tx: dict[str, Any] = {
            "transaction_key": key,
            "created_at": now,
            "status": "new",
            "payments": out,
        }
        if type(body.get("reserve_for")) is int:
            tx["reserve"] = {"for": body["reserve_for"]}
        if isinstance(body.get("allowance"), dict):
            tx["allowance"] = body["allowance"]
        self.txs[key] = tx
        return tx

    def _reserve_code(self, tx: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        if tx["status"] not in RESERVABLE:
            raise _Error(409, "invalid_state", f"cannot reserve a {tx['status']} transaction")
        code = self.codes.get(str(body.get("code", "")))
        if code is None:
            raise _Error(400, "invalid_parameters", "unknown reservation code")  # [INF]
        if code["expires_at"] <= self._now_s() or code.get("used"):
            raise _Error(400, "invalid_parameters", "the reservation code has expired")  # [INF]
        wallet = self.wallets[str(code["wallet_id"])]
        if wallet["balance"] - wallet.get("held", 0) < _total(tx):
            raise _Error(400, "not_enough_funds", "the wallet cannot cover the transaction")
        code["used"] = True
        wallet["held"] = wallet.get("held", 0) + _total(tx)
        return self._reserved(tx, "reservation_code", int(code["wallet_id"]))

    def _reserve_wallet(self, tx: dict[str, Any], wallet_id: str | None) -> dict[str, Any]:
        if tx["status"] not in RESERVABLE:
            raise _Error(409, "invalid_state", f"cannot reserve a {tx['status']} transaction")
        if "allowance" not in tx:
            raise _Error(400, "invalid_request", "no allowance on this transaction")
        if wallet_id is None or wallet_id not in self.wallets:
            raise _Error(404, "not_found", "no such wallet")
        return self._reserved(tx, "automatic", int(wallet_id))

    def _reserved(self, tx: dict[str, Any], kind: str, wallet: int) -> dict[str, Any]:
        tx.update(status="reserved", type=kind, wallet=wallet, reserved_at=self._now_s())
        for p in tx["payments"]:
            p["status"] = "reserved"
        return tx

    def _confirm(self, tx: dict[str, Any]) -> dict[str, Any]:
        if tx["status"] != "reserved":
            raise _Error(409, "invalid_state", f"cannot confirm a {tx['status']} transaction")
        wallet = self.wallets[str(tx["wallet"])]
        if tx["type"] == "reservation_code":  # cash-out: the customer's wallet pays
            wallet["held"] -= _total(tx)
            wallet["balance"] -= _total(tx)
        else:  # cash-in through the allowance: the customer's wallet receives
            wallet["balance"] += _total(tx)
        tx.update(status="confirmed", confirmed_at=self._now_s())
        for p in tx["payments"]:
            p["status"] = "confirmed"
        return tx

    def _revoke(self, tx: dict[str, Any]) -> dict[str, Any]:
        if tx["status"] not in REVOCABLE:
            raise _Error(409, "invalid_state", f"cannot revoke a {tx['status']} transaction")
        self._release(tx)
        tx["status"] = "revoked"
        for p in tx["payments"]:
            p["status"] = "revoked"
        return tx

    def _expire(self, tx: dict[str, Any]) -> None:
        """[INF] a transaction still new or reserved past its ``reserve_for`` fails."""
        window = tx.get("reserve", {}).get("for")
        live = tx["status"] in ("new", "reserved") and window is not None
        if live and self._now_s() > tx["created_at"] + int(window):
            self._release(tx)
            tx["status"] = "failed"

    def _release(self, tx: dict[str, Any]) -> None:
        if tx["status"] == "reserved" and tx.get("type") == "reservation_code":
            self.wallets[str(tx["wallet"])]["held"] -= _total(tx)

    # --- hooks ---------------------------------------------------------------------------------

    def handle_hook(self, request: Request) -> Response:
        method, path = request.method, request.path
        with self._lock:
            try:
                if (method, path) == ("POST", "/clients"):
                    return Response.json(self._client_hook(hook_json(request)))
                if (method, path) == ("POST", "/wallets"):
                    return Response.json(self._wallet_hook(hook_json(request)))
                if (method, path) == ("POST", "/codes"):
                    return Response.json(self._code_hook(hook_json(request)))
                if (method, path) == ("POST", "/codes/expire"):
                    code = self.codes.get(str(hook_json(request).get("code")))
                    if code is None:
                        raise HookError("no such code", 404)
                    code["expires_at"] = self._now_s()
                    return Response.json({"expired": True})
                if method == "GET" and path.startswith("/wallets/"):
                    wallet = self.wallets.get(path.removeprefix("/wallets/"))
                    if wallet is None:
                        raise HookError("no such wallet", 404)
                    return Response.json(wallet)
                if method == "GET" and path.startswith("/transactions/"):
                    tx = self.txs.get(path.removeprefix("/transactions/"))
                    if tx is None:
                        raise HookError("no such transaction", 404)
                    return Response.json(tx)
                if (method, path) == ("POST", "/faults"):
                    doc = hook_json(request)
                    if doc.get("clear") is True:
                        self.faults.clear()
                        return Response.json({"cleared": True})
                    return Response.json(self.faults.arm_from_hook(doc))
            finally:
                self._save()
        raise HookError(f"no Paysera hook {method} {path}", status=404)

    def _client_hook(self, doc: dict[str, object]) -> dict[str, object]:
        client, key = doc.get("client_id"), doc.get("mac_key")
        if not isinstance(client, str) or not isinstance(key, str) or len(key) < 16:
            raise HookError("expected client_id and a mac_key of 16 characters or more")
        self.clients[client] = key
        return {"client_id": client}

    def _wallet_hook(self, doc: dict[str, object]) -> dict[str, object]:
        balance, currency = doc.get("balance", 0), doc.get("currency", "EUR")
        if type(balance) is not int or balance < 0 or not isinstance(currency, str):
            raise HookError("expected an integer balance (minor units) and a currency")
        wallet_id = str(14471 + len(self.wallets))
        self.wallets[wallet_id] = {"currency": currency, "balance": balance, "held": 0}
        return {"wallet_id": int(wallet_id), "evp": f"EVP{int(wallet_id):012d}"}

    def _code_hook(self, doc: dict[str, object]) -> dict[str, object]:
        wallet_id, expires = str(doc.get("wallet_id")), doc.get("expires_s", 600)
        if wallet_id not in self.wallets or type(expires) is not int:
            raise HookError("expected an existing wallet_id and an integer expires_s")
        code = "".join(secrets.choice("0123456789") for _ in range(28))
        self.codes[code] = {"wallet_id": int(wallet_id), "expires_at": self._now_s() + expires}
        return {"code": code}


def _op(method: str, path: str, match: re.Match[str] | None) -> str | None:
    if (method, path) == ("POST", "/transaction"):
        return "create"
    if match is None:
        return None
    tail = match.group(2) or ""
    if method == "GET" and not tail:
        return "get"
    if method == "DELETE" and not tail:
        return "revoke"
    if method == "PUT" and tail == "/confirm":
        return "confirm"
    if method == "PUT" and tail.startswith("/reserve"):
        return "reserve_wallet" if match.group(3) else "reserve"
    return None


def _body(request: Request) -> dict[str, Any]:
    try:
        doc = json.loads(request.body or b"{}")
    except ValueError:
        raise _Error(400, "invalid_request", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise _Error(400, "invalid_request", "the body is not an object")
    return doc


def _total(tx: dict[str, Any]) -> int:
    return sum(int(p["price"]) for p in tx["payments"])


def _error(status: int, code: str, description: str) -> Response:
    body: dict[str, str] = {"error": code}
    if description:
        body["error_description"] = description
    return Response.json(body, status)
