"""Every receipt kind through the ESC/POS driver and the printer simulator, over a pty: the
text the simulator renders from the bytes holds every field the receipt must carry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.escpos.client import EscposPrinter
from drivers.escpos.sim import EscposSimulator, serve
from drivers.pty import DevicePort
from kiosk import receipts
from kiosk.journal import Journal

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


@pytest.mark.parametrize("kind", receipts.KINDS)
def test_every_receipt_kind_prints_with_its_fields(
    journal: Journal, tmp_path: Path, kind: str
) -> None:
    doc, must = _documents(journal)[kind]

    async def scenario() -> str:
        port = DevicePort()
        port.start()
        sim = EscposSimulator(tmp_path, columns=48)
        server = asyncio.create_task(serve(sim, port))
        printer = EscposPrinter(str(port.path), columns=48)
        try:
            await printer.open()
            await printer.print(doc)
        finally:
            await printer.close()
            server.cancel()
            port.close()
        (txt,) = sorted(tmp_path.glob("*.txt"))
        assert txt.with_suffix(".png").exists()
        return txt.read_text()

    text = asyncio.run(scenario())
    for needle in (*REQUIRED[: 3 if kind != "collection" else 2], *must):
        assert needle in text, (kind, needle)
    assert receipts.TITLES[kind].split()[0] in text.replace(" ", "").upper() or (
        receipts.TITLES[kind] in text
    )
