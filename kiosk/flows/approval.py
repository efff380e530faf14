"""A technician approves an amount above the threshold before any money moves (issue 16).

:func:`ask`, called by a journey while nothing has moved yet (a cash-out before its provider
is asked, a cash-in of a known amount before its first note):

1. ``approval.requested`` (amount, timeout) is committed; the panel shows ``APPROVAL``;
2. the customer waits for the technician's **service key** on the panel, or the fleet's
   signed ``approve`` naming the transaction's reference and amount (:mod:`kiosk.approvals`);
   a short slip (``approval``) tells the customer an attendant must approve;
3. granted ⇒ ``approval.granted`` with who (``service_key`` | ``fleet``) and the journey goes
   on; the cancel button ⇒ ``approval.refused``, ``approval_timeout_s`` passing ⇒
   ``approval.expired``: the transaction ends ``refused`` with a DECLINED receipt, nothing moved.

A crash while waiting leaves the transaction in the state it asked from, where nothing has
moved: its journey's recovery ends it not done, and no approval can be granted for it any more.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from drivers.panel import PanelEvent, PanelState
from kiosk import receipts
from kiosk.flows.context import Context, Sources
from kiosk.journal import Tx
from kiosk.money import Money

log = logging.getLogger("kiosk.flows.approval")

NOT_APPROVED = {
    "refused": "You cancelled while the amount waited for an attendant's approval.",
    "expired": "No attendant approved this amount in time.",
}


def threshold(ctx: Context, provider_above: int = 0) -> int:
    """The amount above which approval is needed: the lower of ``[limits] approval_above``
    and the provider's own (each 0: none); 0: never."""
    above = [a for a in (ctx.config.limits.approval_above, provider_above) if a > 0]
    return min(above, default=0)


async def ask(ctx: Context, tx: Tx, amount: int) -> Tx | None:
    """Wait for a technician's approval of ``amount`` for ``tx``: ``None`` when granted, else
    ``tx`` ended (refused, nothing moved). See the module docstring."""
    from kiosk.flows import steps

    j, limits = ctx.journal, ctx.config.limits
    money = Money.of(amount, tx.currency)
    await j.call(
        j.sync.log,
        "approval.requested",
        {"amount": amount, "currency": tx.currency, "timeout_s": limits.approval_timeout_s},
        tx.id,
    )
    granted = ctx.approvals.open(
        tx.ref, tx.id, money, provider=tx.provider or "", timeout_s=limits.approval_timeout_s
    )  # the fleet is told at once (the heartbeat's ``approvals``)
    log.warning("%s: %s waits for a technician's approval", tx.ref, money)
    status = f"An attendant must approve {money} before the kiosk goes on."
    doc = await steps.receipt(ctx, dataclasses.replace(tx, amount_due=amount), "approval", status)
    await receipts.issue(j, ctx.printer, tx, "approval", doc)  # a slip: nothing moved
    ctx.panel.show(PanelState.APPROVAL)
    by: str | None = None
    ending = "expired"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.approval_timeout_s
    sources = Sources(panel=ctx.panel.next_event, fleet=lambda: granted)
    try:
        while by is None:
            left = deadline - loop.time()
            got = await sources.next(left) if left > 0 else None
            if got is None:
                break
            name, event = got
            if name == "fleet":
                by = str(event)
            elif event == PanelEvent.SERVICE_KEY:
                by = "service_key"
            elif event == PanelEvent.CANCEL:
                ending = "refused"
                break
    finally:
        ctx.approvals.close(tx.ref)
        await sources.close()  # a button pressed meanwhile means nothing once this is decided
    if by is not None:
        await j.call(j.sync.log, "approval.granted", {"amount": amount, "by": by}, tx.id)
        log.info("%s: %s approved (%s)", tx.ref, money, by)
        ctx.panel.show(PanelState.WAIT)
        return None
    await j.call(j.sync.log, f"approval.{ending}", {"amount": amount}, tx.id)
    return await steps.decline(ctx, tx, f"approval_{ending}", NOT_APPROVED[ending], amount)
