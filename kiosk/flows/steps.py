"""The steps every journey shares: take notes, owe, pend, finish, refuse, and the receipts
that say so. A journey module (:mod:`kiosk.providers.base`) composes them with its provider's
calls; how its receipts name it is its :class:`Look`.

Money rules held here:

- a note is credited in the journal at the device's safe credit point, before the device is
  acknowledged; a note that reached escrow after the journey stopped listening is returned
  or committed, never left with no trace (:mod:`kiosk.flows.device_events`);
- a note that would go over what the journey may take is returned from escrow;
- every decision (owe, pend) is one journal commit with its liabilities and its receipt,
  then the receipt is printed (a failed print stays queued; the decision stands).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.panel import PanelEvent, PanelState
from drivers.printer.base import Document
from drivers.validator.base import (
    Fault,
    Note,
    NoteCredited,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
)
from kiosk import receipts
from kiosk.errors import DeviceError
from kiosk.flows import device_events
from kiosk.flows.context import Context, Sources
from kiosk.journal import Call, Outcome, Tx
from kiosk.limits import left_today
from kiosk.money import Money

log = logging.getLogger("kiosk.flows")

OWED = "NOT PAID - keep this receipt; support will refund you"


def _no_refs(tx: Tx) -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class Look:
    """How one journey's receipts read."""

    provider: str
    """The receipt's provider line (``"PayBy Cash Top Up"``)."""
    pending: str = (
        "PENDING - the provider has not confirmed yet. The kiosk keeps trying; if it cannot"
        " be done, support refunds you. Keep this receipt."
    )
    references: Callable[[Tx], dict[str, str]] = field(default=_no_refs)
    """The provider's references printed on every receipt (never a code or an OTP)."""


def look_of(tx: Tx) -> Look:
    """The :class:`Look` of ``tx``'s journey (a plain one for journeys without a module)."""
    from kiosk.providers.registry import journey_module

    module = journey_module(tx.journey)
    return module.LOOK if module is not None else Look("Kiosk (technician test dispense)")


# --- notes ---------------------------------------------------------------------------------


async def accept_notes(ctx: Context, tx: Tx, *, up_to: int, confirm_ends: bool = False) -> str:
    """Take notes until ``up_to`` (minor units) is credited. Returns
    ``complete | cancel | timeout | fault``. ``confirm_ends``: the customer decides the amount:
    the confirm button ends with what is in (once something is).

    Call with ``tx`` in the state that takes notes; the validator is disabled again on every
    way out, and a note left in flight is settled before returning."""
    v, panel, j = ctx.validator, ctx.panel, ctx.journal
    credited = tx.credited
    sources = Sources(validator=v.next_event, panel=panel.next_event)
    try:
        try:
            await v.enable()
        except DeviceError as exc:
            log.error("%s: validator: enable failed (%s): out of service", tx.ref, exc.message)
            await j.call(
                j.sync.log, "device.error", {"call": "enable", "error": exc.message}, tx.id
            )
            ctx.out_of_service.set()
            return "fault"
        panel.show(PanelState.INSERT_NOTES)
        while credited < up_to:
            got = await sources.next(ctx.config.inactivity_timeout_s)
            if got is None:
                return "timeout"
            _, event = got
            if event == PanelEvent.CANCEL:
                return "cancel"
            if event == PanelEvent.CONFIRM:
                if confirm_ends and credited > 0:
                    return "complete"
                log.info("%s: confirm pressed with %s of %s in", tx.ref, credited, up_to)
                continue
            if isinstance(event, NoteEscrowed):
                note = event.note
                if note.currency != tx.currency or credited + note.value > up_to:
                    returned = await v.return_note()
                    await j.call(
                        j.sync.log,
                        "note.returned",
                        {"value": returned.value, "reason": "would_overpay"},
                        tx.id,
                    )
                    continue
                if not await stack(ctx, tx, note):
                    return "fault"
                credited += note.value
            elif isinstance(event, NoteRejected):
                await j.call(j.sync.log, "note.rejected", {"reason": event.reason}, tx.id)
            elif isinstance(event, NoteReturned):
                await j.call(
                    j.sync.log,
                    "note.returned",
                    {"value": event.note.value, "reason": "device"},
                    tx.id,
                )
            elif isinstance(event, NoteCredited):
                await device_events.credit_stray(ctx, event.note)
                credited = (await j.call(j.sync.get, tx.id)).credited
            elif isinstance(event, Fault):
                await device_events.fault(ctx, event, tx.id)
                return "fault"
        return "complete"
    finally:
        left = await sources.close()
        try:
            await v.disable()
        except DeviceError as exc:
            log.warning("validator: disable failed: %s", exc.message)
        for name, event in left:
            if name == "validator":
                await device_events.handle(ctx, event)
        await device_events.drain(ctx)


