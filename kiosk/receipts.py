"""Receipts: small templates an operator can change, rendered to device-neutral documents,
queued in the journal before they are printed.

One template per kind (``kiosk/templates/<kind>.receipt``: the kinds are the built-in files; an
operator overrides any of them with a file of the same name in
``hardware.printer.templates_dir``). A template is lines of text with ``{fields}``; a line may
start with ``@center``, ``@right``, ``@bold``, ``@double``; ``---`` is a rule across the paper;
``@qr TEXT`` a QR code; ``#`` a comment. A line whose fields all came out empty is left out; a
field holding several lines prints them all. Templates are checked when loaded (``kiosk config
check`` too): an unknown field is a configuration error naming the file.

What a customer reads: the journey's reason code never reaches the paper; ``{reason}`` is the
plain sentence :data:`REASONS` gives for it, or nothing (the code stays in the journal, where
``kiosk journal REF`` shows it to a technician). Every date is printed one way,
``2026-12-03 14:05 +04`` (local time and its UTC offset): :func:`local_time`, and the ``time``
and ``since`` fields, whatever timestamp form they are given in (:func:`receipt_time`).

Layout for the paper (:func:`layout`, applied when a receipt is printed, so the journal keeps
the device-neutral document and a reprint fits whatever paper is loaded): one blank
character left and right of the text (a column; two beside double-width text); a line too
long for the paper is broken between words (an amount such as ``AED 100.00`` is one word),
never by the printer in the middle of one; a ``@double`` line holds 14 characters on 58 mm
paper and 22 on 80 mm, a longer one prints at normal width in bold.

A receipt failing to print never undoes or blocks the money movement: it stays ``queued``
in the journal for a reprint (``kiosk receipt reprint REF``).
"""

from __future__ import annotations

import functools
import logging
import re
import string
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from drivers.printer.base import Block, Document, Line, QrBlock, ReceiptPrinter, Rule
from kiosk import devices
from kiosk.errors import ConfigError, DeviceError
from kiosk.journal import AsyncJournal, Tx
from kiosk.money import Money

if TYPE_CHECKING:
    from kiosk.config import Config

log = logging.getLogger("kiosk.receipts")

BUILTIN = Path(__file__).parent / "templates"
#: The receipt kinds: one built-in template each (``kiosk/templates/<kind>.receipt``).
KINDS: Final = tuple(sorted(p.stem for p in BUILTIN.glob("*.receipt")))
#: Each kind's title. Printed ``@double``, a title holds 14 characters on 58 mm paper (22 on
#: 80 mm); these fit both. A longer one (an operator's) prints at normal width in bold.
TITLES = {
    "cashin": "CASH IN - PAID",
    "cashout": "CASH PAID OUT",
    "pending": "PENDING",
    "owed": "MONEY OWED",
    "declined": "NOT DONE",
    "choose": "CHOOSE AMOUNT",
    "slip": "PAY IN THE APP",
    "approval": "PLEASE WAIT",
    "refund": "REFUND",
    "test": "PRINTER TEST",
    "collection": "CASH COLLECTED",
    "refill": "REFILL",
}
#: Every field a template may use, with a sample value (templates are checked against it).
FIELDS: dict[str, str] = {
    "title": "CASH IN - PAID",
    "kiosk_id": "KSK-0001",
    "location": "Store, street, city",
    "time": "2026-11-21 17:00 +04",
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
    "since": "2026-11-20 09:00 +04",
    "counts": "AED 100.00 x 3",
    "total": "AED 300.00",
    "pay_url": "https://pay.example/payment?code=1234567890123456",
    "pay_code": "1234 5678 9012 3456",
}
#: Fields holding a date and time: printed in the one receipt format (:func:`receipt_time`).
DATE_FIELDS: Final = ("time", "since")

