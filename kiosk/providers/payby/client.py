"""PayBy acquiring client: Cash Top Up orders, refunds, balance, and store-side pay.

Wiring::

    http = httpx.AsyncClient()                       # owned and closed by the caller
    client = PayByClient(
        http,
        base_url="https://api.payby.com/sgs/api",    # UAT: https://uat.test2pay.com/sgs/api
        partner_id="200000000888",                   # the store's PayBy merchant id
        signer=Signer(store_private_key_pem),
        verifier=Verifier(payby_public_key_pem),
        timeout=httpx.Timeout(10.0, connect=5.0),    # seconds
    )
    order, token_url = await client.place_order("K1-0001", "Top up", Money.of(15000, "AED"))

Every call is a signed ``POST`` of ``{"requestTime": <epoch ms>, "bizContent": {...}}``; every
reply must carry PayBy's signature (providers.md §1.3). Errors, all from :mod:`kiosk.errors`:

- :class:`ProviderUnavailable` — not delivered (connect error or timeout, ``402`` rate limit,
  ``404`` service not available): nothing happened, safe to retry.
- :class:`ProviderAmbiguous` — sent but the outcome is unknown (read timeout, reset, HTTP 5xx,
  ``500``/``504``): query the order before anything else.
- :class:`ProviderRefused` — PayBy said no (``applyStatus`` ERROR or a business code); ``code``
  holds PayBy's code.
- :class:`ProviderProtocolError` — unsigned, forged or malformed reply.

Nothing secret is logged: only method, path, code and elapsed milliseconds.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import httpx

from kiosk.errors import (
    MoneyError,
    ProviderAmbiguous,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)
from kiosk.money import Money
from kiosk.providers.payby.wire import (
    PARTNER_HEADER,
    SIGN_HEADER,
    Signer,
    Verifier,
    dumps,
    generate_key_pair,
    loads,
    money_in,
    money_out,
    unsigned_tolerated,
)

__all__ = [
    "AcquireOrder",
    "OrderStatus",
    "PayByClient",
    "RefundOrder",
    "RefundStatus",
    "Signer",
    "Verifier",
    "generate_key_pair",
    "wall_clock_ms",
]

log = logging.getLogger("kiosk.providers.payby")

PAID: Final = frozenset({"PAID_SUCCESS", "SETTLED"})
"""Order statuses meaning the order is paid."""
NOT_VISIBLE: Final = frozenset({"62004", "62035"})
"""MERCHANT_ORDER_NO / ORDER_NO_NOT_EXIST: another merchant's order is visible to this store
only once the store paid it."""

PROVIDER: Final = "payby"
#: Paths not in PayBy's public API (see :meth:`PayByClient.resolve_token_url`).
DEFAULT_RESOLVE_TOKEN_PATH: Final = "/acquire2/cashTopUp/resolveToken"  # noqa: S105 (a path)
DEFAULT_PAY_ORDER_PATH: Final = "/acquire2/cashTopUp/payOrder"

_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_AMBIGUOUS_CODES: Final = frozenset({"500", "504"})
UNAUTHORIZED: Final = "403"  # the global code: the partner is not allowed (key, address)
_UNAVAILABLE_CODES: Final = frozenset({"402", "404"})


SCENE_PARAMS: Final[dict[str, dict[str, str]]] = {
    "CASHTOPUP": {"businessType": "GAME_TOP_UP"},
    "DYNQR": {"oneTimePayment": "true"},
}
"""``paySceneParams`` per scene (docs ``_cashtopup.md``, ``_dynqr.md``)."""
CRYPTO_CURRENCY: Final = "BUSD"
"""The crypto refund's only currency (seed 004)."""
CRYPTO_MAX_MINOR: Final = 10**20
"""``Decimal(12,8)``: 12 digits before the point, 8 after, in BUSD's minor units."""


def clock_refusal(exc: ProviderRefused) -> bool:
    """PayBy's refusal of a ``requestTime`` more than 15 minutes from its own (code 400,
    ``REQUESTTIME_TOO_EARLY`` / ``REQUESTTIME_TOO_LATER``)."""
    return "REQUESTTIME" in str(exc)


def wall_clock_ms() -> int:
    """Epoch milliseconds from the system clock (PayBy's ``requestTime``)."""
    return time.time_ns() // 1_000_000


class OrderStatus(StrEnum):
    """``acquireOrder.status`` (providers.md §1.6)."""

    CREATED = "CREATED"
    PAID_SUCCESS = "PAID_SUCCESS"
    SETTLED = "SETTLED"
    FAILURE = "FAILURE"