async def cap_today(ctx: Context, tx: Tx, cap: int) -> int | Tx:
    """A cash-in's note cap within what its provider's ``cashin_day_max`` leaves today
    (:mod:`kiosk.limits`): ``min(cap, left)``, or ``tx`` ended (refused with a DECLINED
    receipt) when nothing is left. Call before the first note."""
    j = ctx.journal
    left = await j.call(left_today, j.sync, ctx.config.providers, tx, ctx.clock_ms())
    if left is None:
        return cap
    if left <= 0:
        return await decline(ctx, tx, "day_limit", day_limit_in(tx, left))
    return min(cap, left)


def day_limit_in(tx: Tx, left: int) -> str:
    """The customer's sentence for a cash-in past its provider's daily limit."""
    if left <= 0:
        return "This kiosk has reached today's limit for this service. Try again tomorrow."
    return f"Today this kiosk can take at most {Money.of(left, tx.currency)} more for this service."


async def stack(ctx: Context, tx: Tx, note: Note) -> bool:
    """Intent, stack, credit at the device's safe point. False on a device fault."""
    j = ctx.journal
    n = len(await j.call(j.sync.effects, tx.id, kind="stack")) + 1
    eff = await j.call(
        j.sync.intent,
        tx.id,
        "stack",
        f"{tx.ref}-note{n}",
        amount=note.value,
        request={"channel": note.channel, "currency": note.currency},
    )

    async def on_credit(credited: Note) -> None:
        await j.call(
            j.sync.outcome,
            eff.id,
            "done",
            credit=credited.value,
            outcome={"channel": credited.channel},
        )

    try:
        await ctx.validator.stack(on_credit)
    except DeviceError as exc:
        current = await j.call(j.sync.effect, eff.id)
        if current.status == "intent":
            await j.call(j.sync.outcome, eff.id, "unknown", outcome={"error": exc.message})
        ctx.out_of_service.set()
        log.error("%s: stacking failed: %s", tx.ref, exc.message)
        return False
    return True


async def unconfirmed_notes(ctx: Context, tx: Tx) -> int:
    """The value of notes whose stack the device never confirmed (owed if the journey ends)."""
    j = ctx.journal
    unknown = await j.call(j.sync.effects, tx.id, kind="stack", status="unknown")
    return sum(e.amount or 0 for e in unknown)


# --- endings -------------------------------------------------------------------------------


