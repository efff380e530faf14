"""The PayBy sandbox over loopback, driven by the real client (providers.md §1.5-1.10)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from kiosk.errors import ProviderAmbiguous, ProviderRefused
from kiosk.money import Money
from kiosk.providers.payby.client import AcquireOrder, OrderStatus, PayByClient, RefundStatus
from kiosk.providers.payby.wire import Signer, Verifier, dumps, generate_key_pair, loads, money_out
from kiosk.sandbox import Sandbox, start_sandbox
from kiosk.sandbox.payby import ONLINE_MERCHANT_ID

STORE = "200000000888"
OTHER_STORE = "200000000999"
ONLINE = ONLINE_MERCHANT_ID
AED150 = Money.of(15000, "AED")
T = TypeVar("T")


@cache
def keys(name: str) -> tuple[bytes, bytes]:
    return generate_key_pair()


@cache
def signer(name: str) -> Signer:
    return Signer(keys(name)[0])


def _seed_payby_key(state_dir: Path) -> None:
    """Reuse one PayBy pair across tests (the sandbox would otherwise make one per dir)."""
    private, public = keys("payby")
    (state_dir / "payby_private_key.pem").write_bytes(private)
    (state_dir / "payby_public_key.pem").write_bytes(public)


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    _seed_payby_key(tmp_path)
    with start_sandbox(tmp_path) as sandbox:
        sandbox.payby.register_merchant(STORE, keys("store")[1], Money.of(100_000, "AED"))
        sandbox.payby.register_merchant(OTHER_STORE, keys("other")[1], Money.of(100_000, "AED"))
        sandbox.payby.register_merchant(ONLINE, keys("online")[1])
        yield sandbox


def make_client(
    http: httpx.AsyncClient,
    sb: Sandbox,
    name: str,
    partner: str,
    *,
    clock: Callable[[], int] | None = None,
    read_s: float = 5.0,
) -> PayByClient:
    return PayByClient(
        http,
        base_url=sb.url + "/sgs/api",
        partner_id=partner,
        signer=signer(name),
        verifier=Verifier(sb.payby.public_key_pem),
        timeout=httpx.Timeout(5.0, read=read_s),
        clock=clock or sb.clock.now_ms,
    )


@contextlib.asynccontextmanager
async def clients(sb: Sandbox, **kw: object) -> AsyncIterator[tuple[PayByClient, PayByClient]]:
    """(store client, online merchant client)."""
    async with httpx.AsyncClient() as http:
        yield make_client(http, sb, "store", STORE, **kw), make_client(http, sb, "online", ONLINE)  # type: ignore[arg-type]


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


def hook(sb: Sandbox, method: str, path: str, body: object = None) -> httpx.Response:
    return httpx.request(method, f"{sb.url}/_sandbox{path}", json=body)


def new_order(sb: Sandbox, amount: str = "150.00", currency: str = "AED") -> dict[str, str]:
    reply = hook(sb, "POST", "/payby/orders", {"amount": amount, "currency": currency})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def raw_call(
    sb: Sandbox, path: str, biz: dict[str, object], request_time: int | None = None
) -> dict[str, object]:
    """A signed call with a hand-made bizContent; the (verified) reply document."""
    body = dumps({"requestTime": request_time or sb.clock.now_ms(), "bizContent": biz})
    reply = httpx.post(
        f"{sb.url}/sgs/api{path}",
        content=body,
        headers={"Partner-Id": STORE, "sign": signer("store").sign(body)},
    )
    assert Verifier(sb.payby.public_key_pem).verify(reply.content, reply.headers["sign"])
    doc = loads(reply.content)
    assert isinstance(doc, dict)
    return doc


def code_of(doc: dict[str, object]) -> str:
    head = doc["head"]
    assert isinstance(head, dict)
    return str(head["code"])


def pay(
    store: PayByClient, created: dict[str, str], payment_no: str, amount: Money = AED150
) -> Awaitable[AcquireOrder]:
    """The kiosk pays the customer's order (as scanned: tokenUrl and orderNo)."""
    return store.pay_token_order(
        created["tokenUrl"],
        order_no=created["orderNo"],
        amount=amount,
        payment_no=payment_no,
        device_id="K1",
    )


