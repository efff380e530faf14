"""Rapyd POS sandbox: the POS API under ``/v1/pos`` as documented (providers.md §3, seed 002),
written from Rapyd's pages, not from any client. State: :mod:`kiosk.sandbox.rapyd.ledger`.

API (fault op names in brackets; every call needs ``access_key`` of a registered POS)::

    GET  /echo [echo]                                   status only
    POST /login/{pos_id}/{otp_code} [login]             phone_number
         → {token_id, operation_id, accounts: [{account_id, account_currency, account_alias,
            account_balance, account_currency_symbol}]}
    POST /withdraw/{account}/{sum} [withdraw]           token_id, operation_id, phone_number
         → {transaction_id}
    POST /deposit/{amount}/{currency} [deposit]         same; body {"metadata": {...}}?
         → {transaction_id, metadata}     (creates the account the wallet lacks)
    POST /reversal/{account}/{reversed_amount} [reversal]   token_id, operation_id,
         transaction_id (the withdrawal's) → {transaction_id: "", operation_id}
    POST /logout [logout]                               token_id, operation_id; status only

Envelope: ``{"status": {"error_code": "0", "status": "SUCCESS", "message": "", "operation_id"},
"data": {...}}``; a refusal has only ``status`` (``error_code`` = ``response_code`` =
``ERROR_…``, ``status`` "ERROR"), HTTP 400, or 401 ``ERROR_UNAUTHORIZED`` for authentication
(unknown ``access_key``, a login for another POS's ``pos_id``, a bad signature).

Signatures (§3.4): ``salt``, ``timestamp`` and ``signature`` are optional [INF], but when any
is present all three are required and verified: ``base64(hex(HMAC-SHA256(secret_key,
lower(method) + url_path + salt + timestamp + access_key + secret_key + body)))``, url_path
from ``/v1`` with ``?query``, body the raw request body ("" when empty), which must then be
compact JSON [DOC]; ``timestamp`` unix seconds within 60 s of the sandbox clock (either
side [INF]); ``salt`` 8 to 16 characters.

``idempotency`` [INF semantics]: a success is stored under (POS, idempotency, method, path);
a repeat returns it byte for byte without acting again. It is looked up after authentication
but before any session check, so a replay after logout still answers the first time's reply.
Refusals are not stored: a repeat of a refused call acts (and is judged) afresh.

Hooks under ``/_sandbox/rapyd`` (JSON, amounts in minor units, no authentication)::

    POST pos          {"pos_id", "access_key", "secret_key"}
    POST wallets      {"phone_number", "accounts": [{"currency", "balance"}]}
                      → {"phone_number", "accounts": [{"account_id", "currency", "balance"}]}
    POST otps         {"phone_number"} → {"otp": 6 digits, "expires_at_ms"}  (the wallet app)
    POST otps/expire  {"otp"}                          the OTP expires now
    GET  wallets/<phone_number>  (+ URL-encoded or not)   GET transactions/<transaction_id>
    GET  sessions     → {"unclosed": [session…], "closed": n}
    POST faults       {"op", "mode", "count"?, "delay_s"?} or {"clear": true}; ops as above

Other [INF] choices: a second Deposit/Withdraw in a session is ``ERROR_SESSION_CLOSED``; a
session never times out, it stays unclosed until logout; a reversal needs its session open
(not yet logged out), may be partial and repeated up to the amount withdrawn; a second logout
is ``ERROR_SESSION_CLOSED``; a POST whose docs list ``Content-Type`` (login, withdraw,
deposit, logout) needs ``application/json`` (``ERROR_INVALID_CONTENT_TYPE``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kiosk.sandbox.kit import (
    FaultMode,
    FaultPlan,
    HookError,
    Request,
    Response,
    SandboxClock,
    hook_json,
)
from kiosk.sandbox.rapyd.ledger import (
    Ledger,
    RapydError,
    check_currency,
    check_phone,
    dumps,
    loads,
)

PREFIX: Final = "/v1/pos"
OPS: Final = ("echo", "login", "withdraw", "deposit", "reversal", "logout")
TIMESTAMP_WINDOW_S: Final = 60  # [DOC] "within 60 seconds"
_SEG: Final = r"([^/]+)"
_ROUTES: Final = (
    ("GET", re.compile(r"/echo"), "echo"),
    ("POST", re.compile(rf"/login/{_SEG}/{_SEG}"), "login"),
    ("POST", re.compile(rf"/withdraw/{_SEG}/{_SEG}"), "withdraw"),
    ("POST", re.compile(rf"/deposit/{_SEG}/{_SEG}"), "deposit"),
    ("POST", re.compile(rf"/reversal/{_SEG}/{_SEG}"), "reversal"),
    ("POST", re.compile(r"/logout"), "logout"),
)
_NEEDS_JSON: Final = frozenset({"login", "withdraw", "deposit", "logout"})


@dataclass(frozen=True, slots=True)
class _Call:
    op: str
    args: tuple[str, ...]
    request: Request
    pos_id: str
    operation_id: str  # this reply's own status.operation_id


class RapydSandbox:
    """Rapyd POS for the sandbox server (``name`` "rapyd", prefix ``/v1/pos``)."""

    name = "rapyd"
    prefix = PREFIX

    def __init__(self, state_dir: Path, clock: SandboxClock) -> None:
        self.clock = clock
        self.faults = FaultPlan(OPS)
        self.ledger = Ledger(state_dir / "rapyd.json", clock.now_ms)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.ledger.save()

    # --- the API -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        routed = _route(request)
        if routed is None:
            return _refusal(RapydError("ERROR_NOT_FOUND", "no such POS method", 404))  # [INF]
        op, args = routed
        fault = self.faults.take(op)
        if fault is not None and fault.mode is FaultMode.ERROR_500:
            return Response.text("Internal Server Error", 500)  # no effect
        if fault is not None and fault.mode is FaultMode.HOLD:
            time.sleep(fault.delay_ms / 1000)  # the request lands late
        with self._lock:
            try:
                response = self._process(op, args, request)
            except RapydError as err:
                response = _refusal(err)
            self.ledger.save()
        return fault.apply(response) if fault is not None else response

    def _process(self, op: str, args: tuple[str, ...], request: Request) -> Response:
        pos_id, access_key = self._authenticate(request)
        key = request.header("idempotency")
        replay_key = f"{access_key}\n{key}\n{request.method} {request.path}" if key else None
        if replay_key is not None and replay_key in self.ledger.replies:
            stored = self.ledger.replies[replay_key]
            return Response(int(stored["http"]), stored["body"].encode())
        if op in _NEEDS_JSON:
            content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise RapydError("ERROR_INVALID_CONTENT_TYPE", "Content-Type: application/json")
        call = _Call(op, args, request, pos_id, str(uuid.uuid4()))
        data = self._dispatch(call)
        status = {"error_code": "0", "status": "SUCCESS", "message": "", "operation_id": ""}
        status["operation_id"] = call.operation_id
        reply: dict[str, Any] = {"status": status}
        if data is not None:
            reply["data"] = data
        body = dumps(reply)
        if replay_key is not None:
            self.ledger.replies[replay_key] = {"http": 200, "body": body.decode()}
        return Response(200, body)

    def _authenticate(self, request: Request) -> tuple[str, str]:
        access_key = request.header("access_key") or ""
        found = self.ledger.pos_by_access_key(access_key) if access_key else None
        if found is None:
            raise RapydError("ERROR_UNAUTHORIZED", "unknown access_key", 401)
        pos_id, keys = found
        salt, ts, signature = (request.header(h) for h in ("salt", "timestamp", "signature"))
        if salt is None and ts is None and signature is None:
            return pos_id, access_key  # [INF] the POS docs name no signature headers
        if salt is None or ts is None or signature is None:
            raise RapydError("ERROR_UNAUTHORIZED", "salt, timestamp and signature go together", 401)
        if not 8 <= len(salt) <= 16:
            raise RapydError("ERROR_UNAUTHORIZED", "salt must be 8 to 16 characters", 401)
        if not ts.isdigit() or abs(int(ts) - self.clock.now_ms() // 1000) > TIMESTAMP_WINDOW_S:
            raise RapydError("ERROR_UNAUTHORIZED", "timestamp is not within 60 s of now", 401)
        body = request.body.decode("utf-8", errors="replace")
        if body and not _compact(body):
            raise RapydError("ERROR_UNAUTHORIZED", "a signed body must be compact JSON", 401)
        url_path, secret = self._url_path(request), keys["secret_key"]
        expected = sign(request.method, url_path, salt, ts, access_key, secret, body)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise RapydError("ERROR_UNAUTHORIZED", "the signature does not verify", 401)
        return pos_id, access_key

    @staticmethod
    def _url_path(request: Request) -> str:
        path = PREFIX + request.path
        return path + "?" + urllib.parse.urlencode(request.query) if request.query else path

    def _dispatch(self, call: _Call) -> dict[str, Any] | None:
        request, ledger = call.request, self.ledger
        if call.op == "echo":
            return None
        if call.op == "login":
            pos_id, otp = (urllib.parse.unquote(a) for a in call.args)
            if pos_id != call.pos_id:
                raise RapydError("ERROR_UNAUTHORIZED", "pos_id is not this access_key's", 401)
            return ledger.login(pos_id, otp, check_phone(request.header("phone_number")))
        session = ledger.session(
            call.pos_id,
            request.header("token_id"),
            request.header("operation_id"),
            request.header("phone_number"),
            need_phone=call.op in ("withdraw", "deposit"),
        )
        first, second = (urllib.parse.unquote(a) for a in call.args) if call.args else ("", "")
        if call.op == "withdraw":
            return ledger.withdraw(session, first, second)
        if call.op == "deposit":
            return ledger.deposit(session, first, check_currency(second), _metadata(request))
        if call.op == "reversal":
            tx = request.header("transaction_id")
            return ledger.reversal(session, first, second, tx, call.operation_id)
        ledger.logout(session)
        return None

    # --- hooks ---------------------------------------------------------------------------------

    def handle_hook(self, request: Request) -> Response:
        method, path = request.method, request.path
        with self._lock:
            try:
                return Response.json(self._hook(method, path, request))
            finally:
                self.ledger.save()

    def _hook(self, method: str, path: str, request: Request) -> dict[str, Any]:
        ledger = self.ledger
        if (method, path) == ("POST", "/pos"):
            return self._pos_hook(hook_json(request))
        if (method, path) == ("POST", "/wallets"):
            return self._wallet_hook(hook_json(request))
        if (method, path) == ("POST", "/otps"):
            phone = _hook_phone(hook_json(request).get("phone_number"))
            if phone not in ledger.wallets:
                raise HookError("no wallet for this phone number; POST wallets first", 404)
            return ledger.issue_otp(phone)
        if (method, path) == ("POST", "/otps/expire"):
            otp = ledger.otps.get(str(hook_json(request).get("otp")))
            if otp is None:
                raise HookError("no such otp", 404)
            otp["expires_at_ms"] = min(otp["expires_at_ms"], ledger.now_ms())
            return {"expired": True}
        if method == "GET" and path.startswith("/wallets/"):
            phone = urllib.parse.unquote(path.removeprefix("/wallets/"))
            if phone not in ledger.wallets:
                raise HookError("no such wallet", 404)
            return _wallet_view(phone, ledger.wallets[phone])
        if method == "GET" and path.startswith("/transactions/"):
            tx = ledger.txs.get(urllib.parse.unquote(path.removeprefix("/transactions/")))
            if tx is None:
                raise HookError("no such transaction", 404)
            return tx
        if (method, path) == ("GET", "/sessions"):
            unclosed = [s for s in ledger.sessions.values() if s["closed_at_ms"] is None]
            return {"unclosed": unclosed, "closed": len(ledger.sessions) - len(unclosed)}
        if (method, path) == ("POST", "/faults"):
            doc = hook_json(request)
            if doc.get("clear") is True:
                self.faults.clear()
                return {"cleared": True}
            return self.faults.arm_from_hook(doc)
        raise HookError(f"no Rapyd hook {method} {path}", 404)

    def _pos_hook(self, doc: dict[str, object]) -> dict[str, Any]:
        pos_id, access, secret = (doc.get(k) for k in ("pos_id", "access_key", "secret_key"))
        if not all(isinstance(v, str) and v for v in (pos_id, access, secret)):
            raise HookError("expected non-empty strings pos_id, access_key, secret_key")
        assert isinstance(pos_id, str) and isinstance(access, str) and isinstance(secret, str)
        taken = self.ledger.pos_by_access_key(access)
        if taken is not None and taken[0] != pos_id:
            raise HookError(f"access_key already belongs to POS {taken[0]}", 409)
        self.ledger.pos[pos_id] = {"access_key": access, "secret_key": secret}
        return {"pos_id": pos_id}

    def _wallet_hook(self, doc: dict[str, object]) -> dict[str, Any]:
        phone = _hook_phone(doc.get("phone_number"))
        accounts = doc.get("accounts", [])
        if not isinstance(accounts, list):
            raise HookError("accounts must be a list of {currency, balance}")
        balances: list[tuple[str, int]] = []
        for account in accounts:
            code = account.get("currency") if isinstance(account, dict) else None
            balance = account.get("balance", 0) if isinstance(account, dict) else None
            if type(balance) is not int or balance < 0:
                raise HookError("an account's balance is an integer ≥ 0 in minor units")
            try:
                balances.append((check_currency(str(code)), balance))
            except RapydError as err:
                raise HookError(err.message) from None
        return _wallet_view(phone, self.ledger.set_wallet(phone, balances))


def sign(
    method: str, url_path: str, salt: str, timestamp: str, access_key: str, secret: str, body: str
) -> str:
    """Rapyd's request signature (``request-signatures`` page): base64 of the hex digest."""
    message = method.lower() + url_path + salt + timestamp + access_key + secret + body
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def _route(request: Request) -> tuple[str, tuple[str, ...]] | None:
    for method, pattern, op in _ROUTES:
        match = pattern.fullmatch(request.path)
        if match is not None and request.method == method:
            return op, match.groups()
    return None


