"""The technician's cash: collecting the cashbox, the recycler's levels, refilling it.

- :func:`collect` (``kiosk cash collect``): the notes stacked since the last collection, count
  and value per denomination, recorded with its receipt in **one** journal commit that also
  resets the counters (``Journal.collect_cash``); a transaction of its own (``cash_collection``),
  so that its reference is unique and ``kiosk journal REF`` / ``kiosk receipt reprint REF`` find
  it. With a recycler, the notes it keeps for payouts are listed apart: they stay in the kiosk.
- :func:`levels` (``kiosk cash levels``): what the recycler holds, per denomination.
- :func:`refill` (``kiosk cash refill``): the technician feeds notes through the validator
  into the recycler (``cash_refill``: each note's intent and credit journaled as a customer's
  would be, so the cashbox count holds; nobody is owed them), until the green button, the red
  button or the inactivity timeout; a REFILL receipt with what went in and the levels after.
"""

from __future__ import annotations

import logging
from typing import Any

from drivers.panel import PanelState
from kiosk import receipts
from kiosk.flows import steps
from kiosk.flows.context import Context
from kiosk.journal import Tx
from kiosk.money import Money

log = logging.getLogger("kiosk.cash")

REFILL_MAX_MINOR = 10**9  # no limit a technician would meet: the recycler refuses when full


def _lines(code: str, notes: dict[int, int]) -> list[str]:
    return [
        f"{Money.of(v, code)} x {n} = {Money.of(v * n, code)}"
        for v, n in sorted(notes.items())
        if n
    ]


async def levels(ctx: Context) -> dict[int, int]:
    if ctx.dispenser is None:
        raise ValueError("this kiosk's validator does not pay out: it has no recycler levels")
    return dict(await ctx.dispenser.levels())


def money_levels(code: str, held: dict[int, int]) -> dict[str, Any]:
    """The recycler's levels as a technician reads them (and a script parses)."""
    return {
        "levels": {str(v): n for v, n in sorted(held.items())},
        "lines": _lines(code, held),
        "total": str(Money.of(sum(v * n for v, n in held.items()), code)),
    }


async def collect(ctx: Context, technician: str) -> dict[str, Any]:
    """Record a cash collection and print its receipt (see the module's docstring)."""
    j, code = ctx.journal, ctx.config.currency.code
    kept = await levels(ctx) if ctx.dispenser is not None else {}
    templates = receipts.load_templates(ctx.config.printer.templates_dir)
    last = await j.call(j.sync.last_event, "cash.collected")
    since = last["at"] if last else ""

    def render(ref: str, notes: dict[int, int]) -> dict[str, Any]:
        counted = _lines(code, notes) or ["no notes since the last collection"]
        if kept:
            counted += ["Kept in the recycler for payouts (not collected):", *_lines(code, kept)]
        fields = technician_fields(ctx, "collection", ref)
        fields.update(
            technician=technician,
            since=f"{since[:16].replace('T', ' ')} UTC" if since else "first collection",
            counts="\n".join(counted),
            total=str(Money.of(sum(v * n for v, n in notes.items()), code)),
        )
        return receipts.to_json(templates["collection"].render(fields, ref))

    tx, notes, receipt_id = await j.call(
        j.sync.collect_cash, code, technician, render, {"recycler": kept} if kept else None
    )
    printed = False
    if receipt_id is not None:
        rows = await j.call(j.sync.receipts, tx.id)
        doc = receipts.from_json(next(r for r in rows if r["id"] == receipt_id)["document"])
        printed = await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    total = sum(v * n for v, n in notes.items())
    log.info("%s: cash collected by %s: %s", tx.ref, technician, Money.of(total, code))
    return {
        "ref": tx.ref,
        "notes": {str(v): n for v, n in sorted(notes.items())},
        "lines": _lines(code, notes),
        "total": str(Money.of(total, code)),
        "kept": money_levels(code, kept) if kept else None,
        "printed": printed,
    }


async def refill(ctx: Context, technician: str) -> dict[str, Any]:
    """Take notes into the recycler until the technician presses green or red, or stops
    feeding for the inactivity timeout (see the module's docstring)."""
    if ctx.dispenser is None:
        raise ValueError("this kiosk's validator does not pay out: there is no recycler to fill")
    j, code = ctx.journal, ctx.config.currency.code
    tx = await j.call(j.sync.begin, "cash_refill", currency=code)
    await j.call(j.sync.log, "cash.refill", {"technician": technician}, tx.id)
    ended = await steps.accept_notes(ctx, tx, up_to=REFILL_MAX_MINOR, confirm_ends=True)
    return await _finish_refill(ctx, await j.call(j.sync.get, tx.id), ended)


async def _finish_refill(ctx: Context, tx: Tx, ended: str) -> dict[str, Any]:
    j, code = ctx.journal, tx.currency
    notes: dict[int, int] = {}
    for eff in await j.call(j.sync.effects, tx.id, kind="stack", status="done"):
        notes[eff.amount or 0] = notes.get(eff.amount or 0, 0) + 1
    held = await levels(ctx)
    status = f"Loaded {Money.of(tx.credited, code)}; the recycler holds " + str(
        Money.of(sum(v * n for v, n in held.items()), code)
    )
    doc = receipts.for_kiosk(
        ctx.config,
        tx,
        "refill",
        provider_name="Recycler refill",
        status_text=status,
        notes=[v for v, n in sorted(notes.items()) for _ in range(n)],
    )
    tx, receipt_id = await j.call(
        j.sync.decide,
        tx.id,
        "completed",
        receipt=("refill", receipts.to_json(doc)),
        reason=f"refill_{ended}",
    )
    if receipt_id is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    ctx.panel.show(PanelState.DONE)
    log.info("%s: recycler refilled with %s (%s)", tx.ref, Money.of(tx.credited, code), ended)
    return {
        "ref": tx.ref,
        "loaded": str(Money.of(tx.credited, code)),
        "lines": _lines(code, notes),
        "ended": ended,
        **money_levels(code, held),
    }


def technician_fields(ctx: Context, kind: str, ref: str) -> dict[str, str]:
    """The fields every technician's receipt fills (title, kiosk, location, time, ref)."""
    c = ctx.config
    fields = receipts.blank_fields()
    fields.update(
        title=receipts.TITLES[kind],
        kiosk_id=c.kiosk_id,
        location=c.location,
        support_line=c.support_line,
        time=receipts.local_time(),
        ref=ref,
    )
    return fields


async def recover(ctx: Context, tx: Tx) -> Tx:
    """A collection is one commit (never open); a refill interrupted keeps what went in."""
    j = ctx.journal
    if tx.journey == "cash_collection":
        return await j.call(j.sync.transition, tx.id, "cancelled", reason="interrupted")
    return await j.call(j.sync.transition, tx.id, "completed", reason="refill_interrupted")