async def refused(call: Awaitable[object]) -> str:
    with pytest.raises(ProviderRefused) as err:
        await call
    assert err.value.code is not None
    return err.value.code


# --- placeOrder ------------------------------------------------------------------------------


def test_place_order_is_idempotent_and_62016_on_other_params(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, _):
            first, token = await store.place_order("K1-1", "Top up", AED150)
            again, token2 = await store.place_order("K1-1", "Top up", Money.of(15000, "AED"))
            assert first == again and token == token2 and token is not None
            assert token.startswith(
                "https://checkout.sandbox.payby.test/pay-page/main?BIZ_TYPE=202&ft="
            )
            assert len(first.order_no) == 18 and first.order_no.isdigit()
            code = await refused(store.place_order("K1-1", "Top up", Money.of(15001, "AED")))
            assert code == "62016"
            await store.cancel_order(merchant_order_no="K1-1")
            failed, token3 = await store.place_order("K1-1", "Top up", AED150)
            assert failed.status is OrderStatus.FAILURE and token3 is None

    run(main)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"paySceneParams": {}}, "62043"),
        ({"paySceneParams": {"businessType": "GROCERIES"}}, "62044"),
        ({"paySceneCode": "PAYPAGE"}, "62012"),
        ({"expiredTime": "soon"}, "400"),
        ({"merchantOrderNo": "no spaces"}, "400"),
        ({"totalAmount": {"currency": "AED", "amount": Decimal("1.001")}}, "400"),
        ({"totalAmount": {"currency": "AED", "amount": 0}}, "400"),
        ({"totalAmount": {"currency": "XYZ", "amount": 1}}, "400"),
        ({"subject": None}, "400"),
    ],
)
def test_place_order_validation(sb: Sandbox, changes: dict[str, object], code: str) -> None:
    biz: dict[str, object] = {
        "merchantOrderNo": "K1-2",
        "subject": "Top up",
        "totalAmount": money_out(AED150),
        "paySceneCode": "CASHTOPUP",
        "paySceneParams": {"businessType": "GAME_TOP_UP"},
    }
    biz.update(changes)
    biz = {k: v for k, v in biz.items() if v is not None}
    assert code_of(raw_call(sb, "/acquire2/placeOrder", biz)) == code


def test_expired_time_bounds(sb: Sandbox) -> None:
    async def main() -> None:
        now = sb.clock.now_ms()
        async with clients(sb, clock=lambda: now) as (store, _):
            late = store.place_order("K1-3", "s", AED150, expired_time_ms=now + 48 * 3_600_000 + 1)
            assert await refused(late) == "62009"
            early = store.place_order("K1-4", "s", AED150, expired_time_ms=now - 1)
            assert await refused(early) == "62008"
            edge, _ = await store.place_order(
                "K1-5", "s", AED150, expired_time_ms=now + 48 * 3_600_000
            )
            assert edge.status is OrderStatus.CREATED

    run(main)


def test_request_time_window(sb: Sandbox) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            for skew, msg in ((-16, "REQUESTTIME_TOO_EARLY"), (16, "REQUESTTIME_TOO_LATER")):
                client = make_client(
                    http, sb, "store", STORE, clock=lambda s=skew: sb.clock.now_ms() + s * 60_000
                )
                with pytest.raises(ProviderRefused, match=msg) as err:
                    await client.get_balance("AED")
                assert err.value.code == "400"
            ok = make_client(
                http, sb, "store", STORE, clock=lambda: sb.clock.now_ms() - 14 * 60_000
            )
            await ok.get_balance("AED")

    run(main)


# --- cancel, expiry, settlement --------------------------------------------------------------


