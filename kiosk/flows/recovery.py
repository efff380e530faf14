"""Recovery at start-up: every transaction the journal holds open is settled from its state.

The rule for each state is written next to the state machine (``Journey.recovery``); this
module carries it out for the journeys the kiosk runs today. Notes whose stack was in flight
(an ``intent`` with no outcome) are settled with what the validator reported at power-up:

- the device says it stacked that note ⇒ credited;
- the device says it held that note in escrow and returned it ⇒ not credited;
- the device cannot say ⇒ ``unknown``, and the value is recorded as owed ("unconfirmed note")
  so that the cash count settles it: the customer is never the one who loses.
"""

from __future__ import annotations

import logging

from drivers.validator.base import Note, PowerUpReport
from kiosk.flows.cashout import recover_payout
from kiosk.flows.context import Context
from kiosk.journal import Tx

log = logging.getLogger("kiosk.recovery")


async def recover(ctx: Context, power_up: PowerUpReport) -> list[Tx]:
    """Settle every open transaction. Returns them in their new states."""
    j = ctx.journal
    open_txs = await j.call(j.sync.transactions, open_only=True, limit=10_000)
    if power_up.stacked or power_up.in_escrow:
        await j.call(
            j.sync.log,
            "validator.power_up",
            {
                "stacked": power_up.stacked.value if power_up.stacked else None,
                "in_escrow": power_up.in_escrow.value if power_up.in_escrow else None,
            },
        )
    stacked = power_up.stacked
    settled: list[Tx] = []
    for tx in sorted(open_txs, key=lambda t: t.id):
        log.warning("%s: recovering from state %s", tx.ref, tx.state)
        stacked = await _settle_notes_in_flight(ctx, tx, stacked, power_up.in_escrow)
        tx = await j.call(j.sync.get, tx.id)
        settled.append(await _recover_tx(ctx, tx))
    if stacked is not None:
        # The device stacked a note that no transaction was waiting for: keep it on record.
        await j.call(
            j.sync.log,
            "validator.orphan_note",
            {"value": stacked.value, "currency": stacked.currency},
        )
    return settled


async def _settle_notes_in_flight(
    ctx: Context, tx: Tx, stacked: Note | None, in_escrow: Note | None
) -> Note | None:
    j = ctx.journal
    for eff in await j.call(j.sync.effects, tx.id, kind="stack", status="intent"):
        if stacked is not None and stacked.value in (eff.amount, 0):  # 0: the device cannot say
            await j.call(
                j.sync.outcome,
                eff.id,
                "done",
                credit=eff.amount or 0,
                outcome={"settled_by": "device_power_up_report"},
            )
            stacked = None
        elif in_escrow is not None and in_escrow.value in (eff.amount, 0):
            await j.call(
                j.sync.outcome, eff.id, "failed", outcome={"settled_by": "returned_at_power_up"}
            )
        else:
            await j.call(
                j.sync.outcome,
                eff.id,
                "unknown",
                outcome={"settled_by": "nobody: technician counts the cash"},
            )
    return stacked


async def _recover_tx(ctx: Context, tx: Tx) -> Tx:
    """The journey module's own ``recover`` (:mod:`kiosk.providers.base`)."""
    from kiosk.providers.registry import journey_module

    if tx.journey == "local_cashout":
        return await _local_cashout(ctx, tx)
    if tx.journey in ("cash_collection", "cash_refill"):
        from kiosk.flows import cash

        return await cash.recover(ctx, tx)
    module = journey_module(tx.journey)
    if module is None:
        log.error("%s: journey %s has no recovery in this build; left open", tx.ref, tx.journey)
        return tx
    recovered: Tx = await module.recover(ctx, tx)
    return recovered


async def _local_cashout(ctx: Context, tx: Tx) -> Tx:
    j = ctx.journal
    if tx.state == "checking":
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    return await recover_payout(ctx, tx)


__all__ = ["recover"]
