"""PayByClient against httpx.MockTransport: request shape, reply parsing, error mapping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import cache
from typing import TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.errors import (
    ProviderAmbiguous,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)
from kiosk.money import Money
from kiosk.providers.payby.client import (
    AcquireOrder,
    OrderStatus,
    PayByClient,
    RefundStatus,
)
from kiosk.providers.payby.wire import Signer, Verifier, dumps, generate_key_pair, loads

STORE = "200000000888"
NOW = 1_700_000_000_000
TOKEN = "https://checkout.payby.test/pay-page/main?BIZ_TYPE=202&ft=abc&t=1"
T = TypeVar("T")


@cache
def keys(name: str) -> tuple[bytes, bytes]:
    return generate_key_pair()


@cache
def signer(name: str) -> Signer:
    return Signer(keys(name)[0])  # loading a private key takes ~40 ms: once per test session


def order(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "merchantOrderNo": "K1-0001",
        "orderNo": "131658300517875854",
        "status": "CREATED",
        "totalAmount": {"currency": "AED", "amount": Decimal("150.00")},
        "revoked": "false",
    }
    doc.update(changes)
    return doc


def ok(body: dict[str, object]) -> dict[str, object]:
    return {"body": body, "head": {"applyStatus": "SUCCESS", "code": "0", "msg": "SUCCESS"}}


def fail(code: str, apply_status: str = "FAIL") -> dict[str, object]:
    return {"head": {"applyStatus": apply_status, "code": code, "msg": "NOPE"}}


def signed(doc: object, status: int = 200) -> httpx.Response:
    raw = dumps(doc)
    return httpx.Response(status, content=raw, headers={"sign": signer("payby").sign(raw)})


Handler = Callable[[httpx.Request], httpx.Response]


def run(handler: Handler, call: Callable[[PayByClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = PayByClient(
                http,
                base_url="https://api.payby.test/sgs/api/",
                partner_id=STORE,
                signer=signer("store"),
                verifier=Verifier(keys("payby")[1]),
                timeout=httpx.Timeout(2.0, connect=1.0),
                clock=lambda: NOW,
            )
            return await call(client)

    return asyncio.run(go())


def replying(doc: object) -> Handler:
    return lambda request: signed(doc)


# --- requests --------------------------------------------------------------------------------


def test_place_order_request_is_signed_exact_and_float_free() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return signed(ok({"acquireOrder": order(), "interActionParams": {"tokenUrl": TOKEN}}))

    placed, token = run(
        handler,
        lambda c: c.place_order(
            "K1-0001", "Top up", Money.of(15000, "AED"), expired_time_ms=NOW + 60_000
        ),
    )
    assert token == TOKEN
    assert placed.total == Money.of(15000, "AED") and placed.status is OrderStatus.CREATED
    (request,) = seen
    assert request.url == "https://api.payby.test/sgs/api/acquire2/placeOrder"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["partner-id"] == STORE
    assert request.headers["content-language"] == "en"
    assert Verifier(keys("store")[1]).verify(request.content, request.headers["sign"])
    assert b'"totalAmount":{"currency":"AED","amount":150.00}' in request.content
    assert loads(request.content) == {
        "requestTime": NOW,
        "bizContent": {
            "merchantOrderNo": "K1-0001",
            "subject": "Top up",
            "totalAmount": {"currency": "AED", "amount": Decimal("150.00")},
            "paySceneCode": "CASHTOPUP",
            "paySceneParams": {"businessType": "GAME_TOP_UP"},
            "expiredTime": NOW + 60_000,
        },
    }


def test_both_spellings_of_interaction_params_are_read() -> None:
    body = {"acquireOrder": order(), "interactionParams": {"tokenUrl": TOKEN}}
    _, token = run(replying(ok(body)), lambda c: c.place_order("K1", "s", Money.of(1, "AED")))
    assert token == TOKEN


def test_repeat_on_a_paid_order_has_no_token() -> None:
    body = {"acquireOrder": order(status="PAID_SUCCESS")}
    placed, token = run(replying(ok(body)), lambda c: c.place_order("K1", "s", Money.of(1, "AED")))
    assert token is None and placed.status is OrderStatus.PAID_SUCCESS


def test_created_order_without_token_is_a_protocol_error() -> None:
    with pytest.raises(ProviderProtocolError):
        run(
            replying(ok({"acquireOrder": order()})),
            lambda c: c.place_order("K1", "s", Money.of(1, "AED")),
        )


def test_paid_order_fields_are_parsed() -> None:
    paid = order(
        status="PAID_SUCCESS",
        revoked="true",
        paymentInfo={"paidTime": NOW, "payerMid": STORE, "paidAmount": {}},
        failCode="504",
        failDes="SERVICE_TIMEOUT",
    )
    got = run(replying(ok({"acquireOrder": paid})), lambda c: c.get_order(order_no="1"))
    assert got == AcquireOrder(
        merchant_order_no="K1-0001",
        order_no="131658300517875854",
        status=OrderStatus.PAID_SUCCESS,
        total=Money.of(15000, "AED"),
        paid_time=NOW,
        revoked=True,
        payer_mid=STORE,
        fail_code="504",
        fail_des="SERVICE_TIMEOUT",
    )


@pytest.mark.parametrize("method", ["get_order", "cancel_order", "revoke_order"])
def test_order_calls_need_exactly_one_number(method: str) -> None:
    with pytest.raises(ValueError):
        run(replying(ok({})), lambda c: getattr(c, method)())
    with pytest.raises(ValueError):
        run(replying(ok({})), lambda c: getattr(c, method)(order_no="1", merchant_order_no="2"))


def test_ids_are_checked_before_sending() -> None:
    with pytest.raises(ValueError):
        run(replying(ok({})), lambda c: c.place_order("bad id!", "s", Money.of(1, "AED")))
    with pytest.raises(ValueError):
        run(
            replying(ok({})),
            lambda c: c.pay_token_order(
                TOKEN, order_no="1", amount=Money.of(1, "AED"), payment_no="x" * 65, device_id="K"
            ),
        )


def test_refund_request_and_reply() -> None:
    seen: list[bytes] = []
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        paths.append(request.url.path)
        refund = {
            "refundMerchantOrderNo": "R1",
            "orderNo": "191405406113002297",
            "status": "SUCCESS",
            "amount": {"currency": "BUSD", "amount": Decimal("0.12345678")},
        }
        return signed(ok({"refundOrder": refund}))

    got = run(
        handler,
        lambda c: c.refund("R1", Money.of(12_345_678, "BUSD"), origin_order_no="13", reason="r"),
    )
    assert got.status is RefundStatus.SUCCESS and got.amount == Money.of(12_345_678, "BUSD")
    assert loads(seen[0])["bizContent"] == {  # type: ignore[index]
        "refundMerchantOrderNo": "R1",
        "originOrderNo": "13",
        "amount": {"currency": "BUSD", "amount": Decimal("0.12345678")},
        "reason": "r",
    }
    assert paths[0].endswith("/crypto/refund/placeOrder")  # seed 004: BUSD is the crypto refund
    with pytest.raises(ValueError):
        run(handler, lambda c: c.refund("R1", Money.of(1, "AED")))
    with pytest.raises(ValueError):  # Decimal(12,8): 13 digits before the point
        run(handler, lambda c: c.refund("R2", Money.of(10**20, "BUSD"), origin_order_no="13"))


def test_get_balance_reads_the_documented_shape() -> None:
    body = {
        "memberId": STORE,
        "balanceList": [{"availableBalance": {"amount": Decimal("897993.88"), "currency": "AED"}}],
    }
    assert run(replying(ok(body)), lambda c: c.get_balance("AED")) == Money.of(89799388, "AED")
    with pytest.raises(ProviderProtocolError):
        run(replying(ok(body)), lambda c: c.get_balance("BUSD"))


def test_store_side_paths_are_configurable() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return signed(ok({"acquireOrder": order()}))

    async def call(client: PayByClient) -> None:
        client2 = PayByClient(
            client._http,
            base_url="https://api.payby.test/sgs/api",
            partner_id=STORE,
            signer=signer("store"),
            verifier=Verifier(keys("payby")[1]),
            timeout=httpx.Timeout(1.0),
            resolve_token_path="/pos/resolve",
            pay_order_path="/pos/pay",
        )
        await client.resolve_token_url(TOKEN)
        await client2.resolve_token_url(TOKEN)
        await client2.pay_token_order(
            TOKEN, order_no="1", amount=Money.of(1, "AED"), payment_no="P1", device_id="K1"
        )

    run(handler, call)
    assert seen == [
        "/sgs/api/acquire2/cashTopUp/resolveToken",
        "/sgs/api/pos/resolve",
        "/sgs/api/pos/pay",
    ]


# --- error mapping ---------------------------------------------------------------------------


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("refused"), ProviderUnavailable),
        (httpx.ConnectTimeout("slow"), ProviderUnavailable),
        (httpx.PoolTimeout("pool"), ProviderUnavailable),
        (httpx.ReadTimeout("slow"), ProviderAmbiguous),
        (httpx.WriteTimeout("slow"), ProviderAmbiguous),
        (httpx.ReadError("connection reset by peer"), ProviderAmbiguous),
        (httpx.RemoteProtocolError("server disconnected"), ProviderAmbiguous),
    ],
)
def test_transport_errors_are_translated(exc: Exception, error: type[ProviderError]) -> None:
    with pytest.raises(error) as err:
        run(raising(exc), lambda c: c.get_order(order_no="1"))
    assert err.value.__cause__ is exc


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ProviderAmbiguous),
        (502, ProviderAmbiguous),
        (503, ProviderAmbiguous),
        (429, ProviderUnavailable),
        (404, ProviderRefused),
        (302, ProviderProtocolError),
    ],
)
def test_http_status_is_mapped(status: int, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        run(lambda r: httpx.Response(status, text="oops"), lambda c: c.get_order(order_no="1"))


@pytest.mark.parametrize(
    ("doc", "error", "code"),
    [
        (fail("500"), ProviderAmbiguous, "500"),
        (fail("504"), ProviderAmbiguous, "504"),
        (fail("402"), ProviderUnavailable, "402"),
        (fail("404"), ProviderUnavailable, "404"),
        (fail("62001"), ProviderRefused, "62001"),
        (fail("400"), ProviderRefused, "400"),
        (fail("403", "ERROR"), ProviderAuthFailed, "403"),
        (fail("500", "ERROR"), ProviderAuthFailed, "500"),  # our signature rejected
    ],
)
def test_head_codes_are_mapped(doc: object, error: type[ProviderError], code: str) -> None:
    with pytest.raises(error) as err:
        run(replying(doc), lambda c: c.get_order(order_no="1"))
    assert type(err.value) is error and err.value.code == code


def signed_raw(raw: bytes) -> Handler:
    return lambda r: httpx.Response(200, content=raw, headers={"sign": signer("payby").sign(raw)})


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>502 Bad Gateway</html>",
        b"\xff\xfe\x00",
        b"",
        b"[]",
        b'{"head": null}',
        b'{"head": {"applyStatus": "SUCCESS"}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}}',
        b'{"head": {"applyStatus": "FAIL", "code": "0"}}',
        b'{"head": {"applyStatus": "MAYBE", "code": "7"}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}, "body": {"acquireOrder": 3}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}, "body": {"acquireOrder": {}}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}, "body": {}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}, "body": {"acquireOrder": {'
        b'"merchantOrderNo": "K", "orderNo": "1", "status": "PAID", "totalAmount": {}}}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}, "body": {"acquireOrder": {'
        b'"merchantOrderNo": "K", "orderNo": "1", "status": "CREATED",'
        b' "totalAmount": {"currency": "AED", "amount": 1.234}}}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}, "body": {"acquireOrder": {'
        b'"merchantOrderNo": "K", "orderNo": "1", "status": "CREATED", "revoked": "yes",'
        b' "totalAmount": {"currency": "AED", "amount": 1}}}}',
        b'{"head": {"applyStatus": "SUCCESS", "code": "0"}, "body": {"acquireOrder": {'
        b'"merchantOrderNo": "K", "orderNo": "1", "status": "PAID_SUCCESS",'
        b' "paymentInfo": {"paidTime": "yesterday"},'
        b' "totalAmount": {"currency": "AED", "amount": 1}}}}',
        b"NaN",
    ],
)
def test_broken_replies_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProviderProtocolError):
        run(signed_raw(raw), lambda c: c.get_order(order_no="1"))


_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_any_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(
            ["head", "body", "code", "applyStatus", "acquireOrder", "status", "orderNo",
             "merchantOrderNo", "totalAmount", "amount", "currency", "revoked", "paymentInfo"]
        ),
        inner,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(_any_json)
def test_any_reply_yields_an_order_or_a_provider_error(doc: object) -> None:
    try:
        got = run(replying(doc), lambda c: c.get_order(order_no="1"))
    except ProviderError:
        return
    assert isinstance(got, AcquireOrder)


def test_logs_show_no_token_key_or_signature(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kiosk.providers.payby")
    run(replying(ok({"acquireOrder": order()})), lambda c: c.resolve_token_url(TOKEN))
    with pytest.raises(ProviderRefused):
        run(replying(fail("62082")), lambda c: c.resolve_token_url(TOKEN))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "resolveToken" in text and "62082" in text
    assert "ft=abc" not in text and "sign" not in text.lower() and "BEGIN" not in text