def test_cancel_rules(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, online):
            created = new_order(sb)
            cancelled = await online.cancel_order(order_no=created["orderNo"])
            assert cancelled.status is OrderStatus.FAILURE
            assert await refused(online.cancel_order(order_no=created["orderNo"])) == "62002"
            assert await refused(online.cancel_order(merchant_order_no="nope")) == "62004"
            assert await refused(online.cancel_order(order_no="1" * 18)) == "62035"
            # the store that did not create it cannot cancel it
            assert await refused(store.cancel_order(order_no=created["orderNo"])) == "62035"
            paid = new_order(sb)
            await pay(store, paid, "P-c")
            assert await refused(online.cancel_order(order_no=paid["orderNo"])) == "62001"
            hook(sb, "POST", "/clock", {"advance_s": 86_400})
            assert await refused(online.cancel_order(order_no=paid["orderNo"])) == "62003"
            assert (await store.get_order(order_no=paid["orderNo"])).status is OrderStatus.SETTLED

    run(main)


def test_expiry_through_the_clock_hook(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, online):
            created = new_order(sb)
            assert (
                await store.resolve_token_url(created["tokenUrl"])
            ).status is OrderStatus.CREATED
            assert hook(sb, "POST", "/clock", {"advance_s": 3601}).status_code == 200
            assert await refused(store.resolve_token_url(created["tokenUrl"])) == "62082"
            assert (
                await online.get_order(order_no=created["orderNo"])
            ).status is OrderStatus.CREATED
            hook(sb, "POST", "/clock", {"advance_s": 3600})
            expired = await online.get_order(order_no=created["orderNo"])
            assert expired.status is OrderStatus.FAILURE and expired.fail_code == "504"
            assert await refused(pay(store, created, "P-e")) == "62082"

    run(main)


def test_the_kiosk_clock_falls_out_of_the_window_when_sandbox_time_moves(sb: Sandbox) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            wall = make_client(http, sb, "store", STORE, clock=lambda: sb.clock.now_ms())
            await wall.get_balance("AED")
            start = sb.clock.now_ms()
            stuck = make_client(http, sb, "store", STORE, clock=lambda: start)
            hook(sb, "POST", "/clock", {"advance_s": 901})
            with pytest.raises(ProviderRefused, match="TOO_EARLY"):
                await stuck.get_balance("AED")

    run(main)


# --- store side: resolve and pay -------------------------------------------------------------


def test_pay_is_idempotent_on_store_payment_no(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, online):
            created = new_order(sb)
            order = await store.resolve_token_url(created["tokenUrl"])
            assert order.total == AED150 and order.order_no == created["orderNo"]
            assert await refused(pay(store, created, "P-1", Money.of(14999, "AED"))) == "400"
            paid = await pay(store, created, "P-1")
            again = await pay(store, created, "P-1")
            assert paid == again
            assert paid.status is OrderStatus.PAID_SUCCESS and paid.payer_mid == STORE
            assert await refused(pay(store, created, "P-2")) == "62001"
            assert sb.payby.balances(STORE)["AED"] == Money.of(100_000 - 15000, "AED")
            assert sb.payby.balances(ONLINE)["AED"] == AED150
            assert await store.get_balance("AED") == Money.of(85_000, "AED")
            # the paying store can read the order by orderNo (crash recovery); others cannot
            assert (
                await store.get_order(order_no=order.order_no)
            ).status is OrderStatus.PAID_SUCCESS
            assert await refused(store.get_order(merchant_order_no=created["merchantOrderNo"])) == (
                "62004"
            )
            assert (await online.get_order(merchant_order_no=created["merchantOrderNo"])) == paid

    run(main)


