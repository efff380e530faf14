"""What a technician asks of a running kiosk through the admin socket: reprint a receipt, print
a test page, record a cash collection. Each prints through the daemon, which owns the port,
and each receipt is queued in the journal before it is printed.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from drivers.printer.base import Document
from kiosk import receipts
from kiosk.flows.context import Context
from kiosk.money import Money


async def reprint(ctx: Context, ref: str) -> dict[str, Any]:
    """Print again every receipt of the transaction ``ref`` (queued or printed)."""
    j = ctx.journal
    tx = await j.call(j.sync.find, ref)
    if tx is None:
        raise ValueError(f"no transaction {ref}")
    rows = await j.call(j.sync.receipts, tx.id)
    if not rows:
        raise ValueError(f"{tx.ref} has no receipt")
    settled = [
        f"{r['settled_at'][:16].replace('T', ' ')} UTC: {Money.of(r['amount'], r['currency'])}"
        f" - {r['settled_note']}"
        for r in await j.call(j.sync.liabilities, open_only=False)
        if r["tx_id"] == tx.id and r["status"] == "settled"
    ]
    printed = []
    for row in rows:
        doc = receipts.from_json(row["document"])
        if row["status"] == "printed" or row["attempts"]:
            doc = receipts.copy_of(
                doc, why="reprinted at the technician's request", settled=settled
            )
        ok = await receipts.print_queued(j, ctx.printer, row["id"], doc)
        printed.append({"receipt": row["id"], "kind": row["kind"], "printed": ok})
    return {"ref": tx.ref, "receipts": printed}


def _fields(ctx: Context, kind: str, ref: str, **extra: str) -> dict[str, str]:
    c = ctx.config
    fields = receipts.blank_fields()
    fields.update(
        title=receipts.TITLES[kind],
        kiosk_id=c.kiosk_id,
        location=c.location,
        support_line=c.support_line,
        time=receipts.local_time(),
        ref=ref,
        **extra,
    )
    return fields


async def _issue(ctx: Context, kind: str, doc: Document) -> bool:
    j = ctx.journal
    receipt_id = await j.call(j.sync.queue_receipt, None, kind, receipts.to_json(doc))
    return await receipts.print_queued(j, ctx.printer, receipt_id, doc)


async def test_page(ctx: Context) -> dict[str, Any]:
    status = await ctx.printer.status()
    ref = f"{ctx.config.kiosk_id}-TEST-{time.strftime('%Y%m%d%H%M%S')}"
    fields = _fields(
        ctx,
        "test",
        ref,
        printer=getattr(ctx.printer, "name", "?"),
        paper=str(status.paper),
        columns=str(ctx.printer.columns),
    )
    doc = receipts.load_templates(ctx.config.printer.templates_dir)["test"].render(fields, ref)
    return {"ref": ref, "printed": await _issue(ctx, "test", doc), "status": str(status.paper)}


async def collect(ctx: Context, technician: str) -> dict[str, Any]:
    """Record a cash collection: the notes stacked since the last one, and its receipt."""
    j = ctx.journal
    last = [
        e for e in await j.call(j.sync.events, None, limit=100_000) if e["kind"] == "cash.collected"
    ]
    since = last[0]["at"] if last else ""
    notes: Counter[int] = Counter()
    for tx in await j.call(j.sync.transactions, limit=1_000_000):
        for eff in await j.call(j.sync.effects, tx.id, kind="stack", status="done"):
            if (eff.ended_at or "") > since:
                notes[eff.amount or 0] += 1
    code = ctx.config.currency.code
    total = sum(v * n for v, n in notes.items())
    counts = "\n".join(f"{Money.of(v, code)} x {n}" for v, n in sorted(notes.items()))
    ref = f"{ctx.config.kiosk_id}-COLL-{time.strftime('%Y%m%d%H%M%S')}"
    await j.call(
        j.sync.log,
        "cash.collected",
        {
            "ref": ref,
            "technician": technician,
            "total": total,
            "notes": {str(v): n for v, n in sorted(notes.items())},
        },
    )
    fields = _fields(
        ctx,
        "collection",
        ref,
        technician=technician,
        since=since or "first use",
        counts=counts or "no notes",
        total=str(Money.of(total, code)),
    )
    doc = receipts.load_templates(ctx.config.printer.templates_dir)["collection"].render(
        fields, ref
    )
    return {
        "ref": ref,
        "total": total,
        "notes": {str(v): n for v, n in notes.items()},
        "printed": await _issue(ctx, "collection", doc),
    }
