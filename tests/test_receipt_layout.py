"""Receipts a customer understands: every kind, on both paper widths, with every reason code the
journeys use, fits the paper with a margin, breaks lines only between words, prints no
internal code and dates every receipt one way."""

from __future__ import annotations

import ast
import dataclasses
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.printer.base import Document, Line, QrBlock, Rule
from drivers.printer.render import render_text
from kiosk import receipts
from kiosk.journal import Journal, Tx

ROOT = Path(receipts.__file__).parent
#: The flows' reason codes named in the issue (the sweep below finds the rest in the source).
NAMED = (
    "ended_by_cancel",
    "ended_by_timeout",
    "ended_by_fault",
    "ended_by_interrupted",
    "refund_failed:62002",
    "order_unconfirmed",
    "pay_timeout",
    "insufficient_funds",
    "otp_expired",
    "payment_rejected",
    "refunded",
    "refunded_all",
    "incomplete_payout:stopped",
    "provider_unreachable:ConnectTimeout",
    "pay_refused:60012",
    "interrupted",
    "interrupted_before_confirm",
    "cancelled_at_kiosk",
)
#: Reasons an OWED or PENDING receipt (the ones with a reason line) is printed for: each has a
#: sentence.
EXPLAINED = (
    "ended_by_cancel",
    "ended_by_timeout",
    "ended_by_fault",
    "ended_by_interrupted",
    "interrupted",
    "interrupted_awaiting_otp",
    "refund_failed:62002",
    "refund_failed:?",
    "incomplete_payout:stopped",
    "pay_refused:60012",
    "pay_not_done:FAILURE",
    "offline_not_payable:PAID_SUCCESS",
    "create_refused:insufficient_funds",
    "provider_unreachable:ConnectTimeout",
    "session_refused:otp_expired",
    "deposit_refused:refused:?",
    "confirm_refused:insufficient_funds",
    "not_confirmed:canceled",
    "otp_refused",
    "otp_timeout",
    "cancelled_before_otp",
    "paid_after_slip_void",
    "paid_payout_not_started",
    "confirmed_after_customer_left",
    "pay_unconfirmed",
    "confirm_unconfirmed",
    "deposit_unconfirmed",
    "withdraw_unconfirmed",
    "refund_unconfirmed",
    "reversal_unconfirmed",
    "pay_timeout",
    "cancelled_at_kiosk",
    "confirmed_payout_not_started",
    "reserve_refused:insufficient_funds",
    "reversal_impossible:no_session",
)
STATUS = {
    "cashin": "PAID",
    "cashout": "PAID OUT AED 50.00 - AED 50.00 refunded to your PayBy account",
    "pending": (
        "PENDING - PayBy has not confirmed your payment yet. The kiosk keeps trying: your order"
        " is paid as soon as PayBy confirms it; if it cannot be paid, support refunds your cash."
        " Keep this receipt."
    ),
    "owed": "NOT PAID - keep this receipt; support will refund you",
    "declined": "NOT DONE: This kiosk pays at most AED 1000.00 at a time.",
    "choose": "1 press: AED 50.00\n2 presses: AED 100.00",
    "slip": "Scan the QR with the PayBy app and pay; the cash then comes out.",
    "approval": "An attendant must approve AED 1500.00 before the kiosk goes on.",
    "refund": "AED 50.00 refunded to your PayBy account",
    "refill": "Loaded AED 300.00; the recycler holds AED 1200.00",
}
#: A snake_case word, or ``word:detail`` with no space after the colon: an internal code.
CODE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b|\b[a-z][a-z0-9_]*:[A-Za-z0-9?]")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
ONE_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} [+-]\d{2}(?::\d{2})?(?![\d:])")


