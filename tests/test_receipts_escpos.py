"""Every receipt kind through the ESC/POS driver and the printer simulator, over a pty: the
text the simulator renders from the bytes holds every field the receipt must carry. And the
simulators' files: a second session in the same folder adds receipts, never replaces one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.escpos import encoder
from drivers.escpos.client import EscposPrinter
from drivers.escpos.sim import EscposSimulator, serve
from drivers.printer.base import Document, Line
from drivers.printer.sim import SimPrinter
from drivers.pty import DevicePort
from kiosk import receipts
from kiosk.journal import Journal
from kiosk.simkiosk import receipts_of

REQUIRED = ("KT1", "Mall, Gate 3", "Support: +971 4 1")


def _documents(journal: Journal) -> dict[str, tuple[receipts.Document, tuple[str, ...]]]:
    tx = journal.begin("payby_cashin", currency="AED")
    tx = journal.transition(tx.id, "accepting", amount_due=15000, provider_ref="1316583")
    eff = journal.intent(tx.id, "stack", "n1", amount=10000)
    journal.outcome(eff.id, "done", credit=10000)
    journal.owe(tx.id, 10000, "ended_by_cancel")
    cin = journal.get(tx.id)
    out = journal.begin("local_cashout", currency="AED", amount_due=9000)
    out = journal.transition(out.id, "dispensing")
    eff = journal.intent(out.id, "payout", "p1", amount=9000)
    journal.outcome(eff.id, "done", dispensed=9000)
    out = journal.get(out.id)
    common = {"kiosk_id": "KT1", "location": "Mall, Gate 3", "support_line": "Support: +971 4 1"}
    docs: dict[str, tuple[receipts.Document, tuple[str, ...]]] = {}
    for kind, tx_, provider, status in (
        ("cashin", cin, "PayBy Cash Top Up", "PAID"),
        ("pending", cin, "PayBy Cash Top Up", "PENDING"),
        ("owed", cin, "PayBy Cash Top Up", "NOT PAID"),
        ("refund", cin, "PayBy refund", "REFUNDED"),
        ("cashout", out, "Paysera", "PAID OUT"),
        ("declined", out, "Paysera", "Not enough funds in your Paysera wallet."),
        ("choose", out, "Paysera", "1 = AED 50.00"),
    ):
        doc = receipts.build(
            tx_,
            kind,
            provider_name=provider,
            notes=[10000],
            references={"Provider ref": "1316583"},
            status_text=status,
            **common,
        )
        must = (
            tx_.ref,
            provider,
            status,
            *(() if kind == "choose" else ("Provider ref: 1316583",)),
            *(() if kind == "choose" else ("AED 90.00" if tx_ is out else "AED 150.00",)),
        )
        docs[kind] = (doc, must)
    slip = receipts.build(
        out,
        "slip",
        provider_name="Cashii",
        notes=[],
        references={},
        status_text="The cash comes out as soon as Cashii confirms your payment.",
        extra={"pay_url": "https://cashii.app/payment?code=1234567890123456", "pay_code": "1234"},
        **common,
    )
    docs["slip"] = (slip, (out.ref, "Cashii", "AED 90.00", "1234", "Amount to pay"))
    if "refill" in receipts.KINDS:  # kiosk cash refill (its template may be newer than this)
        status = "Loaded AED 100.00; the recycler holds AED 400.00"
        refill = receipts.build(
            cin,
            "refill",
            provider_name="Recycler refill",
            notes=[10000],
            references={},
            status_text=status,
            **common,
        )
        docs["refill"] = (refill, (cin.ref, "AED 100.00", status))
    templates = receipts.load_templates()
    for kind, extra in (
        ("test", {"printer": "escpos", "paper": "ok", "columns": "48"}),
        (
            "collection",
            {
                "technician": "T-7",
                "counts": "AED 100.00 x 3",
                "total": "AED 300.00",
                "since": "first use",
            },
        ),
    ):
        fields = {
            **receipts.FIELDS,
            **common,
            "title": receipts.TITLES[kind],
            "ref": f"KT1-{kind}",
            **extra,
        }
        docs[kind] = (
            templates[kind].render(fields, f"KT1-{kind}"),
            (f"KT1-{kind}", *extra.values()),
        )
    return docs


@pytest.mark.parametrize("columns", [48, 32])
@pytest.mark.parametrize("kind", receipts.KINDS)
def test_every_receipt_kind_prints_with_its_fields(
    journal: Journal, tmp_path: Path, kind: str, columns: int
) -> None:
    if kind not in _documents(journal):
        pytest.skip(f"no sample document for {kind!r}")
    doc, must = _documents(journal)[kind]

    async def scenario() -> str:
        port = DevicePort()
        port.start()
        sim = EscposSimulator(tmp_path, columns=columns)
        server = asyncio.create_task(serve(sim, port))
        printer = EscposPrinter(str(port.path), columns=columns)
        try:
            await printer.open()
            await printer.print(receipts.layout(doc, columns))  # as print_queued does
        finally:
            await printer.close()
            server.cancel()
            port.close()
        (txt,) = sorted(tmp_path.glob("*.txt"))
        assert txt.with_suffix(".png").exists()
        return txt.read_text()

    raw = asyncio.run(scenario())
    assert all(len(row) <= columns for row in raw.splitlines() if not row.startswith("[QR"))
    text = " ".join(raw.split())
    for needle in (*REQUIRED[: 2 if kind in ("collection", "refill") else 3], *must):
        assert needle in text, (kind, needle)
    assert receipts.TITLES[kind].split()[0] in text.replace(" ", "").upper() or (
        receipts.TITLES[kind] in text
    )


def _cut(sim: EscposSimulator, doc: receipts.Document) -> receipts.Document:
    (out,) = [
        d for d in sim.feed(encoder.encode(doc, columns=sim.columns)) if isinstance(d, Document)
    ]
    return out


def test_a_second_simulator_session_in_the_folder_adds_files_and_replaces_none(
    journal: Journal, tmp_path: Path
) -> None:
    docs = _documents(journal)
    tmp_path /= "receipts"
    first = EscposSimulator(tmp_path, columns=48)
    for kind in ("cashin", "owed"):
        first.render(_cut(first, receipts.layout(docs[kind][0], 48)))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == [
        "0001-cash-in-paid.png",
        "0001-cash-in-paid.txt",
        "0002-money-owed.png",
        "0002-money-owed.txt",
    ]
    second = EscposSimulator(tmp_path, columns=48)  # the demo run again, same folder
    text_path, _ = second.render(_cut(second, receipts.layout(docs["cashin"][0], 48)))
    assert text_path.name == "0003-cash-in-paid.txt" and second.printed == ["0003-cash-in-paid"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    ref = docs["cashin"][0].name.removesuffix("-cashin")
    assert [p.name for p in receipts_of(tmp_path, ref)] == [
        "0001-cash-in-paid.txt",
        "0002-money-owed.txt",
        "0003-cash-in-paid.txt",
    ]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_two_simulators_cutting_at_once_never_take_the_same_file(tmp_path: Path) -> None:
    doc = Document("x", (Line("RECEIPT"),))
    a, b = EscposSimulator(tmp_path), EscposSimulator(tmp_path)
    cut_a, cut_b = _cut(a, doc), _cut(b, doc)
    assert cut_a.name == cut_b.name == "0001-receipt"  # neither has written yet
    a.render(cut_a)
    text_path, png_path = b.render(cut_b)
    assert (text_path.name, png_path.name) == ("0002-receipt.txt", "0002-receipt.png")
    assert b.printed == ["0002-receipt"] and a.printed == ["0001-receipt"]
    assert _cut(a, doc).name == "0003-receipt"


def test_the_plain_printer_simulator_never_replaces_a_receipt(tmp_path: Path) -> None:
    doc = Document("KT1-000001-owed-copy", (Line("*** COPY ***"), Line("first")))

    async def session(d: Document) -> list[str]:
        printer = SimPrinter(tmp_path, columns=32)
        await printer.open()
        await printer.print(d)
        await printer.print(d)
        return printer.printed

    assert asyncio.run(session(doc)) == ["KT1-000001-owed-copy", "KT1-000001-owed-copy-2"]
    again = Document(doc.name, (Line("second run"),))
    assert asyncio.run(session(again)) == ["KT1-000001-owed-copy-3", "KT1-000001-owed-copy-4"]
    assert "first" in (tmp_path / "KT1-000001-owed-copy.txt").read_text()
    assert "second run" in (tmp_path / "KT1-000001-owed-copy-4.txt").read_text()
    assert len(list(tmp_path.glob("*.png"))) == 4 and not list(tmp_path.glob(".*"))