def _compact(body: str) -> bool:
    try:
        doc = loads(body)
    except ValueError:
        return False
    return body in (dumps(doc).decode(), dumps(doc, ascii_only=True).decode())


def _metadata(request: Request) -> dict[str, Any]:
    """The optional deposit body ``{"metadata": {...}}``; ``{}`` when absent [INF]."""
    if not request.body.strip():
        return {}
    try:
        doc = loads(request.body)
    except ValueError:
        raise RapydError("ERROR_INVALID_BODY", "the body is not JSON") from None  # [INF] code
    metadata = doc.get("metadata", {}) if isinstance(doc, dict) else None
    if not isinstance(metadata, dict):
        raise RapydError("ERROR_INVALID_BODY", "metadata must be a JSON object")
    return metadata


def _hook_phone(value: object) -> str:
    try:
        return check_phone(value if isinstance(value, str) else None)
    except RapydError as err:
        raise HookError(err.message) from None


def _wallet_view(phone: str, accounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"phone_number": phone, "accounts": [dict(a) for a in accounts]}


def _refusal(err: RapydError) -> Response:
    status = {
        "error_code": err.code,
        "status": "ERROR",
        "message": err.message,
        "response_code": err.code,
        "operation_id": str(uuid.uuid4()),
    }
    return Response(err.http, dumps({"status": status}))