class RefundStatus(StrEnum):
    """``refundOrder.status`` (providers.md §1.9)."""

    CREATED = "CREATED"
    REFUNDED_SETTLED = "REFUNDED_SETTLED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


@dataclass(frozen=True, slots=True)
class AcquireOrder:
    """A PayBy payment order. ``paid_time`` is epoch ms; ``payer_mid`` the paying member."""

    merchant_order_no: str
    order_no: str
    status: OrderStatus
    total: Money
    paid_time: int | None = None
    revoked: bool = False
    payer_mid: str | None = None
    fail_code: str | None = None
    fail_des: str | None = None


@dataclass(frozen=True, slots=True)
class RefundOrder:
    """A PayBy refund; ``order_no`` is PayBy's refund id."""

    refund_merchant_order_no: str
    order_no: str
    status: RefundStatus
    amount: Money
    fail_code: str | None = None
    fail_des: str | None = None


# --- reply parsing (shapes validated; anything odd is a ProviderProtocolError) ---------------


def _broken(message: str) -> ProviderProtocolError:
    return ProviderProtocolError(PROVIDER, message)


def _obj(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _broken(f"{what} is not an object")
    return value


def _text(obj: Mapping[str, object], key: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # PayBy's codes are strings, but tolerate numbers
    if not isinstance(value, str):
        raise _broken(f"{key} missing or not a string")
    return value


def _required(obj: Mapping[str, object], key: str) -> str:
    value = _text(obj, key)
    assert value is not None
    return value


def _money(value: object, what: str) -> Money:
    try:
        return money_in(value)
    except MoneyError as exc:
        raise _broken(f"{what}: {exc}") from exc


def _revoked(value: object) -> bool:
    if value is None or value in ("false", False):
        return False
    if value in ("true", True):
        return True
    raise _broken(f"revoked is {value!r}, expected 'true' or 'false'")


def parse_acquire_order(value: object) -> AcquireOrder:
    """An :class:`AcquireOrder` from the wire ``acquireOrder`` object."""
    obj = _obj(value, "acquireOrder")
    try:
        status = OrderStatus(_required(obj, "status"))
    except ValueError as exc:
        raise _broken(f"unknown order status {obj.get('status')!r}") from exc
    paid_time: int | None = None
    payer_mid: str | None = None
    info = obj.get("paymentInfo")
    if info is not None:
        info = _obj(info, "paymentInfo")
        raw_time = info.get("paidTime")
        if raw_time is not None and (type(raw_time) is not int):
            raise _broken("paymentInfo.paidTime is not epoch milliseconds")
        paid_time = raw_time
        payer_mid = _text(info, "payerMid", optional=True)
    return AcquireOrder(
        merchant_order_no=_required(obj, "merchantOrderNo"),
        order_no=_required(obj, "orderNo"),
        status=status,
        total=_money(obj.get("totalAmount"), "totalAmount"),
        paid_time=paid_time,
        revoked=_revoked(obj.get("revoked")),
        payer_mid=payer_mid,
        fail_code=_text(obj, "failCode", optional=True),
        fail_des=_text(obj, "failDes", optional=True),
    )


def parse_refund_order(value: object) -> RefundOrder:
    """A :class:`RefundOrder` from the wire ``refundOrder`` object."""
    obj = _obj(value, "refundOrder")
    try:
        status = RefundStatus(_required(obj, "status"))
    except ValueError as exc:
        raise _broken(f"unknown refund status {obj.get('status')!r}") from exc
    return RefundOrder(
        refund_merchant_order_no=_required(obj, "refundMerchantOrderNo"),
        order_no=_required(obj, "orderNo"),
        status=status,
        amount=_money(obj.get("amount"), "amount"),
        fail_code=_text(obj, "failCode", optional=True),
        fail_des=_text(obj, "failDes", optional=True),
    )


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(f"{what} must be 1-64 characters of [A-Za-z0-9_-], got {value!r}")
    return value


def _one_of(**named: str | None) -> dict[str, str]:
    given = {key: value for key, value in named.items() if value is not None}
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(named)}")
    return given


class PayByClient:
    """PayBy SGS API client for one merchant (the store running this kiosk).

    ``clock`` returns epoch milliseconds for ``requestTime`` (PayBy refuses ±15 min skew).
    ``timeout`` applies to every call; keep ``read`` well under PayBy's 15-minute window.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        partner_id: str,
        signer: Signer,
        verifier: Verifier,
        timeout: httpx.Timeout,
        clock: Callable[[], int] = wall_clock_ms,
        resolve_token_path: str = DEFAULT_RESOLVE_TOKEN_PATH,
        pay_order_path: str = DEFAULT_PAY_ORDER_PATH,
        on_reply: Callable[[bool], None] | None = None,
        on_clock: Callable[[float | None, bool], None] | None = None,
    ) -> None:
        self._http = http
        self._on_clock = on_clock or (lambda skew_s, refused: None)
        self.last_skew_s: float | None = None
        """Our ``requestTime`` clock minus PayBy's, from the last reply's ``Date`` header."""
        self._base_url = base_url.rstrip("/")
        self._partner_id = partner_id
        self._signer = signer
        self._verifier = verifier
        self._timeout = timeout
        self._clock = clock
        self._resolve_token_path = resolve_token_path
        self._pay_order_path = pay_order_path
        self._on_reply = on_reply or (lambda got_reply: None)

    # --- documented API ----------------------------------------------------------------------

    async def place_order(
        self,
        merchant_order_no: str,
        subject: str,
        amount: Money,
        *,
        expired_time_ms: int | None = None,
        notify_url: str | None = None,
        scene: str = "CASHTOPUP",
    ) -> tuple[AcquireOrder, str | None]:
        """Create an order (idempotent on ``merchant_order_no``): ``CASHTOPUP`` (an online
        merchant's order a store pays) or ``DYNQR`` (the kiosk's own order, shown as a QR the
        customer pays in the PayBy app; one payment only).

        Returns the order and its ``tokenUrl``; the token is ``None`` when an idempotent
        repeat finds the order no longer CREATED (PayBy only returns it while CREATED).
        """
        biz: dict[str, object] = {
            "merchantOrderNo": _check_id(merchant_order_no, "merchant_order_no"),
            "subject": subject,
            "totalAmount": money_out(amount),
            "paySceneCode": scene,
            "paySceneParams": SCENE_PARAMS[scene],
        }
        if expired_time_ms is not None:
            biz["expiredTime"] = expired_time_ms
        if notify_url is not None:
            biz["notifyUrl"] = notify_url
        body = await self._call("/acquire2/placeOrder", biz)
        order = parse_acquire_order(body.get("acquireOrder"))
        params = body.get("interActionParams", body.get("interactionParams"))
        token_url: str | None = None
        if params is not None:
            token_url = _text(_obj(params, "interActionParams"), "tokenUrl", optional=True)
        if token_url is None and order.status is OrderStatus.CREATED:
            raise _broken("placeOrder returned a CREATED order without tokenUrl")
        return order, token_url

    async def get_order(
        self, *, order_no: str | None = None, merchant_order_no: str | None = None
    ) -> AcquireOrder:
        """The order's current state, by exactly one of PayBy's or our order number."""
        return await self._order_call("/acquire2/getOrder", order_no, merchant_order_no)

    async def cancel_order(
        self, *, order_no: str | None = None, merchant_order_no: str | None = None
    ) -> AcquireOrder:
        """Cancel a CREATED order (→ FAILURE). Refused with 62001/62002/62003 otherwise."""
        return await self._order_call("/acquire2/cancelOrder", order_no, merchant_order_no)

    async def revoke_order(
        self, *, order_no: str | None = None, merchant_order_no: str | None = None
    ) -> AcquireOrder:
        """Revoke an order whose outcome is unknown; a paid order is refunded (revoked=True)."""
        return await self._order_call("/acquire2/revokeOrder", order_no, merchant_order_no)

    async def refund(
        self,
        refund_merchant_order_no: str,
        amount: Money,
        *,
        origin_order_no: str | None = None,
        origin_merchant_order_no: str | None = None,
        reason: str | None = None,
        operator_name: str | None = None,
        device_id: str | None = None,
    ) -> RefundOrder:
        """Refund (part of) a paid order; idempotent on ``refund_merchant_order_no``. A BUSD
        order is refunded through the crypto refund (seed 004: ``/crypto/refund/placeOrder``,
        ``Decimal(12,8)``: at most 12 digits before the point, 8 after, written exactly)."""
        crypto = amount.code == CRYPTO_CURRENCY
        if crypto and not 0 < amount.minor < CRYPTO_MAX_MINOR:
            raise ValueError("a crypto refund is positive, at most 12 digits before the point")
        origin = _one_of(
            originOrderNo=origin_order_no, originMerchantOrderNo=origin_merchant_order_no
        )
        biz: dict[str, object] = {
            "refundMerchantOrderNo": _check_id(
                refund_merchant_order_no, "refund_merchant_order_no"
            ),
            **origin,
            "amount": money_out(amount),
        }
        optional = {"reason": reason, "operatorName": operator_name, "deviceId": device_id}
        biz.update({key: value for key, value in optional.items() if value is not None})
        path = "/crypto/refund/placeOrder" if crypto else "/acquire2/refund/placeOrder"
        body = await self._call(path, biz)
        return parse_refund_order(body.get("refundOrder"))

    async def get_refund(
        self, *, refund_merchant_order_no: str | None = None, order_no: str | None = None
    ) -> RefundOrder:
        """A refund's state, by exactly one of our refund number or PayBy's refund id."""
        biz = _one_of(refundMerchantOrderNo=refund_merchant_order_no, orderNo=order_no)
        body = await self._call("/acquire2/refund/getOrder", dict(biz))
        return parse_refund_order(body.get("refundOrder"))

    async def get_balance(self, currency: str) -> Money:
        """Available wallet balance in ``currency``.

        Shape from PayBy's docs (``docs/9_Member/get-balance.mdx`` in PayBy/official-doc):
        request ``{"currencyCode": "AED"}``; reply
        ``{"memberId", "balanceList": [{"availableBalance": {"amount", "currency"}}]}``.
        """
        body = await self._call("/member/getBalance", {"currencyCode": currency})
        entries = body.get("balanceList")
        if not isinstance(entries, list):
            raise _broken("getBalance: balanceList missing")
        for entry in entries:
            available = _obj(entry, "balanceList entry").get("availableBalance")
            money = _money(available, "availableBalance")
            if money.code == currency:
                return money
        raise _broken(f"getBalance: no {currency} balance in the reply")

    async def verify_sign(self) -> None:
        """``/verifySign`` (the SDK's ECHO): PayBy checks our signature and signs its reply,
        which is verified here. Raises a provider error when either does not hold."""
        await self._call("/verifySign", {})

    # --- store-side calls: NOT in PayBy's public API --------------------------------------

    async def resolve_token_url(self, token_url: str) -> AcquireOrder:
        """The order behind a customer's Cash Top Up QR code (``tokenUrl``).

        **NOT IN PAYBY'S PUBLIC API.** PayBy's own cashiers do this with the PayBy POS app;
        the endpoint path is a constructor parameter (``resolve_token_path``, default
        ``/acquire2/cashTopUp/resolveToken``) and the body ``{"tokenUrl"}`` is our assumption,
        to be confirmed with PayBy. Unknown or expired token: refused with ``62082``.
        """
        body = await self._call(self._resolve_token_path, {"tokenUrl": token_url})
        return parse_acquire_order(body.get("acquireOrder"))

    async def pay_token_order(
        self,
        token_url: str,
        *,
        order_no: str,
        amount: Money,
        payment_no: str,
        device_id: str,
        request_time_ms: int | None = None,
    ) -> AcquireOrder:
        """Pay a customer's CREATED order from the store's wallet (the cash is in the kiosk).

        **NOT IN PAYBY'S PUBLIC API.** Stands in for the PayBy POS app's scan-and-pay; the
        path is a constructor parameter (``pay_order_path``, default
        ``/acquire2/cashTopUp/payOrder``) and the body is our assumption. ``payment_no``
        (``storePaymentNo``, ≤64 of ``[A-Za-z0-9_-]``) is the idempotency key: journal it
        before calling, and repeat with the same value after an ambiguous outcome.
        ``request_time_ms`` fixes ``requestTime`` (the outbox re-sends the very same request,
        so PayBy's 15-minute window bounds when it can still be applied).
        """
        biz: dict[str, object] = {
            "tokenUrl": token_url,
            "orderNo": order_no,
            "amount": money_out(amount),
            "storePaymentNo": _check_id(payment_no, "payment_no"),
            "deviceId": device_id,
        }
        body = await self._call(self._pay_order_path, biz, request_time_ms=request_time_ms)
        return parse_acquire_order(body.get("acquireOrder"))

    # --- transport -----------------------------------------------------------------------

    async def _order_call(
        self, path: str, order_no: str | None, merchant_order_no: str | None
    ) -> AcquireOrder:
        biz = _one_of(orderNo=order_no, merchantOrderNo=merchant_order_no)
        body = await self._call(path, dict(biz))
        return parse_acquire_order(body.get("acquireOrder"))

    async def _call(
        self, path: str, biz: Mapping[str, object], *, request_time_ms: int | None = None
    ) -> Mapping[str, object]:
        """POST a signed request; the verified reply ``body``, or a provider error."""
        when = self._clock() if request_time_ms is None else request_time_ms
        raw = dumps({"requestTime": when, "bizContent": dict(biz)})
        headers = {
            "Content-Type": "application/json",
            PARTNER_HEADER: self._partner_id,
            "Content-Language": "en",
            SIGN_HEADER: self._signer.sign(raw),
        }
        started = time.monotonic()
        try:
            response = await self._post(path, raw, headers)
            self._clock_of(response)
            body = self._verified(response)
        except ProviderError as exc:
            elapsed_ms = int((time.monotonic() - started) * 1000)
            outcome = f"{type(exc).__name__}:{exc.code or '-'}"
            log.warning("POST %s %s %dms", path, outcome, elapsed_ms)
            if isinstance(exc, ProviderRefused) and clock_refusal(exc):
                log.error("PayBy refused our requestTime: our clock is off by more than 15 min")
                self._on_clock(self.last_skew_s, True)
            raise
        log.info("POST %s code=0 %dms", path, int((time.monotonic() - started) * 1000))
        return body

    async def _send(self, path: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        try:
            response = await self._http.post(
                self._base_url + path, content=raw, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError:
            self._on_reply(False)  # nothing came back: PayBy may be unreachable
            raise
        self._on_reply(True)
        return response

    async def _post(self, path: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        """The POST with httpx's errors as the provider errors of the module docstring."""
        try:
            return await self._send(path, raw, headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailable(
                PROVIDER, f"{path}: not delivered ({type(exc).__name__})"
            ) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ProviderUnavailable(PROVIDER, f"{path}: bad base URL, nothing sent") from exc
        except httpx.DecodingError as exc:  # the reply came but cannot be decoded
            raise _broken(f"{path}: undecodable reply") from exc
        except httpx.HTTPError as exc:  # read/write timeout, reset, remote protocol error, ...
            raise ProviderAmbiguous(
                PROVIDER, f"{path}: outcome unknown ({type(exc).__name__})"
            ) from exc

    def _clock_of(self, response: httpx.Response) -> None:
        """PayBy's time from the reply's HTTP ``Date`` (whole seconds): the skew of ours."""
        date = response.headers.get("date")
        if not date:
            return
        try:
            theirs = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        self.last_skew_s = self._clock() / 1000 - theirs
        self._on_clock(self.last_skew_s, False)

    def _verified(self, response: httpx.Response) -> Mapping[str, object]:
        """Check status, signature and envelope; the reply ``body`` on success."""
        status = response.status_code
        if status >= 500:
            raise ProviderAmbiguous(PROVIDER, f"HTTP {status}", code=f"HTTP {status}")
        if status == 429:
            raise ProviderUnavailable(PROVIDER, "rate limited (HTTP 429)", code="HTTP 429")
        if status in (401, 403):  # a gateway's: the partner id, its key or its address refused
            raise ProviderAuthFailed(PROVIDER, f"HTTP {status}", code=f"HTTP {status}")
        if 400 <= status < 500:
            raise ProviderRefused(PROVIDER, f"HTTP {status}", code=f"HTTP {status}")
        if status not in (200, 201):
            raise _broken(f"unexpected HTTP status {status}")
        raw = response.content
        sign = response.headers.get(SIGN_HEADER)
        if sign is not None and not self._verifier.verify(raw, sign):
            raise _broken("reply signature does not verify: refusing a possibly forged reply")
        try:
            doc = _obj(loads(raw), "reply")
        except (ValueError, RecursionError) as exc:
            raise _broken("reply is not JSON") from exc
        head = _obj(doc.get("head"), "head")
        code = _required(head, "code")
        if sign is None and not unsigned_tolerated(code):
            raise _broken(f"unsigned reply with code {code}: refusing a possibly forged reply")
        apply_status = _required(head, "applyStatus")
        msg = _text(head, "msg", optional=True) or ""
        signed = sign is not None
        if apply_status == "SUCCESS" and code == "0":
            return _obj(doc.get("body"), "body")
        if apply_status == "ERROR":
            raise ProviderAuthFailed(
                PROVIDER, f"our signature was rejected: {msg}", code=code, signed=signed
            )
        if code == UNAUTHORIZED:
            raise ProviderAuthFailed(PROVIDER, msg or "UNAUTHORIZED", code=code, signed=signed)
        if apply_status not in ("SUCCESS", "FAIL") or code == "0":
            raise _broken(f"inconsistent head: applyStatus={apply_status} code={code}")
        if code in _AMBIGUOUS_CODES:
            raise ProviderAmbiguous(PROVIDER, msg or "system error", code=code, signed=signed)
        if code in _UNAVAILABLE_CODES:
            raise ProviderUnavailable(
                PROVIDER, msg or "service unavailable", code=code, signed=signed
            )
        raise ProviderRefused(PROVIDER, msg or "refused", code=code, signed=signed)