def test_pay_refusals(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, online):
            assert await refused(store.resolve_token_url("https://evil.test/x")) == "62082"
            big = new_order(sb, amount="1000.01")
            assert await refused(pay(store, big, "P-big", Money.of(100_001, "AED"))) == "62099"
            assert (await store.resolve_token_url(big["tokenUrl"])).status is OrderStatus.CREATED
            assert sb.payby.balances(STORE)["AED"] == Money.of(100_000, "AED")
            cancelled = new_order(sb)
            await online.cancel_order(order_no=cancelled["orderNo"])
            assert await refused(pay(store, cancelled, "P-x")) == "62002"
            other = new_order(sb)
            mismatch = {"tokenUrl": other["tokenUrl"], "orderNo": big["orderNo"]}
            assert await refused(pay(store, mismatch, "P-y")) == "400"

    run(main)


def test_two_kiosks_racing_for_one_order_debit_once(sb: Sandbox) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            one = make_client(http, sb, "store", STORE)
            two = make_client(http, sb, "other", OTHER_STORE)
            created = new_order(sb)
            results = await asyncio.gather(
                *(pay(client, created, f"P-race-{i}") for i, client in enumerate([one, two] * 3)),
                return_exceptions=True,
            )
            paid = [r for r in results if isinstance(r, AcquireOrder)]
            refusals = [r for r in results if isinstance(r, ProviderRefused)]
            assert len(paid) == 1 and len(refusals) == 5
            assert {r.code for r in refusals} == {"62001"}
            total = sb.payby.balances(STORE)["AED"] + sb.payby.balances(OTHER_STORE)["AED"]
            assert total == Money.of(200_000 - 15000, "AED")

    run(main)


def test_drop_response_fault_pay_took_effect(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, _):
            created = new_order(sb)
            armed = hook(sb, "POST", "/payby/faults", {"op": "payOrder", "mode": "drop_response"})
            assert armed.json()["armed"] == 1
            with pytest.raises(ProviderAmbiguous):
                await pay(store, created, "P-drop")
            recovered = await store.get_order(order_no=created["orderNo"])
            assert recovered.status is OrderStatus.PAID_SUCCESS
            repeat = await pay(store, created, "P-drop")
            assert repeat.status is OrderStatus.PAID_SUCCESS
            assert sb.payby.balances(STORE)["AED"] == Money.of(85_000, "AED")

    run(main)


def test_error_500_fault_has_no_effect_and_delay_fault_times_out(sb: Sandbox) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            store = make_client(http, sb, "store", STORE, read_s=0.2)
            created = new_order(sb)
            hook(sb, "POST", "/payby/faults", {"op": "payOrder", "mode": "error_500"})
            with pytest.raises(ProviderAmbiguous, match="HTTP 500"):
                await pay(store, created, "P-500")
            assert sb.payby.order_view(created["orderNo"])["status"] == "CREATED"  # type: ignore[index]
            delay = {"op": "resolveToken", "mode": "delay", "delay_s": 0.5}
            hook(sb, "POST", "/payby/faults", delay)
            await store.get_balance("AED")  # faults are per operation
            with pytest.raises(ProviderAmbiguous):
                await store.resolve_token_url(created["tokenUrl"])
            assert (await store.resolve_token_url(created["tokenUrl"])).status is (
                OrderStatus.CREATED
            )  # count 1: used up
            bad = hook(sb, "POST", "/payby/faults", {"op": "nope", "mode": "delay"})
            assert bad.status_code == 400

    run(main)


# --- revoke and refunds ----------------------------------------------------------------------


async def _paid(sb: Sandbox, store: PayByClient, amount: str = "150.00", code: str = "AED") -> str:
    created = new_order(sb, amount, code)
    await pay(store, created, f"P-{created['orderNo']}", Money.from_decimal(amount, code))
    return created["orderNo"]


