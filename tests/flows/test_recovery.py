"""Recovery of an interrupted PayBy cash-in at each state of its machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.validator.base import Note, PowerUpReport
from kiosk.flows.payby_cashin import JOURNEY as PAYBY_CASHIN
from kiosk.flows.recovery import recover
from kiosk.journal import Tx
from kiosk.journeys import TERMINAL
from kiosk.money import Money
from tests.flows.recovery_helpers import PAYBY_CASHIN_PATH, at_state
from tests.flows.rig import Rig, rig, run

NOTE = Note(channel=2, value=5000, currency="AED")


async def recovered(r: Rig, report: PowerUpReport | None = None) -> Tx:
    (tx,) = await recover(r.ctx, report or PowerUpReport())
    assert tx.state in TERMINAL | {"pending"}
    return tx


async def forward(r: Rig, tx: Tx) -> Tx:
    """What the daemon's background forwarder does for this transaction's outbox row."""
    j = r.ctx.journal
    (row,) = await j.call(j.sync.outbox_rows, tx.id)
    forwarder = r.ctx.outbox()
    async with forwarder.hold(row["id"]):
        await forwarder.step(row["id"])
    return await j.call(j.sync.get, tx.id)


def test_every_non_terminal_state_is_covered() -> None:
    covered = {*PAYBY_CASHIN_PATH, "pay_unknown"}
    assert covered == PAYBY_CASHIN.states - TERMINAL - {"completed"}


def test_resolving_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await at_state(r, "resolving")
            tx = await recovered(r)
            assert (tx.state, tx.reason) == ("refused", "interrupted")

    run(scenario)


@pytest.mark.parametrize(
    ("credited", "in_flight", "report", "state", "owed"),
    [
        (0, None, PowerUpReport(), "cancelled", 0),
        (10000, None, PowerUpReport(), "owed", 10000),
        (10000, 5000, PowerUpReport(stacked=NOTE), "owed", 15000),  # device: it is stacked
        (0, 5000, PowerUpReport(in_escrow=NOTE), "cancelled", 0),  # device: it was returned
        (10000, 5000, PowerUpReport(), "owed", 15000),  # nobody knows: owed, unconfirmed
    ],
    ids=["no-notes", "notes", "in-flight-stacked", "in-flight-returned", "in-flight-unknown"],
)
def test_accepting(
    tmp_path: Path,
    credited: int,
    in_flight: int | None,
    report: PowerUpReport,
    state: str,
    owed: int,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await at_state(r, "accepting", credited=credited, in_flight=in_flight)
            tx = await recovered(r, report)
            assert (tx.state, tx.owed) == (state, owed)
            j = r.ctx.journal
            assert not await j.call(j.sync.effects, tx.id, status="intent")
            if owed:
                assert (r.ctx.config.receipts_dir / f"{tx.ref}-owed.txt").exists()

    run(scenario)


@pytest.mark.parametrize("state", ["paying", "pending"])
def test_a_pay_that_reached_payby_is_pending_then_paid_once(tmp_path: Path, state: str) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("150.00")
            tx = await at_state(r, state, order=order, credited=15000)
            assert "payby" in r.ctx.clients  # the pay went out just before the power cut
            await r.ctx.client("payby").pay_token_order(
                order["tokenUrl"],
                order_no=order["orderNo"],
                amount=Money.of(15000, "AED"),
                payment_no=f"{tx.ref}-pay",
                device_id="KSK-DEMO",
            )
            tx = await recovered(r)  # no provider call at start-up
            assert (tx.state, tx.owed) == ("pending", 0)
            if state == "paying":  # the customer may still be there: a PENDING receipt
                assert (r.ctx.config.receipts_dir / f"{tx.ref}-pending.txt").exists()
            tx = await forward(r, tx)  # the same request again: PayBy says paid
            assert (tx.state, tx.owed) == ("completed", 0)
            assert r.balance() == "850.00"

    run(scenario)


def test_a_pay_that_never_left_is_sent_again_and_paid(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await at_state(r, "paying", credited=15000)
            tx = await forward(r, await recovered(r))
            assert (tx.state, tx.owed) == ("completed", 0)
            assert r.balance() == "850.00"

    run(scenario)


def test_a_legacy_pay_unknown_is_owed_only_once_its_request_is_void(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tx = await at_state(r, "pay_unknown", credited=15000)
            tx = await recovered(r)
            assert tx.state == "pending"
            tx = await forward(r, tx)  # getOrder: CREATED, but the old request may land
            assert (tx.state, tx.owed) == ("pending", 0)
            r.hook("clock", {"advance_s": 15 * 60 + 121})  # past requestTime + 15 min + margin
            tx = await forward(r, tx)
            assert (tx.state, tx.owed) == ("owed", 15000)
            assert r.balance() == "1000.00"

    run(scenario)


def test_recovery_never_waits_on_payby(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            for _ in range(2):
                await at_state(r, "paying", credited=15000)
            r.hook("payby/faults", {"op": "getOrder", "mode": "hold", "delay_s": 30})
            r.hook("payby/faults", {"op": "payOrder", "mode": "hold", "delay_s": 30})
            txs = await recover(r.ctx, PowerUpReport())
            assert [t.state for t in txs] == ["pending", "pending"]
            assert r.sleeps == []  # no backoff, no provider call: READY comes at once
            r.hook("payby/faults", {"clear": True})

    run(scenario)


def test_paid_is_completed_with_its_receipt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await at_state(r, "paid", credited=15000)
            tx = await recovered(r)
            assert tx.state == "completed"
            assert (r.ctx.config.receipts_dir / f"{tx.ref}-cashin.txt").exists()

    run(scenario)
