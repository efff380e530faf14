"""Issue 16: a reply that is unsigned where PayBy must sign, or wrongly signed, is refused as a
protocol error by every PayBy money call and never decides a money outcome.

Which providers sign their replies (``/work/shared/reference/providers.md``, the threat
model's provider table): **PayBy** signs every API reply (SHA256withRSA over the raw body, the
``sign`` header; unsigned only on its generic error codes, which never decide: see
``test_payby_signing.py``). Paysera signs its *callbacks* (webhooks), which this kiosk does not
take (it asks, it is never called); its API replies are not signed. Rapyd's and Cashii's
replies carry no signature. So PayBy is the one provider with a test here.

Each money call gets a reply that, signed, would decide an outcome (paid, refunded, cancelled;
or a definitive refusal, 62001) and is instead unsigned, signed with another key, altered after
signing, or carries garbage for a signature: the call raises ProviderProtocolError, neither a
result nor ProviderRefused (which a journey reads as "nothing moved"). Then, end to end, a
forged pay reply in the Cash Top Up journey: the kiosk neither takes it as paid nor as refused;
it settles the order with a signed read, and the customer is paid once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.panel import PanelState
from kiosk.errors import ProviderProtocolError
from kiosk.flows.payby_cashin import PayByCashIn
from kiosk.flows.payby_cashout import PayByCashOut
from kiosk.money import Money
from kiosk.providers.payby.client import PayByClient
from kiosk.providers.payby.wire import dumps, loads
from tests.flows.rig import rig, run
from tests.flows.test_cashout import Recycler
from tests.flows.test_payby_cashout import fast
from tests.providers.test_payby_client import fail, ok, order, signer
from tests.providers.test_payby_client import run as call_with

TOKEN = "https://checkout.payby.test/pay-page/main?BIZ_TYPE=202&ft=abc&t=1"
PAID = order(status="PAID_SUCCESS")
REFUND = {
    "refundMerchantOrderNo": "R1",
    "orderNo": "191405406113002297",
    "status": "SUCCESS",
    "amount": {"currency": "AED", "amount": Decimal("10.00")},
}

Call = Callable[[PayByClient], Awaitable[Any]]
MONEY_CALLS: dict[str, tuple[Call, dict[str, object]]] = {
    "placeOrder": (
        lambda c: c.place_order("K1-0001", "cash", Money.of(15000, "AED"), scene="DYNQR"),
        {"acquireOrder": order(), "interActionParams": {"tokenUrl": TOKEN}},
    ),
    "getOrder": (lambda c: c.get_order(order_no="131658300517875854"), {"acquireOrder": PAID}),
    "cancelOrder": (
        lambda c: c.cancel_order(merchant_order_no="K1-0001"),
        {"acquireOrder": order(status="FAILURE")},
    ),
    "revokeOrder": (
        lambda c: c.revoke_order(merchant_order_no="K1-0001"),
        {"acquireOrder": order(status="PAID_SUCCESS", revoked="true")},
    ),
    "refund": (
        lambda c: c.refund("R1", Money.of(1000, "AED"), origin_order_no="131658300517875854"),
        {"refundOrder": REFUND},
    ),
    "getRefund": (lambda c: c.get_refund(refund_merchant_order_no="R1"), {"refundOrder": REFUND}),
    "getBalance": (
        lambda c: c.get_balance("AED"),
        {"balanceList": [{"availableBalance": {"currency": "AED", "amount": Decimal("5.00")}}]},
    ),
    "resolveToken": (lambda c: c.resolve_token_url(TOKEN), {"acquireOrder": order()}),
    "payOrder": (
        lambda c: c.pay_token_order(
            TOKEN,
            order_no="131658300517875854",
            amount=Money.of(15000, "AED"),
            payment_no="KSK-1-pay",
            device_id="KSK-1",
        ),
        {"acquireOrder": PAID},
    ),
}


def _reply(doc: object, how: str) -> httpx.Response:
    raw = dumps(doc)
    if how == "unsigned":
        return httpx.Response(200, content=raw)
    if how == "other key":
        return httpx.Response(200, content=raw, headers={"sign": signer("other").sign(raw)})
    if how == "altered":
        return httpx.Response(200, content=raw + b" ", headers={"sign": signer("payby").sign(raw)})
    assert how == "garbage sign"
    return httpx.Response(200, content=raw, headers={"sign": "bm90IGEgc2lnbmF0dXJl"})


@pytest.mark.parametrize("how", ["unsigned", "other key", "altered", "garbage sign"])
@pytest.mark.parametrize("outcome", ["success", "refusal"])
@pytest.mark.parametrize("name", list(MONEY_CALLS))
def test_payby_refuses_unsigned_or_wrongly_signed_replies_on_every_money_call(
    name: str, outcome: str, how: str
) -> None:
    call, body = MONEY_CALLS[name]
    doc = ok(body) if outcome == "success" else fail("62001")
    with pytest.raises(ProviderProtocolError, match="forged"):
        call_with(lambda request: _reply(doc, how), call)
    # the same reply properly signed decides: a result, or a refusal that is not a protocol error
    signed = httpx.Response(
        200, content=dumps(doc), headers={"sign": signer("payby").sign(dumps(doc))}
    )
    try:
        call_with(lambda request: signed, call)
    except ProviderProtocolError:  # pragma: no cover - the control must not fail this way
        pytest.fail(f"{name}: a signed reply is refused as a protocol error")
    except Exception:  # a refusal: the signed control's other outcome
        assert outcome == "refusal"


class Rewriting(httpx.AsyncBaseTransport):
    """Loopback to the sandbox, each reply read whole and handed to :meth:`rewrite`."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        try:
            raw = await response.aread()
        finally:
            await response.aclose()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        raw, headers = self.rewrite(request, raw, headers)
        return httpx.Response(response.status_code, content=raw, headers=headers)

    def rewrite(
        self, request: httpx.Request, raw: bytes, headers: dict[str, str]
    ) -> tuple[bytes, dict[str, str]]:
        return raw, headers

    async def aclose(self) -> None:
        await self.inner.aclose()