def test_revoke_paid_and_settled_orders(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, online):
            paid = await _paid(sb, store)
            revoked = await online.revoke_order(order_no=paid)
            assert revoked.status is OrderStatus.FAILURE and revoked.revoked
            assert sb.payby.balances(STORE)["AED"] == Money.of(100_000, "AED")
            assert await refused(online.refund("R-0", AED150, origin_order_no=paid)) == "62040"
            settled = await _paid(sb, store)
            hook(sb, "POST", "/clock", {"advance_s": 86_401})
            again = await online.revoke_order(order_no=settled)
            assert again.status is OrderStatus.SETTLED and again.revoked
            assert sb.payby.balances(STORE)["AED"] == Money.of(100_000, "AED")
            unpaid = new_order(sb)
            assert (await online.revoke_order(order_no=unpaid["orderNo"])).status is (
                OrderStatus.FAILURE
            )

    run(main)


def test_refund_rules(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, online):
            unpaid = new_order(sb)
            assert (
                await refused(online.refund("R-1", AED150, origin_order_no=unpaid["orderNo"]))
                == "62015"
            )
            paid = await _paid(sb, store)
            part = await online.refund("R-2", Money.of(5000, "AED"), origin_order_no=paid)
            assert part.status is RefundStatus.SUCCESS
            assert await online.refund("R-2", Money.of(5000, "AED"), origin_order_no=paid) == part
            assert (
                await refused(online.refund("R-2", Money.of(4000, "AED"), origin_order_no=paid))
                == "62017"
            )
            assert (
                await refused(online.refund("R-3", Money.of(10001, "AED"), origin_order_no=paid))
                == "62006"
            )
            rest = await online.refund("R-3", Money.of(10000, "AED"), origin_order_no=paid)
            assert await online.get_refund(refund_merchant_order_no="R-3") == rest
            assert await online.get_refund(order_no=rest.order_no) == rest
            assert await refused(online.get_refund(refund_merchant_order_no="R-9")) == "62007"
            assert await refused(online.revoke_order(order_no=paid)) == "62041"
            assert sb.payby.balances(STORE)["AED"] == Money.of(100_000, "AED")
            view = sb.payby.order_view(paid)
            assert view is not None and view["status"] == "PAID_SUCCESS"

    run(main)


def test_busd_refund_with_eight_decimals(sb: Sandbox) -> None:
    sb.payby.register_merchant(STORE, None, Money.from_decimal("10", "BUSD"))

    async def main() -> None:
        async with clients(sb) as (store, online):
            paid = await _paid(sb, store, "1.01", "BUSD")
            amount = Money.from_decimal("0.12345678", "BUSD")
            refund = await online.refund("R-B", amount, origin_order_no=paid)
            assert refund.amount == amount
            assert sb.payby.balances(STORE)["BUSD"] == Money.from_decimal("9.11345678", "BUSD")

    run(main)


def test_get_balance_unsupported_currency(sb: Sandbox) -> None:
    async def main() -> None:
        async with clients(sb) as (store, _):
            assert await refused(store.get_balance("EUR")) == "78001"
            assert await store.get_balance("BUSD") == Money.zero("BUSD")

    run(main)


# --- hooks, persistence, notifications -------------------------------------------------------


def test_hooks(sb: Sandbox) -> None:
    pem = keys("store")[1].decode()
    balance = {"currency": "AED", "amount": "12.34"}
    reply = hook(
        sb,
        "POST",
        "/payby/merchants",
        {"partnerId": STORE, "publicKeyPem": pem, "balance": balance},
    )
    assert reply.json() == {"partnerId": STORE, "balances": {"AED": "12.34"}}
    assert hook(sb, "GET", f"/payby/balance/{STORE}").json()["balances"] == {"AED": "12.34"}
    assert hook(sb, "GET", "/payby/public-key").text.encode() == sb.payby.public_key_pem
    bad = hook(sb, "POST", "/payby/merchants", {"partnerId": STORE, "publicKeyPem": "nope"})
    assert bad.status_code == 400 and "error" in bad.json()
    assert (
        hook(sb, "POST", "/payby/orders", {"amount": "1.001", "currency": "AED"}).status_code == 400
    )
    created = new_order(sb, "7.00")
    assert created["status"] == "CREATED"
    view = hook(sb, "GET", f"/payby/orders/{created['orderNo']}").json()
    assert view["totalAmount"] == {"currency": "AED", "amount": "7.00"}
    assert view["tokenUrl"] == created["tokenUrl"]
    assert hook(sb, "GET", "/payby/orders/1").status_code == 404
    assert hook(sb, "GET", "/payby/nothing").status_code == 404
    assert hook(sb, "POST", "/clock", {"advance_s": -1}).status_code == 400
    assert httpx.get(sb.url + "/sgs/api/acquire2/getOrder").status_code == 405
    assert httpx.post(sb.url + "/sgs/api/acquire2/nothing").status_code == 404


