"""PayBy sandbox: the SGS acquiring API as documented (providers.md §1) over a SQLite ledger.

State lives in ``state_dir``: ``payby.db`` (merchants, wallets, orders, refunds, notification
rows) and PayBy's own RSA pair (``payby_private_key.pem``, ``payby_public_key.pem``), made on
first start. Every reply is signed with that key; every request must be signed with the key
registered for its ``Partner-Id``. Time is the :class:`~kiosk.sandbox.server.SandboxClock`;
expiry and settlement happen lazily when an order is next touched.

API under ``/sgs/api`` (fault op names in brackets)::

    /acquire2/placeOrder [placeOrder]     /acquire2/refund/placeOrder [refund]
    /acquire2/cancelOrder [cancelOrder]   /crypto/refund/placeOrder   [refund]  (BUSD, seed 004)
    /acquire2/revokeOrder [revokeOrder]   /acquire2/refund/getOrder   [getRefund]
    /acquire2/getOrder [getOrder]         /member/getBalance          [getBalance]
    /acquire2/cashTopUp/resolveToken [resolveToken]   NOT in PayBy's public API
    /acquire2/cashTopUp/payOrder [payOrder]           NOT in PayBy's public API

Hooks under ``/_sandbox/payby`` (JSON, amounts as strings, no signatures)::

    POST merchants      {"partnerId", "publicKeyPem", "balance"?: {"currency", "amount"}}
    POST orders         {"amount", "currency", "subject"?, "merchantOrderNo"?}  (online merchant)
    GET  orders/<orderNo>      GET balance/<partnerId>      GET public-key (PEM text)
    POST faults         {"op", "mode": drop_response|error_500|delay, "count"?, "delay_s"?}
                        or {"clear": true}
    GET  notifications  the notification rows (never sent: no outbound HTTP)

Marked [INF]: behaviour PayBy does not document; chosen here and configurable where cheap.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Final

from kiosk.errors import MoneyError
from kiosk.money import Money
from kiosk.providers.payby import DEFAULT_PAY_ORDER_PATH, DEFAULT_RESOLVE_TOKEN_PATH
from kiosk.providers.payby_wire import (
    Signer,
    Verifier,
    dumps,
    generate_key_pair,
    loads,
    unsigned_tolerated,
)
from kiosk.sandbox.server import (
    FaultMode,
    FaultPlan,
    HookError,
    Request,
    Response,
    SandboxClock,
    hook_json,
)

ONLINE_MERCHANT_ID: Final = "200009990001"  # [INF] the built-in online merchant (hook orders)
INSUFFICIENT_BALANCE: Final = "62099"  # [INF] not in PayBy's docs: store wallet too low to pay
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS

OPS: Final = {
    "/acquire2/placeOrder": "placeOrder",
    "/acquire2/cancelOrder": "cancelOrder",
    "/acquire2/revokeOrder": "revokeOrder",
    "/acquire2/getOrder": "getOrder",
    "/acquire2/refund/placeOrder": "refund",
    "/crypto/refund/placeOrder": "refund",
    "/acquire2/refund/getOrder": "getRefund",
    "/member/getBalance": "getBalance",
    DEFAULT_RESOLVE_TOKEN_PATH: "resolveToken",
    DEFAULT_PAY_ORDER_PATH: "payOrder",
}

MESSAGES: Final = {
    "400": "INVALID_PARAMETER",
    "403": "UNAUTHORIZED",
    "62001": "ORDER_PAID",
    "62002": "ORDER_FAILURE",
    "62003": "ORDER_SETTLED",
    "62004": "MERCHANT_ORDER_NO_NOT_EXIST",
    "62006": "REFUND_AMOUNT_EXCEEDED",
    "62007": "REFUND_MERCHANT_ORDER_NO_NOT_EXIST",
    "62008": "EXPIREDTIME_LESS_THAN_REQUESTTIME",
    "62009": "EXPIREDTIME_TOO_LATER",
    "62012": "PAYSCENECODE_ILLEGAL",
    "62015": "ORDER_NOT_PAID",
    "62016": "MERCHANT_ORDER_NO_EXIST",
    "62017": "REFUND_MERCHANT_ORDER_NO_EXIST",
    "62020": "PAYERMID_PAYEEMID_ARE_SAME",
    "62035": "ORDER_NO_NOT_EXIST",
    "62040": "ACQUIRE_ORDER_REVOKED",
    "62041": "ACQUIRE_ORDER_REFUNDED",
    "62043": "MISSING_BUSINESS_TYPE",
    "62044": "INVALID_BUSINESS_TYPE",
    "62045": "REFUND_REJECTED",
    "62082": "TOKEN_URL_NOT_EXIST",
    "62086": "INVALID_PAYEEMID",
    "78001": "CURRENCY_CODE_NOT_SUPPORTED",
    INSUFFICIENT_BALANCE: "STORE_BALANCE_INSUFFICIENT",
}

_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARTNER_RE: Final = re.compile(r"[A-Za-z0-9]{1,12}")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS merchants (partner_id TEXT PRIMARY KEY, public_key_pem TEXT);
CREATE TABLE IF NOT EXISTS balances (
    partner_id TEXT NOT NULL, currency TEXT NOT NULL, minor INTEGER NOT NULL,
    PRIMARY KEY (partner_id, currency));
CREATE TABLE IF NOT EXISTS orders (
    order_no TEXT PRIMARY KEY, payee_mid TEXT NOT NULL, merchant_order_no TEXT NOT NULL,
    params TEXT NOT NULL, request_time INTEGER NOT NULL, subject TEXT NOT NULL,
    currency TEXT NOT NULL, total_minor INTEGER NOT NULL, pay_scene_params TEXT NOT NULL,
    expired_time INTEGER NOT NULL, notify_url TEXT, device_id TEXT, reserved TEXT,
    token_url TEXT NOT NULL UNIQUE, token_expires INTEGER NOT NULL,
    status TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, fail_code TEXT, fail_des TEXT,
    paid_time INTEGER, payer_mid TEXT, store_payment_no TEXT, pay_device_id TEXT,
    UNIQUE (payee_mid, merchant_order_no), UNIQUE (payer_mid, store_payment_no));
CREATE TABLE IF NOT EXISTS refunds (
    order_no TEXT PRIMARY KEY, partner_id TEXT NOT NULL, refund_merchant_order_no TEXT NOT NULL,
    origin_order_no TEXT NOT NULL, origin_merchant_order_no TEXT NOT NULL, params TEXT NOT NULL,
    currency TEXT NOT NULL, amount_minor INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, operator_name TEXT, device_id TEXT, notify_url TEXT, reserved TEXT,
    created_ms INTEGER NOT NULL, UNIQUE (partner_id, refund_merchant_order_no));
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, notify_id TEXT NOT NULL, kind TEXT NOT NULL,
    order_no TEXT NOT NULL, notify_url TEXT, body TEXT NOT NULL, sign TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
"""