_YOU_CANCELLED = "You pressed cancel."
_RESTARTED = "The kiosk restarted during your transaction."
_NO_ANSWER = "The payment service did not answer in time."
_UNREACHABLE = "The payment service could not be reached."
_REFUSED = "The payment service refused the payment."
_LEFT = "The payment service confirmed it after you had left."
_CODE_REFUSED = "The code was not accepted."
_EXPIRED = "The code had expired."
_NO_FUNDS = "There was not enough money in your account."
#: What the customer reads for a journey's reason code (the ``{reason}`` field). A key ending
#: in ``:`` or ``_`` stands for every code it begins (``refund_failed:62002``); the longest
#: match wins. A code no key matches prints no reason line at all, never the code.
REASONS: Final[dict[str, str]] = {
    # the customer, or the time they had
    "cancel": _YOU_CANCELLED,
    "ended_by_cancel": _YOU_CANCELLED,
    "cancelled_at_kiosk": _YOU_CANCELLED,
    "cancelled_before_otp": _YOU_CANCELLED,
    "ended_by_timeout": "The kiosk stopped waiting for more notes.",
    "pay_timeout": "The kiosk stopped waiting for your payment.",
    "otp_timeout": "The kiosk stopped waiting for the code from your app.",
    "otp_refused": "The code from your app was not accepted.",
    "paid_after_slip_void": "You paid after the kiosk had stopped waiting.",
    "paid_after_qr_void": "You paid after the kiosk had stopped waiting.",
    "payment_": "The payment was not made in the app.",
    # the kiosk
    "ended_by_fault": "The note reader had a fault.",
    "ended_by_interrupted": _RESTARTED,
    "interrupted": _RESTARTED,
    "interrupted_": _RESTARTED,
    "paid_payout_not_started": "The kiosk restarted before it paid out.",
    "confirmed_payout_not_started": "The kiosk restarted before it paid out.",
    "recycler_unavailable": "The kiosk cannot pay out cash now.",
    "incomplete_payout": "The kiosk could not pay out all of the cash.",
    "incomplete_payout:": "The kiosk could not pay out all of the cash.",
    "cannot_pay_amount": "The kiosk cannot pay this amount in notes.",
    "over_limit": "The amount is over this kiosk's limit.",
    # the payment service
    "provider_offline": _UNREACHABLE,
    "provider_unreachable:": _UNREACHABLE,
    "pay_unconfirmed": _NO_ANSWER,
    "confirm_unconfirmed": _NO_ANSWER,
    "deposit_unconfirmed": _NO_ANSWER,
    "withdraw_unconfirmed": _NO_ANSWER,
    "order_unconfirmed": _NO_ANSWER,
    "create_unconfirmed:": _NO_ANSWER,
    "refund_unconfirmed": "The refund is not confirmed yet.",
    "reversal_unconfirmed": "The money going back to your wallet is not confirmed yet.",
    "refused:": _REFUSED,
    "create_refused:": _REFUSED,
    "order_refused:": _REFUSED,
    "order_not_payable:": _REFUSED,
    "pay_refused:": _REFUSED,
    "session_refused:": _REFUSED,
    "deposit_refused:": _REFUSED,
    "withdraw_refused:": _REFUSED,
    "confirm_refused:": _REFUSED,
    "reserve_refused:": _REFUSED,
    "reservation_mismatch:": _REFUSED,
    "order_cancelled": "The order was cancelled.",
    "pay_not_done:": "The payment service did not complete the payment.",
    "not_confirmed:": "The payment service did not complete the payment.",
    "order_failed": "The payment service did not complete the payment.",
    "offline_not_payable:": "The payment could not be made when the service was back.",
    "confirmed_after_customer_left": _LEFT,
    "withdrawn_after_customer_left": _LEFT,
    "refund_failed:": "The refund could not be made.",
    "refunded": "The rest was refunded to your account.",
    "refunded_all": "Your payment was refunded to your account.",
    "reversed": "The rest went back to your wallet.",
    "reversed_all": "Your money went back to your wallet.",
    "reversal_refused:": "The money could not be sent back to your wallet.",
    "reversal_impossible:": "The money could not be sent back to your wallet.",
    # the customer's code or account, as the provider said
    "code_already_used": "This code was already used.",
    "invalid_code": _CODE_REFUSED,
    "invalid_otp": _CODE_REFUSED,
    "code_expired": _EXPIRED,
    "otp_expired": _EXPIRED,
    "insufficient_funds": _NO_FUNDS,
    "store_balance_short": "The kiosk cannot take this payment now.",
}
_STYLES = ("@center", "@right", "@bold", "@double")