def test_notification_recorded_and_signed(sb: Sandbox) -> None:
    async def main() -> str:
        async with clients(sb) as (store, _):
            return await _paid(sb, store)

    order_no = run(main)
    (note,) = hook(sb, "GET", "/payby/notifications").json()
    assert note["kind"] == "acquireOrder" and note["orderNo"] == order_no
    body = note["body"].encode()
    assert Verifier(sb.payby.public_key_pem).verify(body, note["sign"])
    doc = loads(body)
    assert isinstance(doc, dict) and doc["acquireOrder"]["status"] == "PAID_SUCCESS"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    with start_sandbox(tmp_path) as first:
        first.payby.register_merchant(STORE, keys("store")[1], Money.of(500, "AED"))
        created = first.payby.create_order(AED150)
        key = first.payby.public_key_pem
        hook(first, "POST", "/clock", {"advance_s": 60})
    with start_sandbox(tmp_path) as second:
        assert second.payby.public_key_pem == key
        assert second.payby.balances(STORE) == {"AED": Money.of(500, "AED")}
        view = second.payby.order_view(str(created["orderNo"]))
        assert view is not None and view["status"] == "CREATED"
        assert second.clock.now_ms() - time.time_ns() // 1_000_000 >= 59_000


def test_sandbox_binds_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_sandbox(tmp_path, host="0.0.0.0")


# --- cash-out: the kiosk's own DYNQR order, paid in the PayBy app ---------------------------

CUSTOMER = "100000000777"


def dynqr_order(sb: Sandbox, number: str, amount: str = "150.00", currency: str = "AED") -> str:
    """The kiosk (STORE) creates a DYNQR order; its orderNo (the reply checked as documented)."""
    doc = raw_call(
        sb,
        "/acquire2/placeOrder",
        {
            "merchantOrderNo": number,
            "subject": "Cash-out",
            "totalAmount": {"currency": currency, "amount": amount},
            "paySceneCode": "DYNQR",
            "paySceneParams": {"oneTimePayment": "true"},
        },
    )
    assert code_of(doc) == "0", doc
    body = doc["body"]
    assert isinstance(body, dict)
    order = body["acquireOrder"]
    assert order["status"] == "CREATED" and order["paySceneCode"] == "DYNQR"
    assert order["payeeMid"] == STORE
    assert str(body["interActionParams"]["tokenUrl"]).startswith("https://")
    return str(order["orderNo"])


def app_pay(sb: Sandbox, order_no: str, payer: str = CUSTOMER) -> httpx.Response:
    return hook(sb, "POST", f"/payby/orders/{order_no}/app-pay", {"payer": payer})


def refund_call(sb: Sandbox, number: str, order_no: str, amount: str) -> dict[str, object]:
    return raw_call(
        sb,
        "/acquire2/refund/placeOrder",
        {
            "refundMerchantOrderNo": number,
            "originOrderNo": order_no,
            "amount": {"currency": "AED", "amount": amount},
        },
    )


def remaining(doc: dict[str, object]) -> Decimal:
    body = doc["body"]
    assert isinstance(body, dict)
    return Decimal(str(body["refundSummary"]["remainRefundAmount"]["amount"]))


