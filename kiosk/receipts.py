"""Receipts: small templates an operator can change, rendered to device-neutral documents,
queued in the journal before they are printed.

One template per kind (``kiosk/templates/<kind>.receipt``; an operator overrides any of them
with a file of the same name in ``hardware.printer.templates_dir``). A template is lines of
text with ``{fields}``; a line may start with ``@center``, ``@right``, ``@bold``, ``@double``;
``---`` is a rule across the paper; ``@qr TEXT`` a QR code; ``#`` a comment. A line whose fields
all came out empty is left out; a field holding several lines prints them all. Templates are
checked when loaded (``kiosk config check`` too): an unknown field is a configuration error
naming the file.

A receipt failing to print never undoes or blocks the money movement: it stays ``queued``
in the journal for a reprint (``kiosk receipt reprint REF``).
"""

from __future__ import annotations

import functools
import logging
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from drivers.errors import DriverError
from drivers.printer.base import Block, Document, Line, QrBlock, ReceiptPrinter, Rule
from kiosk.errors import ConfigError
from kiosk.journal import AsyncJournal, Tx
from kiosk.money import Money

if TYPE_CHECKING:
    from kiosk.config import Config

log = logging.getLogger("kiosk.receipts")

BUILTIN = Path(__file__).parent / "templates"
KINDS = (
    "cashin",
    "cashout",
    "pending",
    "owed",
    "declined",
    "choose",
    "slip",
    "refund",
    "test",
    "collection",
)
TITLES = {
    "cashin": "CASH IN - PAID",
    "cashout": "CASH OUT - PAID",
    "pending": "PAYMENT PENDING",
    "owed": "NOT COMPLETED - MONEY OWED",
    "declined": "NOT DONE - NOTHING TAKEN",
    "choose": "CHOOSE AN AMOUNT",
    "slip": "PAY IN YOUR APP",
    "refund": "REFUND",
    "test": "PRINTER TEST",
    "collection": "CASH COLLECTION",
}
#: Every field a template may use, with a sample value (templates are checked against it).
FIELDS: dict[str, str] = {
    "title": "CASH IN - PAID",
    "kiosk_id": "KSK-0001",
    "location": "Store, street, city",
    "time": "2026-11-21 17:00:00 +04",
    "provider": "PayBy Cash Top Up",
    "ref": "KSK-0001-000042",
    "references": "PayBy order: 131658300517875854",
    "amount_due": "AED 150.00",
    "notes": "AED 100.00, AED 50.00",
    "credited": "AED 150.00",
    "dispensed": "AED 0.00",
    "owed": "AED 0.00",
    "owed_line": "",
    "status": "PAID",
    "reason": "",
    "support_line": "Support: +971 4 000 0000",
    "journey": "payby_cashin",
    "printer": "escpos",
    "paper": "ok",
    "columns": "48",
    "technician": "T-7",
    "since": "2026-11-20 09:00",
    "counts": "AED 100.00 x 3",
    "total": "AED 300.00",
    "pay_url": "https://pay.example/payment?code=1234567890123456",
    "pay_code": "1234 5678 9012 3456",
}
_STYLES = ("@center", "@right", "@bold", "@double")


def blank_fields() -> dict[str, str]:
    """Every field empty: a field a receipt kind does not fill leaves its line out (the
    values of :data:`FIELDS` are samples for checking templates, never printed)."""
    return dict.fromkeys(FIELDS, "")


def local_time() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())


@dataclass(frozen=True, slots=True)
class Template:
    kind: str
    source: Path
    lines: tuple[str, ...]

    def render(self, fields: Mapping[str, str], name: str) -> Document:
        """The document of this template with ``fields`` (every field of :data:`FIELDS`)."""
        formatter = string.Formatter()
        blocks: list[Block] = []
        for raw in self.lines:
            text = raw.rstrip()
            if not text or text.startswith("#"):
                continue
            if text.strip() == "---":
                blocks.append(Rule())
                continue
            words = text.split(" ")
            styles = set()
            while words and words[0] in _STYLES:
                styles.add(words.pop(0))
            if words and words[0] == "@qr":
                data = formatter.vformat(" ".join(words[1:]), (), fields).strip()
                if data:
                    blocks.append(QrBlock(data))
                continue
            body = " ".join(words)
            has_fields = any(f for _, f, _, _ in formatter.parse(body) if f)
            value = formatter.vformat(body, (), fields)
            if has_fields and not value.strip():
                continue
            align: Literal["left", "center", "right"] = (
                "center" if "@center" in styles else "right" if "@right" in styles else "left"
            )
            for part in value.split("\n"):
                blocks.append(
                    Line(part, bold="@bold" in styles, align=align, double="@double" in styles)
                )
        return Document(name=name, blocks=tuple(blocks))