async def refuse(ctx: Context, tx: Tx, reason: str) -> Tx:
    """Nothing moved: ``refused`` with its reason (the panel says so)."""
    log.info("%s: refused (%s)", tx.ref, reason)
    tx = await ctx.journal.call(ctx.journal.sync.transition, tx.id, "refused", reason=reason)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def decline(ctx: Context, tx: Tx, reason: str, line: str, amount: int | None = None) -> Tx:
    """Nothing moved, and the customer is told why: ``refused`` for ``reason`` with a DECLINED
    receipt (``NOT DONE: <line>``), in one commit; then it is printed. ``amount``: the amount
    asked for, recorded when the transaction has none yet."""
    j = ctx.journal
    fields: dict[str, Any] = {"reason": reason}
    if amount is not None and tx.amount_due == 0:
        fields["amount_due"] = amount
        tx = dataclasses.replace(tx, amount_due=amount)
    projected_tx = projected(tx, "refused", 0, reason)
    doc = await receipt(ctx, projected_tx, "declined", f"NOT DONE: {line}")
    tx, receipt_id = await j.call(
        j.sync.decide, tx.id, "refused", receipt=("declined", receipts.to_json(doc)), **fields
    )
    log.info("%s: refused (%s)", tx.ref, reason)
    if receipt_id is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def end_without_payment(ctx: Context, tx: Tx, ending: str) -> Tx:
    """The notes phase ended before the provider was asked: no note ⇒ ``cancelled``, else
    every note is owed."""
    j = ctx.journal
    unknown = await j.call(j.sync.effects, tx.id, kind="stack", status="unknown")
    if tx.credited == 0 and not unknown:
        tx = await j.call(j.sync.transition, tx.id, "cancelled", reason=ending)
        ctx.panel.show(PanelState.READY if ending == "cancel" else PanelState.REFUSED)
        return tx
    return await owe(ctx, tx, f"ended_by_{ending}")


async def owe(ctx: Context, tx: Tx, reason: str, *, status: str = OWED) -> Tx:
    """The customer's cash stays with the kiosk: the liabilities (the credited notes, and
    every unconfirmed one), ``owed`` and the receipt that says so, in one commit."""
    j = ctx.journal
    extra = tx.credited + await unconfirmed_notes(ctx, tx)
    doc = await receipt(ctx, projected(tx, "owed", extra, reason), "owed", status)
    tx, receipt_id = await j.call(
        j.sync.decide,
        tx.id,
        "owed",
        owe=[(tx.credited, reason)],
        owe_unconfirmed=True,
        receipt=("owed", receipts.to_json(doc)),
        reason=reason,
    )
    log.warning("%s: owed %s (%s)", tx.ref, Money.of(tx.owed, tx.currency), reason)
    if receipt_id is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def owe_cash_in(
    ctx: Context,
    tx: Tx,
    reason: str,
    *,
    outcome: Outcome | None,
    finish_call: tuple[int, str, dict[str, Any]] | None,
    inline: bool,
) -> Tx:
    """A cash-in's provider call settled as not applied (from the outbox): every note the
    customer gave is owed, in one commit with the call's end; the OWED receipt queued when the
    customer is still here (one who left holds a PENDING receipt that says support refunds)."""
    j = ctx.journal
    receipt_doc = None
    if inline:
        doc = await receipt(ctx, projected(tx, "owed", tx.credited, reason), "owed", OWED)
        receipt_doc = ("owed", receipts.to_json(doc))
    tx, _ = await j.call(
        j.sync.decide,
        tx.id,
        "owed",
        outcome=outcome,
        finish_call=finish_call,
        owe=[(tx.credited, reason)],
        owe_unconfirmed=True,
        receipt=receipt_doc,
        reason=reason,
    )
    log.warning("%s: the provider did not take the cash-in (%s): owed", tx.ref, reason)
    return tx