def test_dynqr_order_paid_in_the_app_then_refunded_in_parts(sb: Sandbox) -> None:
    order_no = dynqr_order(sb, "CO-1")

    async def main() -> None:
        async with clients(sb) as (store, _):
            assert (await store.get_order(order_no=order_no)).status is OrderStatus.CREATED
            paid = app_pay(sb, order_no)
            assert paid.status_code == 200, paid.text
            assert paid.json()["status"] == "PAID_SUCCESS"
            order = await store.get_order(merchant_order_no="CO-1")
            assert order.status is OrderStatus.PAID_SUCCESS and order.payer_mid == CUSTOMER
            assert sb.payby.balances(STORE)["AED"] == Money.of(115_000, "AED")
            assert app_pay(sb, order_no).status_code == 409  # paid once only

            first = refund_call(sb, "CO-1-R1", order_no, "50.00")
            assert code_of(first) == "0" and remaining(first) == Decimal("100.00")
            again = refund_call(sb, "CO-1-R1", order_no, "50.00")  # the same refund again
            assert remaining(again) == Decimal("100.00")
            assert again["body"]["refundOrder"] == first["body"]["refundOrder"]  # type: ignore[index]
            assert sb.payby.balances(STORE)["AED"] == Money.of(110_000, "AED")
            rest = refund_call(sb, "CO-1-R2", order_no, "100.00")
            assert code_of(rest) == "0" and remaining(rest) == Decimal("0.00")
            assert code_of(refund_call(sb, "CO-1-R3", order_no, "0.01")) == "62006"
            assert sb.payby.balances(STORE)["AED"] == Money.of(100_000, "AED")
            got = await store.get_refund(refund_merchant_order_no="CO-1-R2")
            assert got.status is RefundStatus.SUCCESS and got.amount == Money.of(10_000, "AED")
            view = sb.payby.order_view(order_no)
            assert view is not None and view["status"] == "PAID_SUCCESS"

    run(main)


def test_dynqr_refund_idempotent_through_the_client(sb: Sandbox) -> None:
    order_no = dynqr_order(sb, "CO-2")
    assert app_pay(sb, order_no).status_code == 200

    async def main() -> None:
        async with clients(sb) as (store, _):
            part = Money.of(2500, "AED")
            one = await store.refund("CO-2-R", part, origin_order_no=order_no)
            two = await store.refund("CO-2-R", part, origin_order_no=order_no)
            assert one == two and one.status is RefundStatus.SUCCESS
            assert sb.payby.balances(STORE)["AED"] == Money.of(112_500, "AED")
            assert sb.payby.balances(CUSTOMER)["AED"] == Money.of(-12_500, "AED")

    run(main)


def test_fail_next_refund_hook(sb: Sandbox) -> None:
    order_no = dynqr_order(sb, "CO-3")
    assert app_pay(sb, order_no).status_code == 200
    armed = hook(
        sb,
        "POST",
        "/payby/refunds/fail-next",
        {"originOrderNo": order_no, "failCode": "92004", "failDes": "Channel rejection"},
    )
    assert armed.status_code == 200, armed.text
    assert hook(sb, "POST", "/payby/refunds/fail-next", {"originOrderNo": "1"}).status_code == 404

    async def main() -> None:
        async with clients(sb) as (store, _):
            failed = await store.refund("CO-3-R1", AED150, origin_order_no=order_no)
            assert failed.status is RefundStatus.FAILURE
            assert (failed.fail_code, failed.fail_des) == ("92004", "Channel rejection")
            assert await store.get_refund(refund_merchant_order_no="CO-3-R1") == failed
            assert await store.refund("CO-3-R1", AED150, origin_order_no=order_no) == failed
            assert sb.payby.balances(STORE)["AED"] == Money.of(115_000, "AED")  # nothing moved
            ok = await store.refund("CO-3-R2", AED150, origin_order_no=order_no)  # fail once only
            assert ok.status is RefundStatus.SUCCESS
            assert sb.payby.balances(STORE)["AED"] == Money.of(100_000, "AED")

    run(main)
    # defaults: the refundOrder failCode/failDes example of PayBy's docs
    other = dynqr_order(sb, "CO-4")
    assert app_pay(sb, other).status_code == 200
    reply = hook(sb, "POST", "/payby/refunds/fail-next", {"originOrderNo": other})
    assert reply.json()["failCode"] == "62002"
    doc = refund_call(sb, "CO-4-R", other, "1.00")
    refund = doc["body"]["refundOrder"]  # type: ignore[index]
    assert refund["status"] == "FAILURE" and refund["failCode"] == "62002"
    assert remaining(doc) == Decimal("150.00")


