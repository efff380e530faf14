"""Transactions driven through the journal, as the flows would, up to a given state."""

from __future__ import annotations

from typing import Any

from kiosk.flows.payby_cashin import pay_call
from kiosk.journal import Tx
from tests.flows.rig import Rig


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
    if state == "accepting":
        return await j.call(s.get, tx.id)
    if state == "pay_unknown":  # a journal written before the outbox
        await j.call(s.transition, tx.id, "paying")
        await j.call(s.intent, tx.id, "pay", f"{tx.ref}-pay#1", amount=15000)
        sql = "UPDATE transactions SET state = 'pay_unknown' WHERE id = ?"
        await j.call(j.sync.db.execute, sql, [tx.id])
        return await j.call(s.get, tx.id)
    now = r.ctx.clock_ms()
    call = pay_call(r.ctx.config, tx, order["tokenUrl"], order["orderNo"], 15000, now)
    tx, _, _ = await j.call(s.start_call, tx.id, "paying", call)
    for nxt in PAYBY_CASHIN_PATH[PAYBY_CASHIN_PATH.index("paying") + 1 :]:
        if PAYBY_CASHIN_PATH.index(nxt) > PAYBY_CASHIN_PATH.index(state):
            break
        tx = await j.call(s.transition, tx.id, nxt)
    return await j.call(s.get, tx.id)


PAYBY_CASHIN_PATH = ["resolving", "accepting", "paying", "pending", "paid"]