@functools.lru_cache(maxsize=8)
def load_templates(directory: Path | None = None) -> dict[str, Template]:
    """Built-in templates, each overridden by ``directory/<kind>.receipt`` when present."""
    out: dict[str, Template] = {}
    for kind in KINDS:
        path = BUILTIN / f"{kind}.receipt"
        if directory is not None and (directory / f"{kind}.receipt").exists():
            path = directory / f"{kind}.receipt"
        try:
            template = Template(kind, path, tuple(path.read_text(encoding="utf-8").splitlines()))
            template.render(FIELDS, "check")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), "", f"a readable receipt template ({exc})") from exc
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                str(path), "", f"a receipt template using only known fields ({exc!r} is not)"
            ) from exc
        out[kind] = template
    return out


def _money(tx: Tx, minor: int) -> str:
    return str(Money.of(minor, tx.currency))


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
    templates_dir: Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> Document:
    """The receipt of ``tx`` of ``kind`` (one of :data:`KINDS`)."""
    fields = blank_fields()
    fields.update(
        title=TITLES.get(kind, kind.upper()),
        kiosk_id=kiosk_id,
        location=location,
        time=local_time(),
        provider=provider_name,
        ref=tx.ref,
        references="\n".join(f"{k}: {v}" for k, v in references.items()),
        amount_due=_money(tx, tx.amount_due),
        notes=", ".join(_money(tx, n) for n in notes) or "none",
        credited=_money(tx, tx.credited),
        dispensed=_money(tx, tx.dispensed),
        owed=_money(tx, tx.owed),
        owed_line=f"OWED TO YOU: {_money(tx, tx.owed)}" if tx.owed else "",
        status=status_text,
        reason=tx.reason or "",
        support_line=support_line,
        journey=tx.journey,
    )
    fields.update(extra or {})
    return load_templates(templates_dir)[kind].render(fields, f"{tx.ref}-{kind}")


def for_kiosk(
    config: Config,
    tx: Tx,
    kind: str,
    *,
    provider_name: str,
    status_text: str,
    notes: list[int] | None = None,
    references: dict[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Document:
    """:func:`build` with this kiosk's id, location, support line and templates."""
    return build(
        tx,
        kind,
        kiosk_id=config.kiosk_id,
        location=config.location,
        support_line=config.support_line,
        provider_name=provider_name,
        notes=notes or [],
        references=references or {},
        status_text=status_text,
        templates_dir=config.printer.templates_dir,
        extra=extra,
    )


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
    """Print a queued receipt: the attempt is committed first, the result right after."""
    await journal.call(journal.sync.receipt_printing, receipt_id)
    try:
        await printer.print(doc)
    except (DriverError, OSError) as exc:
        log.warning("receipt %s not printed (%s); queued for reprint", doc.name, exc)
        await journal.call(journal.sync.receipt_result, receipt_id, str(exc) or type(exc).__name__)
        return False
    await journal.call(journal.sync.receipt_result, receipt_id, None)
    return True


def copy_of(doc: Document, *, why: str, settled: list[str] | None = None) -> Document:
    """A reprint: ``*** COPY ***`` on top with ``why``, and, when the money the receipt says
    is owed has since been settled, a line for each settlement at the end."""
    top: list[Block] = [
        Line("*** COPY ***", bold=True, align="center"),
        Line(why, align="center"),
        Rule("-"),
    ]
    tail: list[Block] = []
    if settled:
        tail = [Rule("-"), Line("SETTLED - nothing is owed any more", bold=True)]
        tail += [Line(text) for text in settled]
    return Document(f"{doc.name}-copy", (*top, *doc.blocks, *tail))


async def print_left_at_start(journal: AsyncJournal, printer: ReceiptPrinter) -> int:
    """After a restart, print each receipt that was queued and never reached the printer
    once; one whose printing was cut short (it may have come out) is printed as a COPY.
    Receipts that failed on the printer stay queued for a technician's reprint. Returns how
    many were printed."""
    printed = 0
    for row in await journal.call(journal.sync.receipts, queued_only=True):
        doc = from_json(row["document"])
        if row["attempts"] and row["last_error"] is None:
            doc = copy_of(doc, why="printing was interrupted; this may repeat a receipt")
        elif row["attempts"]:
            continue
        printed += await print_queued(journal, printer, row["id"], doc)
    return printed