def _unsigned(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "sign"}


def test_a_forged_paid_reply_decides_nothing_in_the_cash_top_up(tmp_path: Path) -> None:
    """PayBy's reply to the pay call comes back unsigned (a forger's PAID_SUCCESS): the journey
    neither completes on it nor refuses; the order is read (signed) and paid exactly once."""
    forged: list[str] = []

    class StripPaySign(Rewriting):
        def rewrite(
            self, request: httpx.Request, raw: bytes, headers: dict[str, str]
        ) -> tuple[bytes, dict[str, str]]:
            if not request.url.path.endswith("/cashTopUp/payOrder") or forged:
                return raw, headers
            forged.append(str(loads(raw)["head"]["code"]))  # type: ignore[index]
            return raw, _unsigned(headers)

    async def scenario() -> None:
        async with rig(tmp_path, transport=StripPaySign()) as r:
            o = r.order("150.00")
            task = asyncio.create_task(PayByCashIn(r.ctx, o["tokenUrl"]).run())
            await r.until(lambda: r.panel.state == PanelState.INSERT_NOTES or task.done())
            await r.insert(10000)
            await r.insert(5000)
            tx = await task
            assert forged == ["0"], forged  # the reply was a success, unsigned
            j = r.ctx.journal
            kinds = [e["kind"] for e in await j.call(j.sync.events, tx.id)]
            assert "pay.intent" in kinds
            assert tx.state != "refused", (tx.state, tx.reason)
            assert r.hook(f"payby/orders/{o['orderNo']}")["status"] == "PAID_SUCCESS"
            assert r.balance() == "850.00"  # paid once, from the store's wallet
            assert tx.owed + tx.credited == 15000, tx
            (done,) = [e for e in await j.call(j.sync.events, tx.id) if e["kind"] == "pay.done"]
            assert (
                done["data"]["settled_by"] == "getOrder"
            )  # the signed read decided, not the forgery
            assert tx.state == "completed"

    run(scenario)


def test_a_forged_paid_order_read_pays_out_nothing_in_the_cash_out(tmp_path: Path) -> None:
    """The kiosk's own order (its QR on the slip) is never paid; every read of it comes back
    saying PAID_SUCCESS, altered after PayBy signed it or with its signature stripped: no cash
    comes out, the order times out unpaid."""
    forged: list[str] = []

    class ForgePaid(Rewriting):
        def rewrite(
            self, request: httpx.Request, raw: bytes, headers: dict[str, str]
        ) -> tuple[bytes, dict[str, str]]:
            if not request.url.path.endswith("/acquire2/getOrder") or b'"CREATED"' not in raw:
                return raw, headers
            how = "stripped" if len(forged) % 2 else "altered"
            forged.append(how)
            raw = raw.replace(b'"CREATED"', b'"PAID_SUCCESS"')
            return raw, _unsigned(headers) if how == "stripped" else headers

    async def scenario() -> None:
        async with rig(tmp_path, transport=ForgePaid()) as r:
            fast(r, timeout_s=1.5)
            r.ctx.dispenser = rec = Recycler({5000: 4})
            tx = await PayByCashOut(r.ctx, Money.of(10000, "AED")).run()
            assert len(forged) >= 2, forged
            assert rec.payouts == [] and tx.dispensed == 0, (tx.state, tx.reason)
            assert tx.state != "completed", tx

    run(scenario)