def _literal(node: ast.expr) -> str | None:
    """A string constant, or an f-string with each placeholder as ``X1``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "X1"
            for v in node.values
            if isinstance(v, ast.Constant | ast.FormattedValue)
        )
    return None


def swept_reasons() -> set[str]:
    """Every code-like string in the journeys and the providers' outcome tables: each reason
    a flow can record is one of them (or begins with one)."""
    found: set[str] = set()
    sources = [*(ROOT / "flows").glob("*.py"), *(ROOT / "providers").glob("*/outcomes.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = _literal(node) if isinstance(node, ast.expr) else None
            if text and re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-zA-Z0-9]*)+(?::[\w?]*)?", text):
                found.add(text)
    return found


REASON_CODES = sorted(swept_reasons() | set(NAMED) | set(EXPLAINED))


@pytest.fixture
def dubai_time() -> Iterator[None]:
    with _tz("GST-4"):
        yield


class _tz:
    def __init__(self, zone: str) -> None:
        self.zone = zone

    def __enter__(self) -> None:
        import os

        self.old = os.environ.get("TZ")
        os.environ["TZ"] = self.zone
        time.tzset()

    def __exit__(self, *exc: object) -> None:
        import os

        if self.old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = self.old
        time.tzset()


def _tx(journal: Journal) -> Tx:
    tx = journal.begin("payby_cashin", currency="AED")
    tx = journal.transition(tx.id, "accepting", amount_due=15000, provider_ref="131658300517875854")
    for n, value in enumerate((10000, 5000)):
        eff = journal.intent(tx.id, "stack", f"n{n}", amount=value)
        journal.outcome(eff.id, "done", credit=value)
    journal.owe(tx.id, 5000, "ended_by_cancel")
    return journal.get(tx.id)


def _document(tx: Tx, kind: str, reason: str, since: str) -> Document:
    return receipts.build(
        dataclasses.replace(tx, reason=reason),
        kind,
        kiosk_id="KSK-DEMO-PSR",
        location="Dubai Mall, Ground Floor, Gate 3, Financial Centre Road",
        support_line="Support: +971 4 000 0000 (24 hours)",
        provider_name="PayBy Cash Top Up",
        notes=[10000, 5000, 5000, 2000],
        references={"PayBy order": "131658300517875854"},
        status_text=STATUS.get(kind, ""),
        extra={
            "pay_url": "https://pay.example/payment?code=1234567890123456",
            "pay_code": "1234 5678 9012 3456",
            "printer": "escpos-sim",
            "paper": "ok",  # technician.py passes str(PaperState): "near_end" is a code
            "columns": "32",
            "technician": "T-7 (Ahmed)",
            "since": since,
            "counts": "AED 100.00 x 3\nAED 50.00 x 12\nKept in the recycler for payouts:",
            "total": "AED 900.00",
        },
    )


def _words(doc: Document) -> list[str]:
    return [w for b in doc.blocks if isinstance(b, Line) for w in b.text.split()]


def _check(doc: Document, columns: int, reason: str) -> None:
    laid = receipts.layout(doc, columns)
    rows = render_text(laid, columns).splitlines()
    assert len(rows) == len(laid.blocks), "the printer had to wrap a line"
    assert _words(laid) == _words(doc), "a word was cut or lost"
    text_rows = []
    for block, row in zip(laid.blocks, rows, strict=True):
        if isinstance(block, QrBlock):
            continue  # "[QR: data]" in the text rendering; a picture on paper
        assert len(row) <= columns, row  # double-width characters counted twice
        if isinstance(block, Line) and block.text:
            assert receipts.line_width(block) <= columns - receipts.MARGIN, row
            assert row.startswith(" ") or block.align == "right", f"no left margin: {row!r}"
            assert len(row) < columns or row.endswith(" "), f"no right margin: {row!r}"
            text_rows.append(row)
        else:
            assert isinstance(block, Rule | Line)
    text = "\n".join(text_rows)
    assert not CODE.findall(text), (reason, CODE.findall(text))
    if ":" in reason or "_" in reason:
        assert reason not in text
    dates = DATE.findall(text)
    assert dates, "every receipt is dated"
    assert len(ONE_FORMAT.findall(text)) == len(dates), text
    flat = " ".join(text.split())
    sentence = receipts.customer_reason(reason)
    template = receipts.load_templates()[doc.name.rsplit("-", 1)[-1]]
    if any("{reason}" in line for line in template.lines):
        if sentence:
            assert sentence in flat
        else:
            assert "What happened" not in flat


@pytest.mark.parametrize("columns", [32, 48])
@pytest.mark.parametrize("kind", receipts.KINDS)
def test_every_kind_fits_both_papers_with_every_reason(
    journal: Journal, dubai_time: None, kind: str, columns: int
) -> None:
    tx = _tx(journal)
    for i, reason in enumerate(REASON_CODES):
        since = ("2026-11-20T09:00:00.000Z", "2026-11-20 09:00 UTC", "first collection")[i % 3]
        _check(_document(tx, kind, reason, since), columns, reason)


@pytest.mark.parametrize("kind", receipts.KINDS)
def test_titles_fit_at_double_width_on_58mm_with_a_margin(kind: str) -> None:
    title = receipts.TITLES[kind]
    laid = receipts.layout(
        Document("t", (Line(title, bold=True, align="center", double=True),)), 32
    )
    (line,) = laid.blocks
    assert isinstance(line, Line) and line.double and line.text == title
    (row,) = render_text(laid, 32).splitlines()
    assert row.startswith("  ") and len(row) <= 30  # a double-width character each side
    assert row.lstrip()[::2] == title


def test_a_title_too_long_for_double_width_prints_normal_and_bold() -> None:
    title = "NOT COMPLETED - MONEY OWED"  # 26 characters: 52 columns at double width
    doc = Document("t", (Line(title, bold=True, align="center", double=True),))
    (wide,) = receipts.layout(doc, 48).blocks
    assert isinstance(wide, Line) and not wide.double and wide.bold and wide.text == title
    narrow = receipts.layout(Document("t", (Line(title * 2, double=True),)), 32).blocks
    assert all(isinstance(b, Line) and not b.double and b.bold for b in narrow)
    assert _words(Document("n", narrow)) == (title * 2).split()


def test_amounts_are_never_split_from_their_currency() -> None:
    line = Line("Notes: AED 100.00, AED 50.00, AED 20.00, AED 10.00, AED 5.00")
    for columns in (32, 48):
        rows = [b.text for b in receipts.layout(Document("n", (line,)), columns).blocks]
        assert all(not r.rstrip().endswith("AED") for r in rows), rows
        assert " ".join(" ".join(rows).split()) == line.text


def test_margins_left_right_and_centre() -> None:
    doc = Document(
        "m",
        (Line("left"), Line("right", align="right"), Line("centre", align="center"), Line("")),
    )
    left, right, centre, blank = receipts.layout(doc, 32).blocks
    assert isinstance(left, Line) and left.text == " left"
    assert isinstance(right, Line) and right.text == "right "
    assert isinstance(centre, Line) and centre.text == "centre"
    assert isinstance(blank, Line) and blank.text == ""


def test_every_reason_a_customer_is_owed_for_is_explained() -> None:
    for code in EXPLAINED:
        sentence = receipts.customer_reason(code)
        assert sentence and sentence.endswith(".") and not CODE.search(sentence), code


def test_reason_lookup_exact_then_longest_prefix_then_nothing() -> None:
    assert receipts.customer_reason("ended_by_cancel") == "You pressed cancel."
    assert receipts.customer_reason("refund_failed:62002") == "The refund could not be made."
    assert receipts.customer_reason("interrupted_before_reserve") == receipts.REASONS["interrupted"]
    assert receipts.customer_reason("incomplete_payout") == receipts.REASONS["incomplete_payout:"]
    assert receipts.customer_reason("something_new:42") == ""
    assert receipts.customer_reason(None) == receipts.customer_reason("") == ""


def test_the_sweep_finds_the_flows_reasons() -> None:
    swept = swept_reasons()
    for code in ("ended_by_X1", "refund_failed:X1", "order_unconfirmed", "pay_timeout"):
        assert code in swept
    assert "insufficient_funds" in swept and "otp_expired" in swept  # providers' tables


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("GST-4", "2026-12-03 14:05 +04"),
        ("IST-5:30", "2026-12-03 15:35 +05:30"),
        ("UTC0", "2026-12-03 10:05 +00"),
        ("EST5", "2026-12-03 05:05 -05"),
    ],
)
def test_one_date_format_local_time_with_its_offset(zone: str, expected: str) -> None:
    with _tz(zone):
        assert receipts.receipt_time(datetime(2026, 12, 3, 10, 5, 59, tzinfo=UTC)) == expected
        for stamp in (
            "2026-12-03T10:05:59.123Z",
            "2026-12-03 10:05 UTC",
            "2026-12-03 14:05 +04",
            "2026-12-03T14:05:00+04:00",
        ):
            assert receipts._date_field(stamp) == expected, stamp
        assert ONE_FORMAT.fullmatch(receipts.local_time())
    assert receipts._date_field("first collection") == "first collection"


def test_technician_receipts_get_the_one_date_format(dubai_time: None) -> None:
    fields = {
        **receipts.blank_fields(),
        "title": receipts.TITLES["collection"],
        "kiosk_id": "KT1",
        "time": "2026-12-03T10:05:00.000Z",
        "since": "2026-11-20 09:00 UTC",
        "ref": "KT1-COLL-1",
        "total": "AED 0.00",
    }
    text = render_text(receipts.load_templates()["collection"].render(fields, "c"), 48)
    assert "2026-12-03 14:05 +04" in text and "Since: 2026-11-20 13:00 +04" in text


def test_a_copy_prints_each_settlement_time_in_the_one_format(dubai_time: None) -> None:
    doc = Document("KT1-000001-owed", (Line("MONEY OWED", double=True),))
    copy = receipts.copy_of(
        doc,
        why="reprinted at the technician's request",
        settled=["2026-12-03 12:07 UTC: AED 100.00 - cash refunded by T-7", "by hand"],
    )
    texts = [b.text for b in copy.blocks if isinstance(b, Line)]
    assert texts[-3:] == ["2026-12-03 16:07 +04", "AED 100.00 - cash refunded by T-7", "by hand"]
