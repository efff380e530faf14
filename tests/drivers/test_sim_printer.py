"""The simulated receipt printer: text and PNG output, scripted status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from drivers.errors import DeviceFault
from drivers.printer.base import Document, Line, PaperState, QrBlock, Rule
from drivers.printer.render import render_image, render_text
from drivers.printer.sim import SimPrinter
from drivers.reader.decode import decode_file

PAY_URL = "https://pay.example.com/p/8f3a9c?kiosk=k-042&ref=R-2024-0001"

RECEIPT = Document(
    name="R-2024-0001",
    blocks=(
        Line("KIOSK 042", bold=True, align="center", double=True),
        Line("Main Street 1, Springfield", align="center"),
        Rule(),
        Line("Cash in            150.00 EUR"),
        Line("Ref R-2024-0001", align="right"),
        Rule("="),
        QrBlock(PAY_URL, size=6),
        Line("Thank you", align="center"),
    ),
)


def print_doc(printer: SimPrinter, doc: Document) -> None:
    async def main() -> None:
        await printer.open()
        await printer.print(doc)

    asyncio.run(main())


def test_prints_text_and_png_with_a_scannable_qr(tmp_path: Path) -> None:
    printer = SimPrinter(tmp_path / "out")
    print_doc(printer, RECEIPT)
    text_path, png_path = printer.paths(RECEIPT.name)
    text = text_path.read_text()
    lines = text.splitlines()
    assert lines[0] == "      K I O S K   0 4 2"  # double width: centred on 16, spaced
    assert "Main Street 1, Springfield" in text
    assert "Cash in            150.00 EUR" in lines
    assert "Ref R-2024-0001".rjust(32) in lines
    assert "-" * 32 in lines and "=" * 32 in lines
    assert f"[QR: {PAY_URL}]" in lines
    assert "Thank you" in text
    assert all(len(line) <= 32 for line in lines if not line.startswith("[QR"))
    with Image.open(png_path) as image:
        assert image.width == 384
        assert image.getpixel((0, 0)) == 255  # white paper
    assert decode_file(png_path) == [PAY_URL]
    assert printer.printed == [RECEIPT.name]
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left


def test_80mm_is_576_dots_and_48_columns(tmp_path: Path) -> None:
    printer = SimPrinter(tmp_path, columns=48)
    doc = Document("wide", (Line("x", align="right"), QrBlock("hello", size=16)))
    print_doc(printer, doc)
    text_path, png_path = printer.paths("wide")
    assert text_path.read_text().splitlines()[0] == "x".rjust(48)
    with Image.open(png_path) as image:
        assert image.width == 576
    assert decode_file(png_path) == ["hello"]


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        ({"paper": PaperState.OUT}, "paper_out"),
        ({"cover_open": True}, "cover_open"),
        ({"online": False}, "offline"),
        ({"error": True}, "error"),
    ],
)
def test_refuses_when_not_ready(tmp_path: Path, script: dict[str, object], kind: str) -> None:
    printer = SimPrinter(tmp_path)
    if "paper" in script:
        printer.set_paper(PaperState.OUT)
    if "cover_open" in script:
        printer.set_cover_open(True)
    if "online" in script:
        printer.set_online(False)
    if "error" in script:
        printer.set_error(True)
    assert not asyncio.run(printer.status()).ready
    with pytest.raises(DeviceFault) as exc:
        print_doc(printer, RECEIPT)
    assert exc.value.kind == kind
    assert list(tmp_path.iterdir()) == []
    assert printer.printed == []


def test_near_end_still_prints(tmp_path: Path) -> None:
    printer = SimPrinter(tmp_path)
    printer.set_paper(PaperState.NEAR_END)
    status = asyncio.run(printer.status())
    assert status.ready and status.paper is PaperState.NEAR_END
    print_doc(printer, RECEIPT)
    assert printer.state()["printed"] == [RECEIPT.name]


def test_unsafe_names_are_refused(tmp_path: Path) -> None:
    printer = SimPrinter(tmp_path / "out")
    with pytest.raises(ValueError, match="safe file name"):
        print_doc(printer, Document("../escape", (Line("x"),)))


def test_long_lines_wrap_and_keep_every_word() -> None:
    sentence = "the quick brown fox jumps over the lazy dog and keeps running far away"
    text = render_text(Document("w", (Line(sentence),)), 32)
    assert all(len(line) <= 32 for line in text.splitlines())
    assert text.split() == sentence.split()


def test_double_lines_hold_half_the_columns() -> None:
    text = render_text(Document("d", (Line("ABCDEFGHIJKLMNOPQRS", double=True),)), 32)
    assert text.splitlines() == ["A B C D E F G H I J K L M N O P", "Q R S"]


def test_bold_prints_darker_and_double_is_twice_as_tall() -> None:
    def ink(doc: Document) -> float:
        image = render_image(doc, 32)
        return 255 - ImageStat.Stat(image).mean[0]

    plain = Document("p", (Line("TOTAL 150.00"),))
    bold = Document("b", (Line("TOTAL 150.00", bold=True),))
    assert ink(bold) > ink(plain)
    assert render_image(Document("d", (Line("X", double=True),)), 32).height == (
        render_image(plain, 32).height + 24
    )