def blank_fields() -> dict[str, str]:
    """Every field empty: a field a receipt kind does not fill leaves its line out (the
    values of :data:`FIELDS` are samples for checking templates, never printed)."""
    return dict.fromkeys(FIELDS, "")


def customer_reason(code: str | None) -> str:
    """The sentence :data:`REASONS` gives for the reason ``code``; ``""`` for none."""
    if not code:
        return ""
    if code in REASONS:
        return REASONS[code]
    prefixes = [k for k in REASONS if k[-1] in ":_" and code.startswith(k)]
    return REASONS[max(prefixes, key=len)] if prefixes else ""


def receipt_time(when: datetime | None = None) -> str:
    """``when`` (default: now) as every receipt prints a date: local time, to the minute, with
    its UTC offset (``2026-12-03 14:05 +04``; ``+05:30`` where the offset has minutes)."""
    local = (when or datetime.now(UTC)).astimezone()
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign, hours, rest = "+" if minutes >= 0 else "-", abs(minutes) // 60, abs(minutes) % 60
    zone = f"{sign}{hours:02d}" + (f":{rest:02d}" if rest else "")
    return f"{local:%Y-%m-%d %H:%M} {zone}"


def local_time() -> str:
    """Now, as receipts print it (:func:`receipt_time`)."""
    return receipt_time()