Row = sqlite3.Row
Biz = Mapping[str, object]


class _Fail(Exception):
    """A business refusal: ``head`` FAIL with PayBy's code."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        msg = MESSAGES.get(code, "FAIL")
        self.msg = f"{msg}: {detail}" if detail else msg
        super().__init__(self.msg)


def _invalid(detail: str) -> _Fail:
    return _Fail("400", detail)


# --- bizContent validation ---------------------------------------------------------------------


def _opt_str(
    biz: Biz, key: str, max_len: int, pattern: re.Pattern[str] | None = None
) -> str | None:
    value = biz.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise _invalid(f"{key} must be a string of at most {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise _invalid(f"{key} has characters outside {pattern.pattern}")
    return value


def _req_str(biz: Biz, key: str, max_len: int, pattern: re.Pattern[str] | None = None) -> str:
    value = _opt_str(biz, key, max_len, pattern)
    if value is None:
        raise _invalid(f"{key} is required")
    return value


def _one_of(biz: Biz, *keys: str) -> tuple[str, str]:
    given = [key for key in keys if biz.get(key) is not None]
    if len(given) != 1:
        raise _invalid(f"give exactly one of {', '.join(keys)}")
    return given[0], _req_str(biz, given[0], 64)


def _canon(value: object) -> object:
    """Business parameters in a comparable form (idempotency: same request or not)."""
    if isinstance(value, dict):
        return {key: _canon(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_canon(item) for item in value]
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _params(biz: Biz, *skip: str) -> str:
    return dumps(_canon({k: v for k, v in biz.items() if k not in skip})).decode()


def _head(apply_status: str, code: str, msg: str) -> dict[str, object]:
    return {
        "applyStatus": apply_status,
        "code": code,
        "msg": msg,
        "traceCode": str(secrets.randbelow(900_000) + 100_000),
        "success": apply_status == "SUCCESS" and code == "0",
    }


class PayBySandbox:
    """PayBy's behaviour for the sandbox server (``name`` "payby", prefix ``/sgs/api``).

    ``token_ttl_ms``: tokenUrl lifetime ([3P] 1 h). ``settle_after_ms``: PAID_SUCCESS →
    SETTLED delay [INF]. ``terminal_repeat_errors``: a placeOrder repeat on a paid/failed
    order answers 62001/62002/62003 instead of the order [INF, providers.md §1.10].
    ``omit_sign_on_generic_errors``: reply unsigned on codes PayBy's SDK tolerates unsigned.
    """

    name = "payby"
    prefix = "/sgs/api"

    def __init__(
        self,
        state_dir: Path,
        clock: SandboxClock,
        *,
        token_host: str = "checkout.sandbox.payby.test",  # noqa: S107 (a host name)
        token_ttl_ms: int = HOUR_MS,
        settle_after_ms: int = DAY_MS,
        currencies: tuple[str, ...] = ("AED", "BUSD"),
        business_types: tuple[str, ...] = ("GAME_TOP_UP",),
        terminal_repeat_errors: bool = False,
        omit_sign_on_generic_errors: bool = False,
    ) -> None:
        self.clock = clock
        self.token_host = token_host
        self.token_ttl_ms = token_ttl_ms
        self.settle_after_ms = settle_after_ms
        self.currencies = currencies
        self.business_types = business_types
        self.terminal_repeat_errors = terminal_repeat_errors
        self.omit_sign_on_generic_errors = omit_sign_on_generic_errors
        self.faults = FaultPlan(sorted(set(OPS.values())))
        self.public_key_pem, self._signer = _load_or_make_key(state_dir)
        self._verifiers: dict[str, Verifier] = {}
        self._lock = threading.RLock()
        self._db = sqlite3.connect(state_dir / "payby.db", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._db:
            self._db.executescript(_SCHEMA)
        self._handlers: dict[str, Callable[[str, int, Biz], dict[str, object]]] = {
            "placeOrder": self._place_order,
            "cancelOrder": self._cancel_order,
            "revokeOrder": self._revoke_order,
            "getOrder": self._get_order,
            "refund": self._refund,
            "getRefund": self._get_refund,
            "getBalance": self._get_balance,
            "resolveToken": self._resolve_token,
            "payOrder": self._pay_order,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    # --- HTTP ----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        op = OPS.get(request.path)
        if op is None:
            return Response.text("no such PayBy API", 404)
        if request.method != "POST":
            return Response.text("PayBy APIs are POST only", 405)
        fault = self.faults.take(op)
        if fault is not None and fault.mode is FaultMode.ERROR_500:
            return Response.text("Internal Server Error", 500)  # no effect
        head, body = self._process(op, request)
        response = self._envelope(head, body)
        return fault.apply(response) if fault is not None else response

    def _process(
        self, op: str, request: Request
    ) -> tuple[dict[str, object], dict[str, object] | None]:
        partner, sign = request.header("partner-id") or "", request.header("sign")
        verifier = self._verifier(partner)
        if verifier is None or sign is None or not verifier.verify(request.body, sign):
            return _head("ERROR", "403", "UNAUTHORIZED: sign does not verify"), None  # [INF] code
        try:
            doc = loads(request.body)
        except (ValueError, RecursionError):
            return _head("FAIL", "400", "INVALID_PARAMETER: body is not JSON"), None
        if not isinstance(doc, dict) or type(doc.get("requestTime")) is not int:
            return _head("FAIL", "400", "INVALID_PARAMETER: requestTime must be epoch ms"), None
        biz, request_time = doc.get("bizContent"), doc["requestTime"]
        if not isinstance(biz, dict):
            return _head("FAIL", "400", "INVALID_PARAMETER: bizContent is required"), None
        now = self.clock.now_ms()
        if request_time < now - 15 * MINUTE_MS:
            return _head("FAIL", "400", "REQUESTTIME_TOO_EARLY"), None
        if request_time > now + 15 * MINUTE_MS:
            return _head("FAIL", "400", "REQUESTTIME_TOO_LATER"), None
        try:
            with self._tx():
                body = self._handlers[op](partner, request_time, biz)
        except _Fail as fail:
            return _head("FAIL", fail.code, fail.msg), None
        return _head("SUCCESS", "0", "SUCCESS"), body

    def _envelope(self, head: dict[str, object], body: dict[str, object] | None) -> Response:
        raw = dumps({"body": body, "head": head} if body is not None else {"head": head})
        code = str(head["code"])
        unsigned = self.omit_sign_on_generic_errors and unsigned_tolerated(code)
        headers = () if unsigned else (("sign", self._signer.sign(raw)),)
        return Response(200, raw, "application/json;charset=UTF-8", headers)

    def _verifier(self, partner: str) -> Verifier | None:
        with self._lock:
            if partner not in self._verifiers:
                row = self._db.execute(
                    "SELECT public_key_pem FROM merchants WHERE partner_id = ?", (partner,)
                ).fetchone()
                if row is None or row[0] is None:
                    return None
                self._verifiers[partner] = Verifier(row[0].encode())
            return self._verifiers[partner]

    # --- orders --------------------------------------------------------------------------------

    def _amount(self, biz: Biz, key: str) -> Money:
        try:
            money = Money.from_payby(biz.get(key))
        except MoneyError as exc:
            raise _invalid(f"{key}: {exc}") from exc
        if money.code not in self.currencies:
            raise _invalid(f"{key}: currency must be one of {', '.join(self.currencies)}")
        if not 0 < money.minor < 10 ** (12 + money.currency.exponent):
            raise _invalid(f"{key}: amount must be positive with at most 12 integer digits")
        return money

    def _place_order(self, payee: str, request_time: int, biz: Biz) -> dict[str, object]:
        merchant_order_no = _req_str(biz, "merchantOrderNo", 64, _ID_RE)
        subject = _req_str(biz, "subject", 200)  # docs say 12, [3P] 64: lenient
        total = self._amount(biz, "totalAmount")
        if biz.get("paySceneCode") != "CASHTOPUP":
            raise _Fail("62012", "this sandbox implements CASHTOPUP only")
        scene = biz.get("paySceneParams")
        business_type = scene.get("businessType") if isinstance(scene, dict) else None
        if business_type is None:
            raise _Fail("62043")
        if business_type not in self.business_types:
            raise _Fail("62044")
        expired = biz.get("expiredTime", request_time + 2 * HOUR_MS)
        if type(expired) is not int:
            raise _invalid("expiredTime must be epoch ms")
        if expired < request_time:
            raise _Fail("62008")
        if expired > request_time + 48 * HOUR_MS:
            raise _Fail("62009")
        notify_url = _opt_str(biz, "notifyUrl", 200)
        device_id = _opt_str(biz, "deviceId", 200)
        reserved = _opt_str(biz, "reserved", 200)
        if biz.get("payeeMid") not in (None, payee):
            raise _Fail("62086", "payeeMid must be the calling merchant")  # [INF]
        params = _params(biz)
        row = self._db.execute(
            "SELECT * FROM orders WHERE payee_mid = ? AND merchant_order_no = ?",
            (payee, merchant_order_no),
        ).fetchone()
        if row is not None:
            row = self._refresh(row)
            if row["params"] != params:
                raise _Fail("62016")
            terminal = {"PAID_SUCCESS": "62001", "FAILURE": "62002", "SETTLED": "62003"}
            if self.terminal_repeat_errors and row["status"] in terminal:
                raise _Fail(terminal[row["status"]])
            return self._placed(row)
        now = self.clock.now_ms()
        token_url = (
            f"https://{self.token_host}/pay-page/main?BIZ_TYPE=202"
            f"&ft={secrets.token_hex(16)}&t={now}"
        )
        order_no = self._new_no("orders", "13")
        self._db.execute(
            "INSERT INTO orders (order_no, payee_mid, merchant_order_no, params, request_time,"
            " subject, currency, total_minor, pay_scene_params, expired_time, notify_url,"
            " device_id, reserved, token_url, token_expires, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'CREATED')",
            (
                order_no, payee, merchant_order_no, params, request_time, subject, total.code,
                total.minor, dumps(scene).decode(), expired, notify_url, device_id, reserved,
                token_url, min(now + self.token_ttl_ms, expired),
            ),
        )  # fmt: skip
        return self._placed(self._order(order_no))

    def _placed(self, row: Row) -> dict[str, object]:
        body: dict[str, object] = {"acquireOrder": self._wire_order(row)}
        if row["status"] == "CREATED":
            body["interActionParams"] = {"tokenUrl": row["token_url"]}
        return body

    def _get_order(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._find(partner, biz, payer_may_read=True)
        return {"acquireOrder": self._wire_order(row, public=row["payee_mid"] != partner)}

    def _cancel_order(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._find(partner, biz)
        refused = {"PAID_SUCCESS": "62001", "FAILURE": "62002", "SETTLED": "62003"}
        if row["status"] in refused:
            raise _Fail(refused[row["status"]])
        self._set(row["order_no"], status="FAILURE")
        return {"acquireOrder": self._wire_order(self._order(row["order_no"]))}

    def _revoke_order(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._find(partner, biz)
        order_no, status = row["order_no"], row["status"]
        if row["revoked"]:
            return {"acquireOrder": self._wire_order(row)}
        if self._refunded(order_no).minor:
            raise _Fail("62041")
        total = self._total(row)
        if status == "PAID_SUCCESS":  # [DOC sample; INF rule] paid, unsettled: FAILURE, money back
            self._move(row["payee_mid"], row["payer_mid"], total)
            self._set(order_no, status="FAILURE", revoked=1)
        elif status == "SETTLED":  # [DOC] stays SETTLED; money back through a refund order
            self._insert_refund(row, partner, f"REVOKE-{order_no}", total, {}, "")
            self._set(order_no, revoked=1)
        else:  # CREATED or FAILURE: nothing was paid [INF: revoked marks the revoke]
            self._set(order_no, status="FAILURE", revoked=1)
        return {"acquireOrder": self._wire_order(self._order(order_no))}

    # --- store side: NOT in PayBy's public API ---------------------------------------------

    def _resolve_token(self, _partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._by_token(_req_str(biz, "tokenUrl", 1024))
        return {"acquireOrder": self._wire_order(row, public=True)}

    def _by_token(self, token_url: str) -> Row:
        """The order behind a live token; paid orders stay resolvable, dead ones do not."""
        row = self._db.execute("SELECT * FROM orders WHERE token_url = ?", (token_url,)).fetchone()
        if row is None:
            raise _Fail("62082")
        row = self._refresh(row)
        live = self.clock.now_ms() < row["token_expires"] and row["fail_code"] != "504"
        if row["status"] not in ("PAID_SUCCESS", "SETTLED") and not live:
            raise _Fail("62082", "token expired")
        return row

    def _pay_order(self, payer: str, _rt: int, biz: Biz) -> dict[str, object]:
        token_url = _req_str(biz, "tokenUrl", 1024)
        order_no = _req_str(biz, "orderNo", 64)
        amount = self._amount(biz, "amount")
        payment_no = _req_str(biz, "storePaymentNo", 64, _ID_RE)
        device_id = _req_str(biz, "deviceId", 200)
        earlier = self._db.execute(
            "SELECT * FROM orders WHERE payer_mid = ? AND store_payment_no = ?", (payer, payment_no)
        ).fetchone()
        if earlier is not None:  # idempotent repeat: the same payment, nothing debited again
            if earlier["order_no"] != order_no:
                raise _invalid("storePaymentNo was used for another order")
            return {"acquireOrder": self._wire_order(self._refresh(earlier), public=True)}
        row = self._by_token(token_url)
        if row["order_no"] != order_no:
            raise _invalid("orderNo does not match tokenUrl")
        if amount != self._total(row):
            raise _invalid("amount must equal the order total")
        refused = {"PAID_SUCCESS": "62001", "FAILURE": "62002", "SETTLED": "62003"}
        if row["status"] in refused:
            raise _Fail(refused[row["status"]])
        if row["payee_mid"] == payer:
            raise _Fail("62020")
        if self._balance(payer, amount.code) < amount.minor:
            raise _Fail(INSUFFICIENT_BALANCE)  # [INF] the order stays CREATED
        self._move(payer, row["payee_mid"], amount)
        self._set(
            order_no,
            status="PAID_SUCCESS",
            paid_time=self.clock.now_ms(),
            payer_mid=payer,
            store_payment_no=payment_no,
            pay_device_id=device_id,
        )
        paid = self._order(order_no)
        self._notify("acquireOrder", paid["order_no"], paid["notify_url"], self._wire_order(paid))
        return {"acquireOrder": self._wire_order(paid, public=True)}

    # --- refunds -------------------------------------------------------------------------------

    def _refund(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        # [INF] the docs' sample names the refund id merchantOrderNo: accept both
        id_key = "refundMerchantOrderNo" if "refundMerchantOrderNo" in biz else "merchantOrderNo"
        refund_no = _req_str(biz, id_key, 64, _ID_RE)
        origin_key, origin = _one_of(biz, "originOrderNo", "originMerchantOrderNo")
        amount = self._amount(biz, "amount")
        extra = {
            "reason": _opt_str(biz, "reason", 64),
            "operator_name": _opt_str(biz, "operatorName", 200),
            "device_id": _opt_str(biz, "deviceId", 200),
            "notify_url": _opt_str(biz, "notifyUrl", 200),
            "reserved": _opt_str(biz, "reserved", 200),
        }
        params = _params(biz, id_key)
        existing = self._db.execute(
            "SELECT * FROM refunds WHERE partner_id = ? AND refund_merchant_order_no = ?",
            (partner, refund_no),
        ).fetchone()
        if existing is not None:
            if existing["params"] != params:
                raise _Fail("62017")
            return self._refund_body(existing)
        key = "orderNo" if origin_key == "originOrderNo" else "merchantOrderNo"
        row = self._find(partner, {key: origin})
        if row["revoked"]:
            raise _Fail("62040")
        if row["status"] in ("CREATED", "FAILURE"):
            raise _Fail("62015" if row["status"] == "CREATED" else "62002")
        if amount.code != row["currency"]:
            raise _invalid("amount currency differs from the order's")
        if amount > self._total(row) - self._refunded(row["order_no"]):
            raise _Fail("62006")
        if self.clock.now_ms() > row["request_time"] + 180 * DAY_MS:
            raise _Fail("62045", "refunds are allowed within 180 days")
        if self._balance(partner, amount.code) < amount.minor:
            raise _Fail("62045", "merchant balance too low")  # [INF]
        refund_order_no = self._insert_refund(row, partner, refund_no, amount, extra, params)
        return self._refund_body(self._refund_row(refund_order_no))

    def _insert_refund(
        self, row: Row, partner: str, refund_no: str, amount: Money, extra: dict[str, str | None],
        params: str,
    ) -> str:  # fmt: skip
        """A refund that succeeds at once (CREATED → REFUNDED_SETTLED → SUCCESS collapsed)."""
        order_no = self._new_no("refunds", "19")
        self._db.execute(
            "INSERT INTO refunds (order_no, partner_id, refund_merchant_order_no, origin_order_no,"
            " origin_merchant_order_no, params, currency, amount_minor, status, reason,"
            " operator_name, device_id, notify_url, reserved, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'SUCCESS', ?, ?, ?, ?, ?, ?)",
            (
                order_no, partner, refund_no, row["order_no"], row["merchant_order_no"], params,
                amount.code, amount.minor, extra.get("reason"), extra.get("operator_name"),
                extra.get("device_id"), extra.get("notify_url"), extra.get("reserved"),
                self.clock.now_ms(),
            ),
        )  # fmt: skip
        self._move(partner, row["payer_mid"], amount)
        refund = self._refund_row(order_no)
        self._notify("refundOrder", order_no, refund["notify_url"], self._wire_refund(refund))
        return order_no

    def _get_refund(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        key, value = _one_of(biz, "refundMerchantOrderNo", "orderNo")
        column = "refund_merchant_order_no" if key == "refundMerchantOrderNo" else "order_no"
        row = self._db.execute(
            f"SELECT * FROM refunds WHERE partner_id = ? AND {column} = ?",  # noqa: S608
            (partner, value),
        ).fetchone()
        if row is None:
            raise _Fail("62007")
        return {"refundOrder": self._wire_refund(row)}

    def _refund_body(self, refund: Row) -> dict[str, object]:
        order = self._order(refund["origin_order_no"])
        total = self._total(order)
        remaining = total - self._refunded(order["order_no"])
        return {
            "refundOrder": self._wire_refund(refund),
            "refundSummary": {
                "acquireAmount": total.to_payby(),
                "remainRefundAmount": remaining.to_payby(),
            },
        }

    # --- balance -------------------------------------------------------------------------------

    def _get_balance(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        code = _req_str(biz, "currencyCode", 8)
        if code not in self.currencies:
            raise _Fail("78001")
        available = Money.of(self._balance(partner, code), code)
        return {"memberId": partner, "balanceList": [{"availableBalance": available.to_payby()}]}

    # --- ledger --------------------------------------------------------------------------------

    def _order(self, order_no: str) -> Row:
        row: Row | None = self._db.execute(
            "SELECT * FROM orders WHERE order_no = ?", (order_no,)
        ).fetchone()
        assert row is not None, order_no
        return row

    def _refund_row(self, order_no: str) -> Row:
        row: Row | None = self._db.execute(
            "SELECT * FROM refunds WHERE order_no = ?", (order_no,)
        ).fetchone()
        assert row is not None, order_no
        return row

    def _find(self, partner: str, biz: Biz, *, payer_may_read: bool = False) -> Row:
        """The caller's order by exactly one of merchantOrderNo / orderNo, refreshed.

        By orderNo, the store that paid an order may read it too (crash recovery)."""
        key, value = _one_of(biz, "merchantOrderNo", "orderNo")
        if key == "merchantOrderNo":
            row = self._db.execute(
                "SELECT * FROM orders WHERE payee_mid = ? AND merchant_order_no = ?",
                (partner, value),
            ).fetchone()
            if row is None:
                raise _Fail("62004")
        else:
            row = self._db.execute(
                "SELECT * FROM orders WHERE order_no = ? AND (payee_mid = ? OR payer_mid = ?)",
                (value, partner, partner if payer_may_read else None),
            ).fetchone()
            if row is None:
                raise _Fail("62035")
        return self._refresh(row)

    def _refresh(self, row: Row) -> Row:
        """Apply the passing of time: expiry (CREATED → FAILURE), settlement (→ SETTLED)."""
        now = self.clock.now_ms()
        if row["status"] == "CREATED" and now >= row["expired_time"]:
            # [INF] failCode/failDes as in PayBy's acquireOrder example (504 SERVICE_TIMEOUT)
            self._set(
                row["order_no"], status="FAILURE", fail_code="504", fail_des="SERVICE_TIMEOUT"
            )
        elif (
            row["status"] == "PAID_SUCCESS"
            and not row["revoked"]
            and now >= row["paid_time"] + self.settle_after_ms
        ):
            self._set(row["order_no"], status="SETTLED")
        else:
            return row
        return self._order(row["order_no"])

    _COLUMNS: Final = frozenset(
        {"status", "revoked", "fail_code", "fail_des", "paid_time", "payer_mid",
         "store_payment_no", "pay_device_id"}
    )  # fmt: skip

    def _set(self, order_no: str, **values: object) -> None:
        assert values.keys() <= self._COLUMNS
        assignments = ", ".join(f"{column} = ?" for column in values)
        self._db.execute(
            f"UPDATE orders SET {assignments} WHERE order_no = ?",  # noqa: S608 (fixed columns)
            (*values.values(), order_no),
        )

    def _total(self, row: Row) -> Money:
        return Money.of(row["total_minor"], row["currency"])

    def _refunded(self, order_no: str) -> Money:
        row = self._order(order_no)
        (minor,) = self._db.execute(
            "SELECT COALESCE(SUM(amount_minor), 0) FROM refunds"
            " WHERE origin_order_no = ? AND status != 'FAILURE'",
            (order_no,),
        ).fetchone()
        return Money.of(minor, row["currency"])

    def _balance(self, partner: str, code: str) -> int:
        row = self._db.execute(
            "SELECT minor FROM balances WHERE partner_id = ? AND currency = ?", (partner, code)
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def _credit(self, partner: str, amount: Money) -> None:
        self._db.execute(
            "INSERT INTO balances (partner_id, currency, minor) VALUES (?, ?, ?)"
            " ON CONFLICT (partner_id, currency) DO UPDATE SET minor = minor + excluded.minor",
            (partner, amount.code, amount.minor),
        )

    def _move(self, source: str, target: str, amount: Money) -> None:
        self._credit(source, Money(-amount.minor, amount.currency))
        self._credit(target, amount)

    def _new_no(self, table: str, prefix: str) -> str:
        """A PayBy-style 18-digit number, unique in ``table`` (orders or refunds)."""
        assert table in ("orders", "refunds")
        while True:
            number = f"{prefix}{secrets.randbelow(10**16):016d}"
            sql = f"SELECT 1 FROM {table} WHERE order_no = ?"  # noqa: S608 (fixed table)
            if self._db.execute(sql, (number,)).fetchone() is None:
                return number

    def _notify(self, kind: str, order_no: str, url: str | None, obj: dict[str, object]) -> None:
        """Record the notification PayBy would POST to ``url`` (§1.8); nothing is sent."""
        now = self.clock.now_ms()
        body = dumps({"notify_timestamp": now, "notify_id": secrets.token_hex(16), kind: obj})
        self._db.execute(
            "INSERT INTO notifications (notify_id, kind, order_no, notify_url, body, sign,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                secrets.token_hex(8),
                kind,
                order_no,
                url,
                body.decode(),
                self._signer.sign(body),
                now,
            ),
        )

    # --- wire objects --------------------------------------------------------------------------

    def _wire_order(self, row: Row, *, public: bool = False) -> dict[str, object]:
        """The ``acquireOrder`` object; ``public`` hides the payee's private fields."""
        total = self._total(row).to_payby()
        doc: dict[str, object] = {
            "requestTime": row["request_time"],
            "merchantOrderNo": row["merchant_order_no"],
            "orderNo": row["order_no"],
            "status": row["status"],
        }
        if row["paid_time"] is not None:
            zero = Money.zero(row["currency"]).to_payby()
            doc["paymentInfo"] = {
                "paidAmount": total,
                "paidTime": row["paid_time"],
                "payerMid": row["payer_mid"],
                "payerFeeAmount": zero,
                "payeeFeeAmount": zero,
                "payChannel": "BALANCE",
                "settlementAmount": total,
            }
        doc.update(
            product="Basic Payment Gateway",
            totalAmount=total,
            payeeMid=row["payee_mid"],
            expiredTime=row["expired_time"],
            subject=row["subject"],
            paySceneCode="CASHTOPUP",
            paySceneParams=loads(row["pay_scene_params"]),
        )
        optional = {"failCode": row["fail_code"], "failDes": row["fail_des"]}
        if not public:
            optional.update(
                notifyUrl=row["notify_url"], deviceId=row["device_id"], reserved=row["reserved"]
            )
        doc.update({key: value for key, value in optional.items() if value is not None})
        doc["revoked"] = "true" if row["revoked"] else "false"
        return doc

    def _wire_refund(self, row: Row) -> dict[str, object]:
        doc: dict[str, object] = {
            "refundMerchantOrderNo": row["refund_merchant_order_no"],
            "orderNo": row["order_no"],
            "originMerchantOrderNo": row["origin_merchant_order_no"],
            "originOrderNo": row["origin_order_no"],
            "status": row["status"],
            "amount": Money.of(row["amount_minor"], row["currency"]).to_payby(),
        }
        for key, column in (
            ("reason", "reason"), ("operatorName", "operator_name"), ("deviceId", "device_id"),
            ("notifyUrl", "notify_url"), ("reserved", "reserved"),
        ):  # fmt: skip
            if row[column] is not None:
                doc[key] = row[column]
        return doc

    # --- Python API (the demo and tests; the hooks call these) -------------------------------

    def register_merchant(
        self, partner_id: str, public_key_pem: bytes | None, balance: Money | None = None
    ) -> None:
        """Add or update a merchant (a kiosk's store): its request key and wallet balance."""
        if not _PARTNER_RE.fullmatch(partner_id):
            raise ValueError(f"partnerId must be 1-12 letters or digits, got {partner_id!r}")
        pem = None
        if public_key_pem is not None:
            Verifier(public_key_pem)  # refuse what would never verify
            pem = public_key_pem.decode()
        with self._tx() as db:
            db.execute(
                "INSERT INTO merchants (partner_id, public_key_pem) VALUES (?, ?)"
                " ON CONFLICT (partner_id) DO UPDATE"
                " SET public_key_pem = COALESCE(excluded.public_key_pem, public_key_pem)",
                (partner_id, pem),
            )
            if balance is not None:
                db.execute(
                    "INSERT OR REPLACE INTO balances (partner_id, currency, minor)"
                    " VALUES (?, ?, ?)",
                    (partner_id, balance.code, balance.minor),
                )
            self._verifiers.pop(partner_id, None)

    def create_order(
        self, amount: Money, *, subject: str = "Game top-up", merchant_order_no: str | None = None
    ) -> dict[str, object]:
        """The built-in online merchant creates a CASHTOPUP order (the customer's QR code)."""
        biz: dict[str, object] = {
            "merchantOrderNo": merchant_order_no or f"SBX-{secrets.token_hex(8)}",
            "subject": subject,
            "totalAmount": amount.to_payby(),
            "paySceneCode": "CASHTOPUP",
            "paySceneParams": {"businessType": self.business_types[0]},
        }
        try:
            with self._tx():
                placed = self._place_order(ONLINE_MERCHANT_ID, self.clock.now_ms(), biz)
        except _Fail as fail:
            raise HookError(f"{fail.code} {fail.msg}") from None
        order = placed["acquireOrder"]
        assert isinstance(order, dict)
        params = placed.get("interActionParams")
        return {
            "orderNo": order["orderNo"],
            "merchantOrderNo": order["merchantOrderNo"],
            "tokenUrl": params.get("tokenUrl") if isinstance(params, dict) else None,
            "status": order["status"],
        }

    def order_view(self, order_no: str) -> dict[str, object] | None:
        """Everything about an order, for tests and the demo (amounts as Decimal)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM orders WHERE order_no = ?", (order_no,)).fetchone()
            if row is None:
                return None
            row = self._refresh(row)
            view = self._wire_order(row)
            view.update(
                tokenUrl=row["token_url"],
                storePaymentNo=row["store_payment_no"],
                payDeviceId=row["pay_device_id"],
                refundedAmount=self._refunded(order_no).to_payby(),
            )
            return view

    def balances(self, partner_id: str) -> dict[str, Money]:
        with self._lock:
            rows = self._db.execute(
                "SELECT currency, minor FROM balances WHERE partner_id = ? ORDER BY currency",
                (partner_id,),
            ).fetchall()
        return {code: Money.of(minor, code) for code, minor in rows}

    def notifications(self) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM notifications ORDER BY id").fetchall()
        return [
            {"kind": r["kind"], "orderNo": r["order_no"], "notifyUrl": r["notify_url"],
             "body": r["body"], "sign": r["sign"], "createdMs": r["created_ms"]}
            for r in rows
        ]  # fmt: skip

    # --- hooks ---------------------------------------------------------------------------------

    def handle_hook(self, request: Request) -> Response:
        path, method = request.path, request.method
        if (method, path) == ("GET", "/public-key"):
            return Response.text(self.public_key_pem.decode())
        if (method, path) == ("POST", "/merchants"):
            return Response.json(self._merchant_hook(hook_json(request)))
        if (method, path) == ("POST", "/orders"):
            doc = hook_json(request)
            subject, merchant_order_no = doc.get("subject"), doc.get("merchantOrderNo")
            if not isinstance(subject, str | None) or not isinstance(merchant_order_no, str | None):
                raise HookError("subject and merchantOrderNo must be strings")
            amount = _hook_money(doc)
            return Response.json(
                self.create_order(amount, subject=subject or "Game top-up",
                                  merchant_order_no=merchant_order_no)
            )  # fmt: skip
        if method == "GET" and path.startswith("/orders/"):
            view = self.order_view(path.removeprefix("/orders/"))
            return Response.json(view) if view else Response.json({"error": "no such order"}, 404)
        if method == "GET" and path.startswith("/balance/"):
            partner = path.removeprefix("/balance/")
            balances = {code: m.to_decimal_str() for code, m in self.balances(partner).items()}
            return Response.json({"partnerId": partner, "balances": balances})
        if (method, path) == ("POST", "/faults"):
            doc = hook_json(request)
            if doc.get("clear") is True:
                self.faults.clear()
                return Response.json({"cleared": True})
            return Response.json(self.faults.arm_from_hook(doc))
        if (method, path) == ("GET", "/notifications"):
            return Response.json(self.notifications())
        raise HookError(f"no PayBy hook {method} {path}", status=404)

    def _merchant_hook(self, doc: dict[str, object]) -> dict[str, object]:
        partner, pem = doc.get("partnerId"), doc.get("publicKeyPem")
        if not isinstance(partner, str) or not isinstance(pem, str | None):
            raise HookError("expected partnerId and publicKeyPem strings")
        balance = _hook_money(doc["balance"]) if doc.get("balance") is not None else None
        try:
            self.register_merchant(partner, pem.encode() if pem else None, balance)
        except ValueError as exc:
            raise HookError(str(exc)) from exc
        balances = {code: m.to_decimal_str() for code, m in self.balances(partner).items()}
        return {"partnerId": partner, "balances": balances}


def _hook_money(doc: object) -> Money:
    if not isinstance(doc, dict):
        raise HookError('expected {"currency": "AED", "amount": "150.00"}')
    amount, code = doc.get("amount"), doc.get("currency")
    if (
        not isinstance(amount, str | int | Decimal)
        or isinstance(amount, bool)
        or not isinstance(code, str)
    ):
        raise HookError('expected {"currency": "AED", "amount": "150.00"}')
    try:
        return Money.from_decimal(amount, code)
    except MoneyError as exc:
        raise HookError(str(exc)) from exc


def _load_or_make_key(state_dir: Path) -> tuple[bytes, Signer]:
    """PayBy's own pair, made once and kept in ``state_dir`` (private key mode 0600)."""
    private_path = state_dir / "payby_private_key.pem"
    public_path = state_dir / "payby_public_key.pem"
    if not (private_path.exists() and public_path.exists()):
        private_pem, public_pem = generate_key_pair()
        private_path.touch(mode=0o600)
        private_path.chmod(0o600)
        private_path.write_bytes(private_pem)
        public_path.write_bytes(public_pem)
    return public_path.read_bytes(), Signer(private_path.read_bytes())
