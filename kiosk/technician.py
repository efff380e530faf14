"""What a technician asks of a running kiosk through the admin socket: reprint a receipt, print
a test page (the cash: :mod:`kiosk.flows.cash`). Each prints through the daemon, which owns the
port, and each receipt is queued in the journal before it is printed.
"""

from __future__ import annotations

import time
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
    from kiosk.flows.cash import technician_fields

    return {**technician_fields(ctx, kind, ref), **extra}


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
