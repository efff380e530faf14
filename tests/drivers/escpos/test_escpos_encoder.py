"""The ESC/POS encoder: published QR vector, python-escpos as an oracle, text and layout bytes."""

from __future__ import annotations

import pytest
from escpos import constants as oracle_codes  # test-only oracle (python-escpos 3.1)
from escpos.printer import Dummy

from drivers.escpos import encoder
from drivers.escpos.codes import CodePage
from drivers.printer.base import Document, Line, QrBlock, Rule

# protocols.md §6.8: QR "HELLO", model 2, size 6, EC M (python-escpos 3.1, verified)
HELLO_QR = bytes.fromhex(
    "1D 28 6B 04 00 31 41 32 00 1D 28 6B 03 00 31 43 06 1D 28 6B 03 00 31 45 31 "
    "1D 28 6B 08 00 31 50 30 48 45 4C 4C 4F 1D 28 6B 03 00 31 51 30"
)


def oracle_qr(data: str, size: int) -> bytes:
    d = Dummy()
    d.qr(data, native=True, size=size, ec=oracle_codes.QR_ECLEVEL_M)
    return bytes(d.output)


def test_qr_hello_vector() -> None:
    assert encoder.qr("HELLO", 6) == HELLO_QR


@pytest.mark.parametrize(
    ("data", "size"),
    [
        ("HELLO", 6),
        ("A", 1),
        ("https://pay.example/r/KT1-000123?amount=300.00&cur=AED", 4),
        ("héllo wörld €", 8),
        ("0123456789" * 30, 16),  # pL/pH > 255
        ("x" * 400, 3),
    ],
)
def test_qr_matches_python_escpos(data: str, size: int) -> None:
    assert encoder.qr(data, size) == oracle_qr(data, size)


def test_qr_in_document_is_the_oracle_bytes() -> None:
    doc = Document("r", (QrBlock("KT1-000123", size=5),))
    assert oracle_qr("KT1-000123", 5) in encoder.encode(doc)


@pytest.mark.parametrize(("data", "size"), [("x", 0), ("x", 17), ("", 6)])
def test_qr_rejects_bad_input(data: str, size: int) -> None:
    with pytest.raises(ValueError):
        encoder.qr(data, size)


def test_receipt_frame() -> None:
    data = encoder.encode(Document("r", ()))
    assert data.startswith(oracle_codes.HW_INIT + b"\x1bt\x00")
    assert data.endswith(b"\x1bd\x04" + oracle_codes.PAPER_PART_CUT)


def test_styled_line_uses_the_escpos_bytes() -> None:
    data = encoder.line(Line("TOTAL", bold=True, align="center", double=True))
    align, bold = oracle_codes.TXT_STYLE["align"], oracle_codes.TXT_STYLE["bold"]
    assert data == (
        align["center"]
        + bold[True]
        + oracle_codes.TXT_SIZE
        + b"\x11"
        + b"TOTAL\n"
        + align["left"]
        + bold[False]
        + oracle_codes.TXT_SIZE
        + b"\x00"
    )


def test_plain_line_is_just_text() -> None:
    assert encoder.line(Line("Hello")) == b"Hello\n"
    assert encoder.line(Line("")) == b"\n"
    assert encoder.line(Line("a\nb")) == b"a\nb\n"


def test_rule_spans_the_columns() -> None:
    assert encoder.rule(Rule(), 48) == b"-" * 48 + b"\n"
    assert encoder.rule(Rule("="), 32) == b"=" * 32 + b"\n"
    assert encoder.rule(Rule(""), 4) == b"----\n"


def test_text_in_the_code_page_with_replacement() -> None:
    assert encoder.encode_text("é£€") == "é£".encode("cp437") + b"?"
    assert encoder.encode_text("€", CodePage.PC858) == "€".encode("cp858")
    data = encoder.encode(Document("r", (Line("€"),)), code_page=CodePage.PC858)
    assert b"\x1bt\x13" in data and "€".encode("cp858") + b"\n" in data


def test_control_characters_cannot_inject_commands() -> None:
    assert encoder.encode_text("a\x1bd\x00\x1dV\x01b\x85") == b"a?d??V?b?"
    assert b"\x1dV\x01" not in encoder.line(Line("x\x1dV\x01"))