def test_app_pay_refusals(sb: Sandbox) -> None:
    cancelled = dynqr_order(sb, "CO-5")
    assert code_of(raw_call(sb, "/acquire2/cancelOrder", {"orderNo": cancelled})) == "0"
    reply = app_pay(sb, cancelled)
    assert reply.status_code == 409 and "FAILURE" in reply.json()["error"]
    expiring = dynqr_order(sb, "CO-6")
    hook(sb, "POST", "/clock", {"advance_s": 2 * 3600 + 1})
    assert app_pay(sb, expiring).status_code == 409
    view = sb.payby.order_view(expiring)
    assert view is not None and view["status"] == "FAILURE"
    assert app_pay(sb, "1").status_code == 404
    topup = new_order(sb)  # a cash top-up is paid by a store, not in the app
    assert app_pay(sb, topup["orderNo"]).status_code == 409
    assert hook(sb, "POST", f"/payby/orders/{topup['orderNo']}/app-pay", {}).status_code == 400
    own = dynqr_order(sb, "CO-7")
    assert app_pay(sb, own, payer=STORE).status_code == 409


def test_dynqr_place_order_rules(sb: Sandbox) -> None:
    biz: dict[str, object] = {
        "merchantOrderNo": "CO-8",
        "subject": "Cash-out",
        "totalAmount": {"currency": "AED", "amount": "20.00"},
        "paySceneCode": "DYNQR",
    }
    first = raw_call(sb, "/acquire2/placeOrder", biz)
    assert code_of(first) == "0" and first["body"]["acquireOrder"]["paySceneParams"] == {}  # type: ignore[index]
    assert raw_call(sb, "/acquire2/placeOrder", biz)["body"] == first["body"]
    bad = {**biz, "merchantOrderNo": "CO-9", "paySceneParams": {"oneTimePayment": "maybe"}}
    assert code_of(raw_call(sb, "/acquire2/placeOrder", bad)) == "62073"
    assert code_of(raw_call(sb, "/acquire2/placeOrder", {**biz, "paySceneCode": "QRPAY"})) == (
        "62012"
    )
    # a store cannot pay a DYNQR order through the cash top-up side
    token = first["body"]["interActionParams"]["tokenUrl"]  # type: ignore[index]
    doc = raw_call(sb, "/acquire2/cashTopUp/resolveToken", {"tokenUrl": token})
    assert code_of(doc) == "62012"


def test_busd_is_refunded_through_the_crypto_refund_only(sb: Sandbox) -> None:
    order_no = dynqr_order(sb, "CO-B", "10.00000000", "BUSD")
    assert app_pay(sb, order_no).status_code == 200
    busd = {"currency": "BUSD", "amount": "1.00000001"}
    aed = {"currency": "AED", "amount": "1.00"}
    for path, amount in (("/acquire2/refund/placeOrder", busd), ("/crypto/refund/placeOrder", aed)):
        biz = {"refundMerchantOrderNo": "CO-B-R", "originOrderNo": order_no, "amount": amount}
        assert code_of(raw_call(sb, path, biz)) == "400"
    biz = {"refundMerchantOrderNo": "CO-B-R", "originOrderNo": order_no, "amount": busd}
    assert code_of(raw_call(sb, "/crypto/refund/placeOrder", biz)) == "0"
