"""Receipts as device-neutral documents, queued in the journal before they are printed.

A receipt failing to print never undoes or blocks the money movement: it stays ``queued``
in the journal for a reprint.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from drivers.errors import DriverError
from drivers.printer.base import Block, Document, Line, QrBlock, ReceiptPrinter, Rule
from kiosk.journal import AsyncJournal, Tx
from kiosk.journeys import JOURNEYS
from kiosk.money import Money

log = logging.getLogger("kiosk.receipts")

TITLES = {
    "cashin": "CASH TOP UP - PAID",
    "pending": "PAYMENT PENDING",
    "owed": "NOT COMPLETED - MONEY OWED",
    "cashout": "CASH OUT - PAID",
}


def build(
    tx: Tx,
    kind: str,
    *,
    kiosk_id: str,
    location: str,
    support_line: str,
    provider_name: str,
    notes: list[int],
    references: dict[str, str],
    status_text: str,
) -> Document:
    """The receipt of ``tx``: who, where, when, every reference, the money, the status."""

    def money(minor: int) -> str:
        return str(Money.of(minor, tx.currency))

    blocks: list[Block] = [
        Line(TITLES.get(kind, kind.upper()), bold=True, align="center", double=True),
        Line(f"Kiosk {kiosk_id}", align="center"),
    ]
    if location:
        blocks.append(Line(location, align="center"))
    blocks += [
        Line(time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()), align="center"),
        Rule(),
        Line(f"Provider: {provider_name}"),
        Line(f"Reference: {tx.ref}", bold=True),
        *[Line(f"{name}: {value}") for name, value in references.items()],
        Rule(),
    ]
    if JOURNEYS[tx.journey].direction == "out":
        blocks += [
            Line(f"Amount requested: {money(tx.amount_due)}"),
            Line(f"Cash paid out: {money(tx.dispensed)}", bold=True),
        ]
    else:
        blocks += [
            Line(f"Amount due: {money(tx.amount_due)}"),
            Line(f"Notes: {', '.join(money(n) for n in notes) or 'none'}"),
            Line(f"Cash received: {money(tx.credited)}", bold=True),
        ]
    if tx.owed:
        blocks.append(Line(f"OWED TO YOU: {money(tx.owed)}", bold=True))
    blocks += [
        Line(f"Status: {status_text}", bold=True),
        Rule(),
        QrBlock(tx.ref),
        Line("Keep this receipt.", align="center"),
    ]
    if support_line:
        blocks.append(Line(support_line, align="center"))
    return Document(name=f"{tx.ref}-{kind}", blocks=tuple(blocks))


def to_json(doc: Document) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for b in doc.blocks:
        if isinstance(b, Line):
            blocks.append({"line": b.text, "bold": b.bold, "align": b.align, "double": b.double})
        elif isinstance(b, Rule):
            blocks.append({"rule": b.char})
        else:
            blocks.append({"qr": b.data, "size": b.size})
    return {"name": doc.name, "blocks": blocks}


def from_json(data: dict[str, Any]) -> Document:
    blocks: list[Block] = []
    for b in data["blocks"]:
        if "line" in b:
            blocks.append(Line(b["line"], bold=b["bold"], align=b["align"], double=b["double"]))
        elif "rule" in b:
            blocks.append(Rule(b["rule"]))
        else:
            blocks.append(QrBlock(b["qr"], size=b["size"]))
    return Document(name=data["name"], blocks=tuple(blocks))


async def issue(
    journal: AsyncJournal, printer: ReceiptPrinter, tx: Tx, kind: str, doc: Document
) -> bool:
    """Queue the receipt in the journal, then print it. False if it stays queued."""
    receipt_id = await journal.call(journal.sync.queue_receipt, tx.id, kind, to_json(doc))
    return await print_queued(journal, printer, receipt_id, doc)


async def print_queued(
    journal: AsyncJournal, printer: ReceiptPrinter, receipt_id: int, doc: Document
) -> bool:
    try:
        await printer.print(doc)
    except (DriverError, OSError) as exc:
        log.warning("receipt %s not printed (%s); queued for reprint", doc.name, exc)
        await journal.call(journal.sync.receipt_result, receipt_id, str(exc) or type(exc).__name__)
        return False
    await journal.call(journal.sync.receipt_result, receipt_id, None)
    return True