_TIMESTAMP: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r" ?(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_time(text: str) -> datetime | None:
    """A timestamp as the kiosk writes them (the journal's ``2026-11-20T09:00:00.000Z``,
    ``2026-11-20 09:00 UTC``, a receipt's ``2026-11-20 13:00 +04``; without a zone: local
    time), or None when ``text`` is not one."""
    m = _TIMESTAMP.fullmatch(text.strip())
    if m is None:
        return None
    day, hm, sec, zone = m.groups()
    try:
        naive = datetime.fromisoformat(f"{day}T{hm}:{sec or '00'}")
    except ValueError:
        return None
    if zone is None:
        return naive.astimezone()
    if zone in ("Z", "UTC", "GMT"):
        return naive.replace(tzinfo=UTC)
    digits = zone[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return naive.replace(tzinfo=timezone(delta if zone[0] == "+" else -delta))


def _date_field(value: str) -> str:
    when = parse_time(value)
    return value if when is None else receipt_time(when)


@dataclass(frozen=True, slots=True)
class Template:
    kind: str
    source: Path
    lines: tuple[str, ...]

    def render(self, fields: Mapping[str, str], name: str) -> Document:
        """The document of this template with ``fields`` (every field of :data:`FIELDS`)."""
        formatter = string.Formatter()
        fields = {**fields, **{k: _date_field(fields[k]) for k in DATE_FIELDS if k in fields}}
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
            names = [f for _, f, _, _ in formatter.parse(body) if f]
            value = formatter.vformat(body, (), fields)
            if names and not any(str(formatter.get_field(f, (), fields)[0]).strip() for f in names):
                continue  # "What happened: {reason}" with no reason: no line
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
        reason=customer_reason(tx.reason),
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


#: Blank columns kept left and right of the text (rules and QR codes span the paper).
MARGIN: Final = 1
_AMOUNT: Final = re.compile(r"\b([A-Z]{3}) (?=-?\d)")  # "AED 100.00" is one word
_GLUE: Final = "\x00"


def layout(doc: Document, columns: int) -> Document:
    """``doc`` laid out for paper ``columns`` characters wide: text kept one character (of its
    size: :data:`MARGIN` columns, twice that at double width) off each edge, every line
    broken between words to fit (a word longer than the whole line is the only one cut), a
    ``double`` line that does not fit at double width made normal width and bold. Every line
    then fits as it is: the printer never wraps one."""
    blocks: list[Block] = []
    for block in doc.blocks:
        blocks.extend(_fit(block, columns) if isinstance(block, Line) else (block,))
    return Document(doc.name, tuple(blocks))


def line_width(line: Line) -> int:
    """Columns ``line`` takes on paper (a double-width character takes two)."""
    return len(line.text) * (2 if line.double else 1)


def double_fits(text: str, columns: int) -> bool:
    """Whether ``text`` fits paper ``columns`` wide at double width, margins kept (14
    characters on 58 mm paper, 22 on 80 mm)."""
    return len(text) <= columns // 2 - 2 * MARGIN


def _fit(line: Line, columns: int) -> list[Line]:
    parts = line.text.splitlines() or [""]
    if line.double:
        if all(double_fits(p, columns) for p in parts):
            return [
                Line(_pad(p, line.align), bold=line.bold, align=line.align, double=True)
                for p in parts
            ]
        line = Line(line.text, bold=True, align=line.align)
    return [
        Line(_pad(piece, line.align), bold=line.bold, align=line.align)
        for part in parts
        for piece in _wrap(part, columns - 2 * MARGIN)
    ]


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    glued = _AMOUNT.sub(rf"\1{_GLUE}", text)
    pieces = textwrap.wrap(glued, width, break_on_hyphens=False) or [""]
    return [p.replace(_GLUE, " ") for p in pieces]


def _pad(text: str, align: str) -> str:
    """The margin as blank characters: before a left-aligned line, after a right-aligned one
    (centring leaves it on both sides of a line that fits the width)."""
    if not text or align == "center":
        return text
    return " " * MARGIN + text if align == "left" else text + " " * MARGIN


async def issue(
    journal: AsyncJournal, printer: ReceiptPrinter, tx: Tx, kind: str, doc: Document
) -> bool:
    """Queue the receipt in the journal, then print it. False if it stays queued."""
    receipt_id = await journal.call(journal.sync.queue_receipt, tx.id, kind, to_json(doc))
    return await print_queued(journal, printer, receipt_id, doc)


async def print_queued(
    journal: AsyncJournal, printer: ReceiptPrinter, receipt_id: int, doc: Document
) -> bool:
    """Print a queued receipt, laid out for the printer's paper (:func:`layout`): the attempt
    is committed first, the result right after."""
    await journal.call(journal.sync.receipt_printing, receipt_id)
    printer = devices.printer(printer)  # its errors are DeviceError (already so from a Context)
    try:
        await printer.print(layout(doc, printer.columns))
    except DeviceError as exc:
        log.warning("receipt %s not printed (%s); queued for reprint", doc.name, exc.message)
        await journal.call(journal.sync.receipt_result, receipt_id, exc.message)
        return False
    await journal.call(journal.sync.receipt_result, receipt_id, None)
    return True


def copy_of(doc: Document, *, why: str, settled: list[str] | None = None) -> Document:
    """A reprint: ``*** COPY ***`` on top with ``why``, and, when the money the receipt says
    is owed has since been settled, each settlement at the end (``<time>: <what>``, the time
    as any timestamp :func:`parse_time` reads)."""
    top: list[Block] = [
        Line("*** COPY ***", bold=True, align="center"),
        Line(why, align="center"),
        Rule("-"),
    ]
    tail: list[Block] = []
    if settled:
        tail = [Rule("-"), Line("SETTLED - nothing is owed any more", bold=True)]
        tail += [line for text in settled for line in _settlement(text)]
    return Document(f"{doc.name}-copy", (*top, *doc.blocks, *tail))


def _settlement(text: str) -> list[Line]:
    """A settlement line: one that starts with its time (``<time>: <what>``) prints the time
    in the receipts' format on a line of its own, then what was done."""
    m = _TIMESTAMP.match(text)
    when = parse_time(m[0]) if m else None
    if m is None or when is None or not text[m.end() :].startswith(":"):
        return [Line(text)]
    rest = text[m.end() + 1 :].strip()
    return [Line(receipt_time(when)), *([Line(rest)] if rest else [])]


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
