"""PayBy sandbox: the SGS acquiring API as documented (providers.md §1) over a SQLite ledger.

Here: PayBy's behaviour (routing of ops, validation, signatures, the order state machine, the
hooks); :mod:`kiosk.sandbox.payby.ledger` holds its state in ``state_dir`` (the SQLite ledger,
PayBy's own RSA pair) and the wire objects. Replies are signed with PayBy's key, requests with
the key registered for their ``Partner-Id``. Expiry and settlement happen lazily, when an order
is next touched, by the :class:`~kiosk.sandbox.server.SandboxClock`.

API under ``/sgs/api`` (fault op names in brackets)::

    /acquire2/placeOrder [placeOrder]     /acquire2/refund/placeOrder [refund]
    /acquire2/cancelOrder [cancelOrder]   /crypto/refund/placeOrder   [refund]  (BUSD, seed 004)
    /acquire2/revokeOrder [revokeOrder]   /acquire2/refund/getOrder   [getRefund]
    /acquire2/getOrder [getOrder]         /member/getBalance          [getBalance]
    /acquire2/cashTopUp/resolveToken [resolveToken]   NOT in PayBy's public API
    /acquire2/cashTopUp/payOrder [payOrder]           NOT in PayBy's public API
    /verifySign [verifySign]                          the signature echo (its body: [INF])

Hooks under ``/_sandbox/payby`` (JSON, amounts as strings, no signatures)::

    POST merchants      {"partnerId", "publicKeyPem", "balance"?: {"currency", "amount"}}
    POST orders         {"amount", "currency", "subject"?, "merchantOrderNo"?}  (online merchant)
    POST orders/<orderNo>/app-pay  {"payer"}  a customer pays a DYNQR order in the PayBy app
                        (CREATED → PAID_SUCCESS, the payee credited); 409 unless CREATED and live
    POST refunds/fail-next  {"originOrderNo", "failCode"?, "failDes"?}  the order's next refund
                        ends FAILURE with them (default: the docs' example 62002)
    GET  orders/<orderNo>      GET balance/<partnerId>      GET public-key (PEM text)
    POST faults         {"op", "mode", "count"?, "delay_s"?}; modes: drop_response (applied,
                        no reply), error_500 (not applied), delay (applied, reply late),
                        hold (applied late, after delay_s), http_429 / unsigned_402 /
                        unsigned_404 (applied; the reply is that error, unsigned)
                        or {"clear": true}
    GET  notifications  the notification rows (never sent: no outbound HTTP)

Pay scenes: ``CASHTOPUP`` (an online merchant's order, paid by a kiosk's store through the
store side above) and ``DYNQR`` (the merchant-presented QR, docs/2_Online Payment
Integration/Special Payment Scenes/dynrq.md: a kiosk's store creates the order, prints its
``interActionParams.tokenUrl`` as a QR, the customer pays it in the PayBy app: the app-pay hook).

Marked [INF]: behaviour PayBy does not document; chosen here and configurable where cheap.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from kiosk.errors import MoneyError
from kiosk.money import Money
from kiosk.providers.payby.client import DEFAULT_PAY_ORDER_PATH, DEFAULT_RESOLVE_TOKEN_PATH
from kiosk.providers.payby.wire import (
    Verifier,
    dumps,
    loads,
    money_in,
    money_out,
    unsigned_tolerated,
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
from kiosk.sandbox.payby.ledger import (
    INSUFFICIENT_BALANCE,
    MESSAGES,
    Ledger,
    Row,
    canonical_params,
    hook_app_pay,
    hook_fail_next,
    hook_merchant,
    hook_order,
    load_or_make_key,
    order_total,
    wire_balances,
    wire_created,
    wire_head,
    wire_order,
    wire_placed,
    wire_refund,
    wire_topup_biz,
    wire_view,
)

ONLINE_MERCHANT_ID: Final = "200009990001"  # [INF] the built-in online merchant (hook orders)
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
    "/verifySign": "verifySign",
}

SCENES: Final = ("CASHTOPUP", "DYNQR")
# DYNQR paySceneParams (docs/3_Payment/OrderCreation/_dynqr.md), all optional
_DYNQR_FLAGS: Final = {"changePayer": "400", "oneTimePayment": "62073"}
_DYNQR_TEXTS: Final = ("email", "eid")

_TERMINAL: Final = {"PAID_SUCCESS": "62001", "FAILURE": "62002", "SETTLED": "62003"}
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARTNER_RE: Final = re.compile(r"[A-Za-z0-9]{1,12}")

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


def _dynqr_params(value: object) -> dict[str, object]:
    """DYNQR paySceneParams as documented: changePayer, oneTimePayment ("true"/"false"),
    email, eid (SHA-256 hex), all optional; [INF] absent means {} and unknown keys are kept.
    [INF] The flags are checked only: one app-pay settles the order, so they change nothing."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid("paySceneParams must be an object")
    for key, code in _DYNQR_FLAGS.items():
        flag = value.get(key)
        if flag is not None and str(flag).lower() not in ("true", "false"):
            raise _Fail(code, f"{key} must be true or false")
    for key in _DYNQR_TEXTS:
        text = value.get(key)
        if text is not None and (not isinstance(text, str) or not 0 < len(text) <= 200):
            raise _invalid(f"{key} must be a string of at most 200 characters")
    return dict(value)


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
        self.public_key_pem, self._signer = load_or_make_key(state_dir)
        self._verifiers: dict[str, Verifier] = {}
        self._refund_failures: dict[str, tuple[str, str]] = {}  # originOrderNo → (code, des)
        self._ledger = Ledger(state_dir / "payby.db", clock.now_ms, self._signer.sign)
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
            "verifySign": lambda _partner, _rt, _biz: {},  # [INF] the reply's body
        }

    def close(self) -> None:
        self._ledger.close()

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
        if fault is not None and fault.mode is FaultMode.HOLD:
            time.sleep(fault.delay_ms / 1000)  # the request lands late (the client gave up)
        head, body = self._process(op, request)
        response = self._envelope(head, body)
        return fault.apply(response) if fault is not None else response

    def _process(
        self, op: str, request: Request
    ) -> tuple[dict[str, object], dict[str, object] | None]:
        partner, sign = request.header("partner-id") or "", request.header("sign")
        verifier = self._verifier(partner)
        if verifier is None or sign is None or not verifier.verify(request.body, sign):
            # [INF] the code
            return wire_head("ERROR", "403", "UNAUTHORIZED: sign does not verify"), None
        try:
            doc = loads(request.body)
        except (ValueError, RecursionError):
            return wire_head("FAIL", "400", "INVALID_PARAMETER: body is not JSON"), None
        if not isinstance(doc, dict) or type(doc.get("requestTime")) is not int:
            return wire_head("FAIL", "400", "INVALID_PARAMETER: requestTime must be epoch ms"), None
        biz, request_time = doc.get("bizContent"), doc["requestTime"]
        if not isinstance(biz, dict):
            return wire_head("FAIL", "400", "INVALID_PARAMETER: bizContent is required"), None
        now = self.clock.now_ms()
        if request_time < now - 15 * MINUTE_MS:
            return wire_head("FAIL", "400", "REQUESTTIME_TOO_EARLY"), None
        if request_time > now + 15 * MINUTE_MS:
            return wire_head("FAIL", "400", "REQUESTTIME_TOO_LATER"), None
        if op == "refund" and (wrong := _wrong_refund_path(request.path, biz)):
            return wire_head("FAIL", "400", f"INVALID_PARAMETER: {wrong}"), None
        try:
            with self._ledger.tx():
                body = self._handlers[op](partner, request_time, biz)
        except _Fail as fail:
            return wire_head("FAIL", fail.code, fail.msg), None
        return wire_head("SUCCESS", "0", "SUCCESS"), body

    def _envelope(self, head: dict[str, object], body: dict[str, object] | None) -> Response:
        raw = dumps({"body": body, "head": head} if body is not None else {"head": head})
        code = str(head["code"])
        unsigned = self.omit_sign_on_generic_errors and unsigned_tolerated(code)
        headers = () if unsigned else (("sign", self._signer.sign(raw)),)
        return Response(200, raw, "application/json;charset=UTF-8", headers)

    def _verifier(self, partner: str) -> Verifier | None:
        with self._ledger.lock:
            if partner not in self._verifiers:
                pem = self._ledger.merchant_key(partner)
                if pem is None:
                    return None
                self._verifiers[partner] = Verifier(pem.encode())
            return self._verifiers[partner]

    # --- orders --------------------------------------------------------------------------------

    def _amount(self, biz: Biz, key: str) -> Money:
        try:
            money = money_in(biz.get(key))
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
        scene_code = biz.get("paySceneCode")
        if scene_code not in SCENES:
            raise _Fail("62012", f"this sandbox implements {' and '.join(SCENES)} only")
        if scene_code == "CASHTOPUP":
            scene = biz.get("paySceneParams")
            business_type = scene.get("businessType") if isinstance(scene, dict) else None
            if business_type is None:
                raise _Fail("62043")
            if business_type not in self.business_types:
                raise _Fail("62044")
        else:
            scene = _dynqr_params(biz.get("paySceneParams"))
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
        params = canonical_params(biz)
        row = self._ledger.order_by_merchant_no(payee, merchant_order_no)
        if row is not None:
            row = self._refresh(row)
            if row["params"] != params:
                raise _Fail("62016")
            if self.terminal_repeat_errors and row["status"] in _TERMINAL:
                raise _Fail(_TERMINAL[row["status"]])
            return wire_placed(row)
        now = self.clock.now_ms()
        token_url = (
            f"https://{self.token_host}/pay-page/main?BIZ_TYPE=202"
            f"&ft={secrets.token_hex(16)}&t={now}"
        )
        order_no = self._ledger.insert_order(
            payee=payee, merchant_order_no=merchant_order_no, params=params,
            request_time=request_time, subject=subject, total=total, pay_scene_params=scene,
            expired_time=expired, notify_url=notify_url, device_id=device_id, reserved=reserved,
            token_url=token_url, token_expires=min(now + self.token_ttl_ms, expired),
            pay_scene_code=str(scene_code),
        )  # fmt: skip
        return wire_placed(self._ledger.order(order_no))

    def _get_order(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._find(partner, biz, payer_may_read=True)
        return {"acquireOrder": wire_order(row, public=row["payee_mid"] != partner)}

    def _cancel_order(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._find(partner, biz)
        if row["status"] in _TERMINAL:
            raise _Fail(_TERMINAL[row["status"]])
        self._ledger.set_order(row["order_no"], status="FAILURE")
        return {"acquireOrder": wire_order(self._ledger.order(row["order_no"]))}

    def _revoke_order(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._find(partner, biz)
        order_no, status, ledger = row["order_no"], row["status"], self._ledger
        if row["revoked"]:
            return {"acquireOrder": wire_order(row)}
        if ledger.refunded(order_no).minor:
            raise _Fail("62041")
        total = order_total(row)
        if status == "PAID_SUCCESS":  # [DOC sample; INF rule] paid, unsettled: FAILURE, money back
            ledger.move(row["payee_mid"], row["payer_mid"], total)
            ledger.set_order(order_no, status="FAILURE", revoked=1)
        elif status == "SETTLED":  # [DOC] stays SETTLED; money back through a refund order
            refund = ledger.add_refund(row, partner, f"REVOKE-{order_no}", total, {}, "")
            ledger.notify("refundOrder", refund, wire_refund(refund))
            ledger.set_order(order_no, revoked=1)
        else:  # CREATED or FAILURE: nothing was paid [INF: revoked marks the revoke]
            ledger.set_order(order_no, status="FAILURE", revoked=1)
        return {"acquireOrder": wire_order(ledger.order(order_no))}

    def _find(self, partner: str, biz: Biz, *, payer_may_read: bool = False) -> Row:
        """The caller's order by exactly one of merchantOrderNo / orderNo, refreshed.

        By orderNo, the store that paid an order may read it too (crash recovery)."""
        key, value = _one_of(biz, "merchantOrderNo", "orderNo")
        if key == "merchantOrderNo":
            row = self._ledger.order_by_merchant_no(partner, value)
        else:
            row = self._ledger.order_for(value, partner, partner if payer_may_read else None)
        if row is None:
            raise _Fail("62004" if key == "merchantOrderNo" else "62035")
        return self._refresh(row)

    def _refresh(self, row: Row) -> Row:
        """Apply the passing of time: expiry (CREATED → FAILURE), settlement (→ SETTLED)."""
        now = self.clock.now_ms()
        if row["status"] == "CREATED" and now >= row["expired_time"]:
            # [INF] failCode/failDes as in PayBy's acquireOrder example (504 SERVICE_TIMEOUT)
            self._ledger.set_order(
                row["order_no"], status="FAILURE", fail_code="504", fail_des="SERVICE_TIMEOUT"
            )
        elif (
            row["status"] == "PAID_SUCCESS"
            and not row["revoked"]
            and now >= row["paid_time"] + self.settle_after_ms
        ):
            self._ledger.set_order(row["order_no"], status="SETTLED")
        else:
            return row
        return self._ledger.order(row["order_no"])

    # --- store side: NOT in PayBy's public API ---------------------------------------------

    def _resolve_token(self, _partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        row = self._by_token(_req_str(biz, "tokenUrl", 1024))
        return {"acquireOrder": wire_order(row, public=True)}

    def _by_token(self, token_url: str) -> Row:
        """The order behind a live token; paid orders stay resolvable, dead ones do not."""
        row = self._ledger.order_by_token(token_url)
        if row is None:
            raise _Fail("62082")
        if row["pay_scene_code"] != "CASHTOPUP":  # [INF] a store's POS pays cash top-ups only
            raise _Fail("62012", "not a CASHTOPUP order")
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
        earlier = self._ledger.order_by_payment(payer, payment_no)
        if earlier is not None:  # idempotent repeat: the same payment, nothing debited again
            if earlier["order_no"] != order_no:
                raise _invalid("storePaymentNo was used for another order")
            return {"acquireOrder": wire_order(self._refresh(earlier), public=True)}
        row = self._by_token(token_url)
        if row["order_no"] != order_no:
            raise _invalid("orderNo does not match tokenUrl")
        if amount != order_total(row):
            raise _invalid("amount must equal the order total")
        if row["status"] in _TERMINAL:
            raise _Fail(_TERMINAL[row["status"]])
        if row["payee_mid"] == payer:
            raise _Fail("62020")
        if self._ledger.balance(payer, amount.code) < amount.minor:
            raise _Fail(INSUFFICIENT_BALANCE)  # [INF] the order stays CREATED
        paid = self._ledger.pay(row, payer, payment_no, device_id)
        self._ledger.notify("acquireOrder", paid, wire_order(paid))
        return {"acquireOrder": wire_order(paid, public=True)}

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
        params = canonical_params(biz, id_key)
        existing = self._ledger.refund_by_merchant_no(partner, refund_no)
        if existing is not None:
            if existing["params"] != params:
                raise _Fail("62017")
            return self._ledger.refund_body(existing)
        key = "orderNo" if origin_key == "originOrderNo" else "merchantOrderNo"
        row = self._find(partner, {key: origin})
        if row["revoked"]:
            raise _Fail("62040")
        if row["status"] in ("CREATED", "FAILURE"):
            raise _Fail("62015" if row["status"] == "CREATED" else "62002")
        if amount.code != row["currency"]:
            raise _invalid("amount currency differs from the order's")
        if amount > order_total(row) - self._ledger.refunded(row["order_no"]):
            raise _Fail("62006")
        if self.clock.now_ms() > row["request_time"] + 180 * DAY_MS:
            raise _Fail("62045", "refunds are allowed within 180 days")
        if self._ledger.balance(partner, amount.code) < amount.minor:
            raise _Fail("62045", "merchant balance too low")  # [INF]
        failure = self._refund_failures.pop(row["order_no"], None)  # the fail-next hook
        refund = self._ledger.add_refund(row, partner, refund_no, amount, extra, params, failure)
        self._ledger.notify("refundOrder", refund, wire_refund(refund))
        return self._ledger.refund_body(refund)

    def _get_refund(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        key, value = _one_of(biz, "refundMerchantOrderNo", "orderNo")
        if key == "refundMerchantOrderNo":
            row = self._ledger.refund_by_merchant_no(partner, value)
        else:
            row = self._ledger.refund_for(partner, value)
        if row is None:
            raise _Fail("62007")
        return {"refundOrder": wire_refund(row)}

    # --- balance -------------------------------------------------------------------------------

    def _get_balance(self, partner: str, _rt: int, biz: Biz) -> dict[str, object]:
        code = _req_str(biz, "currencyCode", 8)
        if code not in self.currencies:
            raise _Fail("78001")
        available = Money.of(self._ledger.balance(partner, code), code)
        return {"memberId": partner, "balanceList": [{"availableBalance": money_out(available)}]}

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
        with self._ledger.tx():
            self._ledger.upsert_merchant(partner_id, pem, balance)
            self._verifiers.pop(partner_id, None)

    def create_order(
        self, amount: Money, *, subject: str = "Game top-up", merchant_order_no: str | None = None
    ) -> dict[str, object]:
        """The built-in online merchant creates a CASHTOPUP order (the customer's QR code)."""
        number = merchant_order_no or f"SBX-{secrets.token_hex(8)}"
        biz = wire_topup_biz(number, subject, amount, self.business_types[0])
        try:
            with self._ledger.tx():
                placed = self._place_order(ONLINE_MERCHANT_ID, self.clock.now_ms(), biz)
        except _Fail as fail:
            raise HookError(f"{fail.code} {fail.msg}") from None
        return wire_created(placed)

    def app_pay(self, order_no: str, payer: str) -> dict[str, object]:
        """A customer (PayBy member ``payer``) pays a DYNQR order in the PayBy app: CREATED →
        PAID_SUCCESS, the payee's wallet credited the total, the notification recorded.

        [INF] The app user's own wallet is debited without a balance check (the app's funding
        is outside the sandbox). Refused (:class:`HookError` 409) unless the order is a CREATED
        DYNQR order whose tokenUrl is still live; 404 for an unknown order."""
        with self._ledger.tx():
            row = self._ledger.find_order(order_no)
            if row is None:
                raise HookError("no such order", status=404)
            row = self._refresh(row)
            if row["pay_scene_code"] != "DYNQR":
                raise HookError("only DYNQR orders are paid in the app", status=409)
            if row["status"] != "CREATED":
                raise HookError(f"order is {row['status']}, not CREATED", status=409)
            if self.clock.now_ms() >= row["token_expires"]:
                raise HookError("62082 TOKEN_URL_NOT_EXIST: token expired", status=409)  # [INF]
            if payer == row["payee_mid"]:
                raise HookError("62020 PAYERMID_PAYEEMID_ARE_SAME", status=409)
            paid = self._ledger.pay(row, payer, None, None)
            self._ledger.notify("acquireOrder", paid, wire_order(paid))
            return wire_view(paid, self._ledger.refunded(order_no))

    def fail_next_refund(self, origin_order_no: str, fail_code: str, fail_des: str) -> None:
        """Make the next refund of the order (by PayBy's orderNo) end FAILURE with ``fail_code``
        and ``fail_des``: it is accepted as any other (same checks), no money moves, and it
        does not count against the refundable amount. [INF] PayBy documents no way to cause
        this; the FAILURE is reported at once, in the refund reply and the refund query."""
        with self._ledger.tx():
            if self._ledger.find_order(origin_order_no) is None:
                raise HookError("no such order", status=404)
            self._refund_failures[origin_order_no] = (fail_code, fail_des)

    def order_view(self, order_no: str) -> dict[str, object] | None:
        """Everything about an order, for tests and the demo (amounts as Decimal)."""
        with self._ledger.tx():
            row = self._ledger.find_order(order_no)
            if row is None:
                return None
            return wire_view(self._refresh(row), self._ledger.refunded(order_no))

    def orders_of(self, payee: str, prefix: str = "") -> dict[str, dict[str, object]]:
        """Every order ``payee`` created (a kiosk's cash-outs), by merchantOrderNo, as
        :meth:`order_view` shows them; only those whose merchantOrderNo starts with ``prefix``."""
        with self._ledger.tx():
            return {
                str(row["merchant_order_no"]): wire_view(
                    self._refresh(row), self._ledger.refunded(row["order_no"])
                )
                for row in self._ledger.orders_of(payee, prefix)
            }

    def balances(self, partner_id: str) -> dict[str, Money]:
        return self._ledger.balances(partner_id)

    def notifications(self) -> list[dict[str, object]]:
        return self._ledger.notifications()

    # --- hooks ---------------------------------------------------------------------------------

    def handle_hook(self, request: Request) -> Response:
        path, method = request.path, request.method
        if (method, path) == ("GET", "/public-key"):
            return Response.text(self.public_key_pem.decode())
        if (method, path) == ("POST", "/merchants"):
            return Response.json(self._merchant_hook(hook_json(request)))
        if (method, path) == ("POST", "/orders"):
            amount, subject, merchant_order_no = hook_order(hook_json(request))
            order = self.create_order(amount, subject=subject, merchant_order_no=merchant_order_no)
            return Response.json(order)
        if method == "POST" and path.startswith("/orders/") and path.endswith("/app-pay"):
            order_no = path.removeprefix("/orders/").removesuffix("/app-pay")
            return Response.json(self.app_pay(order_no, hook_app_pay(hook_json(request))))
        if (method, path) == ("POST", "/refunds/fail-next"):
            origin, code, des = hook_fail_next(hook_json(request))
            self.fail_next_refund(origin, code, des)
            return Response.json({"originOrderNo": origin, "failCode": code, "failDes": des})
        if method == "GET" and path.startswith("/orders/"):
            view = self.order_view(path.removeprefix("/orders/"))
            return Response.json(view) if view else Response.json({"error": "no such order"}, 404)
        if method == "GET" and path.startswith("/balance/"):
            partner = path.removeprefix("/balance/")
            return Response.json(wire_balances(partner, self.balances(partner)))
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
        partner, pem, balance = hook_merchant(doc)
        try:
            self.register_merchant(partner, pem, balance)
        except ValueError as exc:
            raise HookError(str(exc)) from exc
        return wire_balances(partner, self.balances(partner))


def _wrong_refund_path(path: str, biz: Biz) -> str | None:
    """[INF] BUSD is refunded through the crypto refund only (seed 004), fiat never through it."""
    amount = biz.get("amount")
    code = amount.get("currency") if isinstance(amount, dict) else None
    crypto = path.startswith("/crypto/")
    if crypto and code != "BUSD":
        return "the crypto refund refunds BUSD only"
    if not crypto and code == "BUSD":
        return "BUSD is refunded through /sgs/api/crypto/refund/placeOrder"
    return None
