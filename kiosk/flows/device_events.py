"""Validator events that arrive when no stack() waits for them: in the idle loop, or just
after a journey stopped listening. Each is journaled before the device is answered.

- :class:`NoteEscrowed` ⇒ the note is returned (``return_note``) and the return journaled,
  linked to the latest transaction;
- :class:`NoteCredited` ⇒ committed first (the latest transaction's unconfirmed stack effect
  settled as done, else a ``stray_note`` liability), then ``ack_credit``;
- :class:`NoteReturned` ⇒ an unconfirmed stack effect of that value becomes ``failed`` and
  its ``unconfirmed_note`` liability is settled (the customer has the note back);
- :class:`Fault` / :class:`FaultCleared` ⇒ out of service / back in service; a fraud or a
  cashbox removed outside service mode also latches (:mod:`kiosk.tamper`): the kiosk stays
  out of service after the validator recovers, until a technician clears it.

No device error escapes: a :class:`~kiosk.errors.DeviceError` puts the kiosk out of service
with the reason logged.
"""

from __future__ import annotations

import asyncio
import logging

from drivers.validator.base import (
    Fault,
    FaultCleared,
    Note,
    NoteCredited,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
)
from kiosk.errors import DeviceError
from kiosk.flows.context import Context
from kiosk.journal import Effect, Tx

log = logging.getLogger("kiosk.flows.device")

DRAIN_S = 0.2  # how long a journey's end listens for a note still in flight


async def handle(ctx: Context, event: object) -> None:
    """Handle one validator event no journey is waiting for."""
    j = ctx.journal
    if isinstance(event, NoteEscrowed):
        await return_stray(ctx, event.note)
    elif isinstance(event, NoteCredited):
        await credit_stray(ctx, event.note)
    elif isinstance(event, NoteReturned):
        await note_returned(ctx, event.note)
    elif isinstance(event, NoteRejected):
        await j.call(j.sync.log, "note.rejected", {"reason": event.reason}, await _last_tx_id(ctx))
    elif isinstance(event, Fault):
        log.error("validator: %s: out of service", event.kind)
        await fault(ctx, event)
    elif isinstance(event, FaultCleared):
        log.info("validator: recovered")
        await j.call(j.sync.log, "device.recovered")
        ctx.fault = None
        ctx.out_of_service.clear()


async def fault(ctx: Context, event: Fault, tx_id: int | None = None) -> None:
    """The validator reports a fault: journaled, out of service while it lasts, and latched
    if it is a tamper (:meth:`kiosk.tamper.Tamper.seen`)."""
    j = ctx.journal
    await j.call(j.sync.log, "device.fault", {"kind": str(event.kind)}, tx_id)
    ctx.fault = event.kind
    ctx.out_of_service.set()
    if ctx.tamper is not None:
        await ctx.tamper.seen(str(event.kind), event.detail, tx_id)


async def drain(ctx: Context, timeout: float = DRAIN_S) -> None:
    """After ``disable()``: handle every validator event that comes within ``timeout``."""
    while True:
        try:
            event = await asyncio.wait_for(ctx.validator.next_event(), timeout)
        except TimeoutError:
            return
        except DeviceError as exc:
            out_of_service(ctx, f"validator: events failed: {exc.message}")
            return
        await handle(ctx, event)


def out_of_service(ctx: Context, reason: str) -> None:
    log.error("%s: out of service", reason)
    ctx.out_of_service.set()


async def return_stray(ctx: Context, note: Note) -> None:
    j = ctx.journal
    tx_id = await _last_tx_id(ctx)
    try:
        returned = await ctx.validator.return_note()
    except DeviceError as exc:
        await j.call(
            j.sync.log,
            "note.return_failed",
            {"value": note.value, "reason": "no_journey", "error": exc.message},
            tx_id,
        )
        out_of_service(ctx, f"validator: a note in escrow could not be returned ({exc.message})")
        return
    await j.call(
        j.sync.log, "note.returned", {"value": returned.value, "reason": "no_journey"}, tx_id
    )
    log.info("validator: returned a %s note nobody was waiting for", returned.value)


async def credit_stray(ctx: Context, note: Note) -> None:
    """Commit a credit no stack() waited for, then acknowledge it."""
    j = ctx.journal
    tx, eff = await _unconfirmed(ctx, note, statuses=("intent", "unknown"))
    if tx is not None and eff is not None:
        await j.call(
            j.sync.outcome,
            eff.id,
            "done",
            credit=eff.amount or 0,
            outcome={"settled_by": "device_credit", "value": note.value},
        )
        if tx.closed:
            # The transaction already ended owing this note ("unconfirmed_note"): the liability
            # stands (the money never reached the provider); the note is now known stacked.
            await j.call(
                j.sync.log, "note.found_stacked", {"effect": eff.id, "value": eff.amount}, tx.id
            )
        log.warning("%s: an unconfirmed note was credited by the device", tx.ref)
    else:
        last = await j.call(
            j.sync.owe_stray,
            note.value,
            "stray_note",
            journey=_cashin_journey(),
            currency=ctx.config.currency.code,
        )
        log.warning("%s: a stray note of %s credited: owed", last.ref, note.value)
    try:
        await ctx.validator.ack_credit()
    except DeviceError as exc:
        out_of_service(ctx, f"validator: credit acknowledgement failed ({exc.message})")


def _cashin_journey() -> str:
    """The journey a stray note is recorded under: the first provider's cash-in journey
    registered (not the technician's refill)."""
    from kiosk.journeys import JOURNEYS

    return next(n for n, j in JOURNEYS.items() if j.direction == "in" and j.provider != "none")


async def note_returned(ctx: Context, note: Note) -> None:
    """The device gave a note back: an unconfirmed stack of that note was not credited."""
    j = ctx.journal
    tx, eff = await _unconfirmed(ctx, note, statuses=("unknown", "intent"))
    if tx is None or eff is None:
        await j.call(
            j.sync.log,
            "note.returned",
            {"value": note.value, "reason": "device"},
            await _last_tx_id(ctx),
        )
        return
    await j.call(j.sync.outcome, eff.id, "failed", outcome={"settled_by": "device_returned_note"})
    for row in await j.call(j.sync.liabilities):
        if (
            row["tx_id"] == tx.id
            and row["reason"] == "unconfirmed_note"
            and row["amount"] == eff.amount
        ):
            await j.call(
                j.sync.settle_liability, row["id"], "the device returned the note to the customer"
            )
            break
    log.info("%s: the unconfirmed note was returned by the device", tx.ref)


async def _unconfirmed(
    ctx: Context, note: Note, *, statuses: tuple[str, ...]
) -> tuple[Tx | None, Effect | None]:
    """The unconfirmed stack this note settles: the newest one of its value (``statuses`` in
    order of preference) among the recent transactions, not only the latest one (a device
    may report a note from before a restart after another customer began)."""
    j = ctx.journal
    found = await j.call(j.sync.unconfirmed_stacks, statuses, RECENT_TXS)
    for status in statuses:
        for tx_id, eff in found:
            if eff.status == status and note.value in (eff.amount, 0):
                return await j.call(j.sync.get, tx_id), eff
    return await _last_tx(ctx), None


RECENT_TXS = 20  # how far back a late device report is matched to an unconfirmed note


async def _last_tx(ctx: Context) -> Tx | None:
    j = ctx.journal
    txs = await j.call(j.sync.transactions, limit=1)
    return txs[0] if txs else None


async def _last_tx_id(ctx: Context) -> int | None:
    tx = await _last_tx(ctx)
    return tx.id if tx is not None else None
