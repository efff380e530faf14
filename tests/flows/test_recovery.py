"""Recovery of an interrupted PayBy cash-in at each state of its machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.validator.base import Note, PowerUpReport
from kiosk.flows.recovery import recover
from kiosk.journal import Tx
from kiosk.journeys import PAYBY_CASHIN, TERMINAL
from kiosk.money import Money
from tests.flows.rig import Rig, rig, run

NOTE = Note(channel=2, value=5000, currency="AED")


async def at_state(
    r: Rig,
    state: str,
    *,
    order: dict[str, Any] | None = None,
    credited: int = 0,
    in_flight: int | None = None,
) -> Tx:
    """A transaction driven through the journal (as the flow would) up to ``state``."""
    j = r.ctx.journal
    s = j.sync
    tx = await j.call(s.begin, "payby_cashin", currency="AED")
    if state == "resolving":
        return tx
    order = order or r.order("150.00")
    tx = await j.call(
        s.transition, tx.id, "accepting", amount_due=15000, provider_ref=order["orderNo"]
    )
    n = 0
    for value in [10000, 5000] if credited == 15000 else [credited] if credited else []:
        n += 1
        eff = await j.call(s.intent, tx.id, "stack", f"{tx.ref}-note{n}", amount=value)
        await j.call(s.outcome, eff.id, "done", credit=value)
    if in_flight is not None:
        await j.call(s.intent, tx.id, "stack", f"{tx.ref}-note{n + 1}", amount=in_flight)
    for nxt in PAYBY_CASHIN_PATH[PAYBY_CASHIN_PATH.index("accepting") + 1 :]:
        if PAYBY_CASHIN_PATH.index(nxt) > PAYBY_CASHIN_PATH.index(state):
            break
        tx = await j.call(s.transition, tx.id, nxt)
    return await j.call(s.get, tx.id)


PAYBY_CASHIN_PATH = ["resolving", "accepting", "paying", "pay_unknown", "paid"]


async def recovered(r: Rig, report: PowerUpReport | None = None) -> Tx:
    (tx,) = await recover(r.ctx, report or PowerUpReport())
    assert tx.state in TERMINAL | {"pay_unknown"}
    return tx


def test_every_non_terminal_state_is_covered() -> None:
    assert set(PAYBY_CASHIN_PATH) == PAYBY_CASHIN.states - TERMINAL - {"completed"}


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


@pytest.mark.parametrize("state", ["paying", "pay_unknown"])
def test_paying_when_the_pay_reached_payby_completes(tmp_path: Path, state: str) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            order = r.order("150.00")
            tx = await at_state(r, state, order=order, credited=15000)
            j = r.ctx.journal
            await j.call(j.sync.intent, tx.id, "pay", f"{tx.ref}-pay#1", amount=15000)
            assert r.ctx.payby is not None  # the pay went out just before the power cut
            await r.ctx.payby.pay_token_order(
                order["tokenUrl"],
                order_no=order["orderNo"],
                amount=Money.of(15000, "AED"),
                payment_no=f"{tx.ref}-pay",
                device_id="KSK-DEMO",
            )
            tx = await recovered(r)
            assert (tx.state, tx.owed) == ("completed", 0)
            assert r.balance() == "850.00"

    run(scenario)


@pytest.mark.parametrize("state", ["paying", "pay_unknown"])
def test_paying_when_the_pay_never_left_is_owed(tmp_path: Path, state: str) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await at_state(r, state, credited=15000)
            tx = await recovered(r)
            assert (tx.state, tx.owed) == ("owed", 15000)
            assert r.balance() == "1000.00"

    run(scenario)


def test_pay_unknown_with_payby_unreachable_stays_pending(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await at_state(r, "pay_unknown", credited=15000)
            r.hook("payby/faults", {"op": "getOrder", "mode": "error_500", "count": 10})
            tx = await recovered(r)
            assert (tx.state, tx.owed) == ("pay_unknown", 0)
            assert (r.ctx.config.receipts_dir / f"{tx.ref}-pending.txt").exists()
            assert len(r.sleeps) == 5  # backed off between getOrder attempts
            r.hook("payby/faults", {"clear": True})
            (tx,) = await recover(r.ctx, PowerUpReport())  # the next idle tick settles it
            assert tx.state == "owed"

    run(scenario)


def test_paid_is_completed_with_its_receipt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await at_state(r, "paid", credited=15000)
            tx = await recovered(r)
            assert tx.state == "completed"
            assert (r.ctx.config.receipts_dir / f"{tx.ref}-cashin.txt").exists()

    run(scenario)