async def pend(ctx: Context, tx: Tx, effect_id: int, reason: str) -> Tx:
    """The call may still land: ``pending`` with a PENDING receipt, in one commit."""
    j = ctx.journal
    eff = await j.call(j.sync.effect, effect_id)
    outcome = (
        Outcome(effect_id, "unknown", outcome={"pending": reason})
        if eff.status == "intent"
        else None
    )
    doc = await receipt(ctx, projected(tx, "pending", 0, reason), "pending", look_of(tx).pending)
    tx, receipt_id = await j.call(
        j.sync.decide,
        tx.id,
        "pending",
        outcome=outcome,
        receipt=("pending", receipts.to_json(doc)),
        reason=reason,
    )
    log.warning("%s: pending (%s); the outbox goes on in the background", tx.ref, reason)
    ctx.outbox().wake()  # its next delivery is due soon: the loop must not sleep past it
    if receipt_id is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def deliver(
    ctx: Context, tx: Tx, to_state: str | None, call: Call, wait_s: float, reason: str
) -> Tx:
    """Commit the outbox call ``call`` with ``tx``'s move to ``to_state`` (one commit, before
    the request exists), then the customer waits for it: deliveries and the backoff between
    them, up to ``wait_s``. Settled ⇒ ``tx`` as the operation's settle left it; still queued ⇒
    :func:`pend` for ``reason`` (a finished ``tx``, as a technician's refund, stays as it is:
    the outbox goes on). The background loop is kept off the transaction from before
    the commit to the end (it would settle as if the customer had left)."""
    j, forwarder = ctx.journal, ctx.outbox()
    with forwarder.serving(tx.id):
        tx, eff, row_id = await j.call(j.sync.start_call, tx.id, to_state, call)
        started, waited_ms, budget_ms = ctx.clock_ms(), 0, int(wait_s * 1000)
        async with forwarder.hold(row_id):
            while (status := await forwarder.step(row_id, inline=True)) == "queued":
                row = await j.call(j.sync.outbox_row, row_id)
                delay_ms = max(50, row["next_at_ms"] - ctx.clock_ms())
                if max(waited_ms, ctx.clock_ms() - started) + delay_ms > budget_ms:
                    break
                await ctx.sleep(delay_ms / 1000)
                waited_ms += delay_ms
            tx = await j.call(j.sync.get, tx.id)
            if status == "queued" and not tx.closed:
                return await pend(ctx, tx, eff.id, reason)
    return tx


async def call_end(
    ctx: Context, row: dict[str, Any], applied: bool, detail: dict[str, Any]
) -> tuple[Outcome, tuple[int, str, dict[str, Any]]]:
    """What an outbox operation's ``settle`` commits for its call, whatever it decides: the
    effect's outcome and the row's end (``done`` if applied, else ``failed``), with ``detail``."""
    j = ctx.journal
    eff = await j.call(j.sync.effect_by_key, row["idem_key"])
    assert eff is not None
    status = "done" if applied else "failed"
    return Outcome(eff.id, status, outcome=detail), (row["id"], status, detail)


async def finish(ctx: Context, tx: Tx, kind: str, status: str) -> Tx:
    """Receipt of ``kind``, then ``completed``. A receipt that fails stays queued; the money
    stands. A receipt queued before a crash is the one printed (never a second one); a
    customer who left with a PENDING receipt gets none (nobody is there to take it)."""
    j = ctx.journal
    rows = await j.call(j.sync.receipts, tx.id)
    if not any(r["kind"] in ("pending", kind) for r in rows):
        doc = await receipt(ctx, tx, kind, status)
        await receipts.issue(j, ctx.printer, tx, kind, doc)
    tx = await j.call(j.sync.transition, tx.id, "completed")
    log.info("%s: completed", tx.ref)
    ctx.panel.show(PanelState.DONE)
    return tx


async def print_queued(ctx: Context, tx: Tx) -> None:
    """Print the receipts a decision queued for ``tx`` (the customer is still here)."""
    j = ctx.journal
    for row in await j.call(j.sync.receipts, tx.id, queued_only=True):
        await receipts.print_queued(j, ctx.printer, row["id"], receipts.from_json(row["document"]))


def projected(tx: Tx, state: str, owed_more: int, reason: str) -> Tx:
    """``tx`` as the decision about to be committed leaves it (for its receipt)."""
    return dataclasses.replace(tx, state=state, owed=tx.owed + owed_more, reason=reason)


async def receipt(ctx: Context, tx: Tx, kind: str, status: str) -> Document:
    """The receipt of ``tx`` as its journey's :class:`Look` names it, with its notes."""
    j = ctx.journal
    stacked = await j.call(j.sync.effects, tx.id, kind="stack", status="done")
    look = look_of(tx)
    return receipts.for_kiosk(
        ctx.config,
        tx,
        kind,
        provider_name=look.provider,
        notes=[e.amount or 0 for e in stacked],
        references=look.references(tx),
        status_text=status,
    )
