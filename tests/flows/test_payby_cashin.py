"""The PayBy Cash Top Up journey, branch by branch, in process against the sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from drivers.panel import PanelState
from drivers.printer.base import PaperState
from drivers.validator.base import FaultKind
from kiosk.flows.payby_cashin import PayByCashIn
from kiosk.journal import Tx
from tests.flows.rig import Rig, rig, run


async def start(r: Rig, token_url: str) -> asyncio.Task[Tx]:
    task = asyncio.create_task(PayByCashIn(r.ctx, token_url).run())
    await r.until(lambda: r.panel.state == PanelState.INSERT_NOTES or task.done())
    return task


def test_happy_path_pays_the_order_once_and_prints(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("150.00")
            task = await start(r, order["tokenUrl"])
            await r.insert(10000)
            await r.insert(20000)  # would overpay: returned from escrow
            await r.insert(5000)
            tx = await task
            assert (tx.state, tx.credited, tx.owed) == ("completed", 15000, 0)
            assert r.hook(f"payby/orders/{order['orderNo']}")["status"] == "PAID_SUCCESS"
            assert r.balance() == "850.00"
            assert r.validator.cashbox() == {10000: 1, 5000: 1}
            text = (r.ctx.config.receipts_dir / f"{tx.ref}-cashin.txt").read_text()
            for needle in (
                tx.ref,
                order["orderNo"],
                "AED 150.00",
                "AED 100.00, AED 50.00",
                "PAID",
                "KSK-DEMO",
            ):
                assert needle in text
            assert r.panel.state == PanelState.DONE
            j = r.ctx.journal
            kinds = [e["kind"] for e in await j.call(j.sync.events, tx.id)]
            assert kinds.count("stack.intent") == kinds.count("stack.done") == 2
            assert kinds.index("pay.intent") < kinds.index("pay.done")
            assert "note.returned" in kinds

    run(scenario)


def test_balance_short_refuses_before_any_note(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, balance="100.00") as r:
            tx = await (await start(r, r.order("150.00")["tokenUrl"]))
            assert (tx.state, tx.reason) == ("refused", "store_balance_short")
            assert r.validator.state()["enabled"] is False
            assert r.panel.state == PanelState.REFUSED

    run(scenario)


def test_unknown_token_and_replayed_code_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            bogus = "https://checkout.sandbox.payby.test/pay-page/main?ft=00&t=1"
            tx = await (await start(r, bogus))
            assert tx.state == "refused" and tx.reason == "order_not_payable:62082"
            order = r.order("10.00")
            task = await start(r, order["tokenUrl"])
            await r.insert(1000)
            assert (await task).state == "completed"
            again = await (await start(r, order["tokenUrl"]))
            assert (again.state, again.reason) == ("refused", "code_already_used")

    run(scenario)


def test_cancel_without_notes_is_cancelled_with_notes_is_owed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            task = await start(r, r.order()["tokenUrl"])
            r.press(6)
            tx = await task
            assert (tx.state, tx.owed) == ("cancelled", 0)

            order = r.order()
            task = await start(r, order["tokenUrl"])
            await r.insert(5000)
            r.press(5)  # confirm cannot pay a part of the order: ignored
            r.press(6)
            tx = await task
            assert (tx.state, tx.credited, tx.owed) == ("owed", 5000, 5000)
            (liability,) = await r.ctx.journal.call(r.ctx.journal.sync.liabilities)
            assert liability["amount"] == 5000 and liability["reason"] == "ended_by_cancel"
            text = (r.ctx.config.receipts_dir / f"{tx.ref}-owed.txt").read_text()
            assert "OWED TO YOU: AED 50.00" in text and tx.ref in text
            assert r.hook(f"payby/orders/{order['orderNo']}")["status"] == "CREATED"

    run(scenario)


def test_inactivity_timeout_with_notes_in_is_owed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, inactivity_timeout_s=0.3) as r:
            task = await start(r, r.order()["tokenUrl"])
            await r.insert(10000)
            tx = await task
            assert (tx.state, tx.reason, tx.owed) == ("owed", "ended_by_timeout", 10000)

    run(scenario)


def test_lost_pay_reply_is_settled_with_get_order_and_paid_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("150.00")
            r.hook("payby/faults", {"op": "payOrder", "mode": "drop_response"})
            task = await start(r, order["tokenUrl"])
            await r.insert(10000)
            await r.insert(5000)
            tx = await task
            assert tx.state == "completed"
            assert r.balance() == "850.00"  # debited once
            j = r.ctx.journal
            pays = await j.call(j.sync.effects, tx.id, kind="pay")
            assert [p.status for p in pays] == ["done"]  # one effect, delivered twice
            (row,) = await j.call(j.sync.outbox_rows, tx.id)
            assert (row["status"], row["attempts"]) == ("done", 1)
            assert row["result"]["in_doubt"] is True
            states = [
                e["to_state"]
                for e in await j.call(j.sync.events, tx.id)
                if e["kind"] == "transition"
            ]
            assert states == ["accepting", "paying", "paid", "completed"]

    run(scenario)


def test_pay_that_never_arrived_is_sent_again_with_the_same_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.hook("payby/faults", {"op": "payOrder", "mode": "error_500"})
            task = await start(r, r.order("50.00")["tokenUrl"])
            await r.insert(5000)
            tx = await task
            assert tx.state == "completed" and r.balance() == "950.00"
            j = r.ctx.journal
            (pay,) = await j.call(j.sync.effects, tx.id, kind="pay")
            assert (pay.status, pay.idem_key) == ("done", f"{tx.ref}-pay")
            (row,) = await j.call(j.sync.outbox_rows, tx.id)
            assert row["idem_key"] == f"{tx.ref}-pay" and row["attempts"] == 1
            assert row["sealed"] is None if "sealed" in row else True  # wiped once settled

    run(scenario)


def test_order_expired_while_inserting_is_owed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            task = await start(r, r.order("150.00")["tokenUrl"])
            await r.insert(10000)
            r.hook("clock", {"advance_s": 3 * 3600})  # past the order's expiry
            await r.insert(5000)
            tx = await task
            assert tx.state == "owed" and tx.reason.startswith("pay_refused:")
            assert tx.owed == 15000 and r.balance() == "1000.00"

    run(scenario)


def test_validator_fault_mid_journey_is_owed_and_out_of_service(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            task = await start(r, r.order()["tokenUrl"])
            await r.insert(10000)
            r.validator.fault(FaultKind.CASHBOX_REMOVED)
            tx = await task
            assert (tx.state, tx.owed) == ("owed", 10000)
            assert r.ctx.out_of_service.is_set()

    run(scenario)


def test_paper_out_never_blocks_the_payment(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.printer.set_paper(PaperState.OUT)
            task = await start(r, r.order("50.00")["tokenUrl"])
            await r.insert(5000)
            tx = await task
            assert tx.state == "completed"
            (receipt,) = await r.ctx.journal.call(r.ctx.journal.sync.receipts, tx.id)
            assert receipt["status"] == "queued" and receipt["last_error"]

    run(scenario)


class ForgedRefusal(httpx.AsyncBaseTransport):
    """The pay reaches PayBy and takes effect; the kiosk is handed a forged, unsigned
    refusal instead of the reply (PayBy tolerates unsigned replies on some error codes)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/cashTopUp/payOrder"):
            return response
        await response.aread()
        await response.aclose()
        head = {"applyStatus": "FAIL", "code": "400", "msg": "INVALID_PARAMETER"}
        return httpx.Response(200, json={"head": head})

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_refusal_is_confirmed_with_get_order_before_owing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, transport=ForgedRefusal()) as r:
            task = await start(r, r.order("50.00")["tokenUrl"])
            await r.insert(5000)
            tx = await task
            assert (tx.state, tx.owed) == ("completed", 0)  # paid: nothing is owed twice
            assert r.balance() == "950.00"

    run(scenario)
