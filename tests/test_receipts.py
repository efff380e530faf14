"""Receipt templates: every kind carries what the customer and support need."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.printer.base import Document, Line, QrBlock, Rule
from drivers.printer.render import render_text
from kiosk import receipts
from kiosk.errors import ConfigError
from kiosk.journal import Journal, Tx


def _tx(journal: Journal, journey: str = "payby_cashin") -> Tx:
    tx = journal.begin(journey, currency="AED")
    if journey == "payby_cashin":
        tx = journal.transition(tx.id, "accepting", amount_due=15000, provider_ref="1316583")
        eff = journal.intent(tx.id, "stack", "n1", amount=10000)
        journal.outcome(eff.id, "done", credit=10000)
    return journal.get(tx.id)


def _text(doc: Document) -> str:
    return render_text(doc, 48)


def test_every_kind_has_a_template() -> None:
    assert set(receipts.load_templates()) == set(receipts.KINDS)


@pytest.mark.parametrize("kind", ["cashin", "pending", "owed", "refund"])
def test_transaction_receipts_hold_every_required_field(journal: Journal, kind: str) -> None:
    tx = _tx(journal)
    doc = receipts.build(
        tx,
        kind,
        kiosk_id="KT1",
        location="Mall, Gate 3",
        support_line="Support: +971 4 1",
        provider_name="PayBy Cash Top Up",
        notes=[10000],
        references={"PayBy order": "1316583"},
        status_text="STATUS-TEXT",
    )
    text = _text(doc)
    for needle in (
        "KT1",
        "Mall, Gate 3",
        "PayBy Cash Top Up",
        tx.ref,
        "PayBy order: 1316583",
        "AED 150.00",
        "STATUS-TEXT",
        "Support: +971 4 1",
    ):
        assert needle in text, (kind, needle)
    assert any(isinstance(b, QrBlock) and b.data == tx.ref for b in doc.blocks)
    assert any(isinstance(b, Rule) for b in doc.blocks)
    if kind in ("cashin", "owed", "pending"):
        assert "AED 100.00" in text  # the note taken, or the cash received


def test_owed_receipt_says_what_is_owed(journal: Journal) -> None:
    tx = _tx(journal)
    journal.owe(tx.id, 10000, "ended_by_cancel")
    tx = journal.transition(tx.id, "owed", reason="ended_by_cancel")
    text = _text(
        receipts.build(
            tx,
            "owed",
            kiosk_id="KT1",
            location="",
            support_line="",
            provider_name="PayBy",
            notes=[10000],
            references={},
            status_text="NOT PAID",
        )
    )
    assert "OWED TO YOU: AED 100.00" in text
    assert "What happened: You pressed cancel." in text and "ended_by_cancel" not in text


def test_a_reason_without_a_sentence_prints_no_reason_line(journal: Journal) -> None:
    tx = _tx(journal)
    tx = journal.transition(tx.id, "owed", reason="something_new:42")
    text = _text(
        receipts.build(
            tx,
            "owed",
            kiosk_id="KT1",
            location="",
            support_line="",
            provider_name="PayBy",
            notes=[],
            references={},
            status_text="NOT PAID",
        )
    )
    assert "What happened" not in text and "something_new" not in text and "42" not in text


def test_cashout_receipt(journal: Journal) -> None:
    tx = journal.begin("local_cashout", currency="AED", amount_due=9000)
    tx = journal.transition(tx.id, "dispensing")
    eff = journal.intent(tx.id, "payout", "p1", amount=9000)
    journal.outcome(eff.id, "done", dispensed=9000)
    text = _text(
        receipts.build(
            journal.get(tx.id),
            "cashout",
            kiosk_id="KT1",
            location="",
            support_line="",
            provider_name="Kiosk",
            notes=[],
            references={},
            status_text="PAID OUT",
        )
    )
    assert "Cash paid out: AED 90.00" in text and "Amount requested: AED 90.00" in text


def test_empty_fields_leave_their_line_out(journal: Journal) -> None:
    doc = receipts.build(
        _tx(journal),
        "cashin",
        kiosk_id="KT1",
        location="",
        support_line="",
        provider_name="P",
        notes=[],
        references={},
        status_text="S",
    )
    lines = [b.text for b in doc.blocks if isinstance(b, Line)]
    assert "" not in [t.strip() for t in lines]
    assert not any("OWED" in t for t in lines)


def test_an_operator_template_replaces_the_builtin_one(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "cashin.receipt").write_text("@center @bold SHOP 42\n{ref}\n@qr {ref}\n")
    receipts.load_templates.cache_clear()
    doc = receipts.build(
        _tx(journal),
        "cashin",
        kiosk_id="KT1",
        location="",
        support_line="",
        provider_name="P",
        notes=[],
        references={},
        status_text="S",
        templates_dir=tmp_path,
    )
    assert next(b.text for b in doc.blocks if isinstance(b, Line)) == "SHOP 42"
    assert receipts.load_templates(tmp_path)["owed"].source.parent == receipts.BUILTIN


def test_a_broken_template_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "owed.receipt").write_text("Amount: {amount_owed_typo}\n")
    receipts.load_templates.cache_clear()
    with pytest.raises(ConfigError, match=r"owed\.receipt") as err:
        receipts.load_templates(tmp_path)
    assert "amount_owed_typo" in str(err.value)


def test_documents_survive_the_journal_round_trip(journal: Journal) -> None:
    doc = receipts.build(
        _tx(journal),
        "cashin",
        kiosk_id="KT1",
        location="L",
        support_line="",
        provider_name="P",
        notes=[10000],
        references={"A": "B"},
        status_text="S",
    )
    assert receipts.from_json(receipts.to_json(doc)) == doc
