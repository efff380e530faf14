"""The ESC/POS simulator's parser: it rebuilds the encoder's documents from any byte split."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from drivers.escpos import encoder
from drivers.escpos.codes import ESCPOS_LINE, CodePage
from drivers.escpos.sim import EscposSimulator, Output, run_simulator, serve, slug
from drivers.printer.base import Document, Line, PaperState, QrBlock, Rule
from drivers.pty import DevicePort
from drivers.serialport import open_link

DOC = Document(
    "r1",
    (
        Line("Cash-in receipt", bold=True, align="center", double=True),
        Line("Kiosk KT1", align="right"),
        Rule(),
        Line("Amount: AED 300.00", bold=True),
        Line(""),
        Line("Merci, à bientôt"),
        Rule("="),
        QrBlock("https://pay.example/r/KT1-000123", size=5),
        Line("Thank you", align="center"),
    ),
)


def docs(out: list[Output]) -> list[Document]:
    return [o for o in out if isinstance(o, Document)]


def replies(out: list[Output]) -> bytes:
    return b"".join(o for o in out if isinstance(o, bytes))


def test_round_trip_whole(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    (doc,) = docs(sim.feed(encoder.encode(DOC)))
    assert doc == Document("0001-cash-in-receipt", DOC.blocks)


@pytest.mark.parametrize("columns", [32, 48])
def test_round_trip_byte_by_byte(tmp_path: Path, columns: int) -> None:
    sim = EscposSimulator(tmp_path, columns=columns)
    out: list[Output] = []
    for b in encoder.encode(DOC, columns=columns):
        out += sim.feed(bytes((b,)))
    assert [d.blocks for d in docs(out)] == [DOC.blocks]
    assert not sim.pending


def test_code_page_round_trip(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    doc = Document("r", (Line("Total € 5"),))
    (got,) = docs(sim.feed(encoder.encode(doc, code_page=CodePage.PC858)))
    assert got.blocks == doc.blocks


def test_unknown_bytes_are_skipped(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    garbage = b"\x00\x07\x1b\xff\x1d\xfe\x1c\x2e\x10\x05\x1b-\x01\x1d(L\x02\x000p"
    (doc,) = docs(sim.feed(garbage + encoder.encode(DOC) + garbage))
    assert doc.blocks == DOC.blocks
    assert sim.skipped > 0


def test_status_requests_are_answered_mid_receipt(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    data = encoder.encode(DOC)
    half = len(data) // 2
    out = sim.feed(data[:half] + b"\x10\x04\x01\x10\x04\x04" + data[half:] + b"\x1dr\x01")
    assert replies(out) == bytes.fromhex("12 12 00")
    assert len(docs(out)) == 1
    assert sim.requests == [b"\x10\x04\x01", b"\x10\x04\x04", b"\x1dr\x01"]


def status_bytes(sim: EscposSimulator) -> bytes:
    return replies(sim.feed(bytes.fromhex("10 04 01 10 04 02 10 04 03 10 04 04")))


def test_scripted_status_replies(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    assert status_bytes(sim) == bytes.fromhex("12 12 12 12")
    sim.set_paper(PaperState.NEAR_END)
    assert status_bytes(sim) == bytes.fromhex("12 12 12 1E")
    assert replies(sim.feed(b"\x1dr\x01")) == b"\x03"
    sim.set_paper(PaperState.OUT)
    assert status_bytes(sim) == bytes.fromhex("1A 32 12 7E")
    assert replies(sim.feed(b"\x1dr\x01")) == b""  # not executed when stopped by paper end
    sim.set_paper(PaperState.OK)
    sim.set_cover_open(True)
    assert status_bytes(sim) == bytes.fromhex("1A 16 12 12")
    sim.set_cover_open(False)
    sim.set_error(True)
    assert status_bytes(sim) == bytes.fromhex("1A 52 1A 12")
    sim.set_error(False)
    sim.set_online(False)
    assert status_bytes(sim) == bytes.fromhex("1A 12 12 12")
    assert sim.state()["ready"] is False


def test_out_of_paper_after_lines_loses_the_receipt(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    sim.run_out_of_paper_after(lines=3)
    out = sim.feed(encoder.encode(DOC))
    assert docs(out) == []
    assert sim.lost == 1
    assert sim.state()["paper"] == "out"
    assert status_bytes(sim)[3] == 0x7E


def test_out_of_paper_after_bytes(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    sim.run_out_of_paper_after(nbytes=len(encoder.encode(DOC)) + 5)
    assert len(docs(sim.feed(encoder.encode(DOC)))) == 1  # the first one fits
    assert docs(sim.feed(encoder.encode(DOC))) == []
    assert sim.lost == 1
    with pytest.raises(ValueError):
        sim.run_out_of_paper_after()


def test_printing_while_not_ready_is_lost(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path)
    sim.set_cover_open(True)
    assert docs(sim.feed(encoder.encode(DOC))) == []
    sim.set_cover_open(False)
    assert len(docs(sim.feed(encoder.encode(DOC)))) == 1
    assert sim.lost == 1


def test_render_names_and_files(tmp_path: Path) -> None:
    sim = EscposSimulator(tmp_path, columns=32)
    (doc,) = docs(sim.feed(encoder.encode(DOC, columns=32)))
    text_path, png_path = sim.render(doc)
    assert text_path == tmp_path / "0001-cash-in-receipt.txt"
    assert png_path.read_bytes().startswith(b"\x89PNG")
    text = text_path.read_text()
    assert "Amount: AED 300.00" in text and "-" * 32 in text
    assert "[QR: https://pay.example/r/KT1-000123]" in text
    (second,) = docs(sim.feed(encoder.encode(Document("x", (QrBlock("only"),)))))
    assert second.name == "0002-receipt"
    assert sim.state()["printed"] == ["0001-cash-in-receipt"]


def test_slug() -> None:
    assert slug("  Cash-in RECEIPT #12 ") == "cash-in-receipt-12"
    assert slug("€€") == ""
    assert len(slug("a" * 100)) == 40


def test_run_simulator_links_the_port(tmp_path: Path) -> None:
    async def main() -> None:
        ready = asyncio.Event()
        link = tmp_path / "dev" / "printer"
        task = asyncio.create_task(run_simulator(link, tmp_path / "out", ready=ready))
        await asyncio.wait_for(ready.wait(), 2)
        assert link.is_symlink()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not link.exists()

    asyncio.run(main())


def test_serve_drops_an_incomplete_command_after_silence(tmp_path: Path) -> None:
    async def main() -> None:
        sim = EscposSimulator(tmp_path)
        port = DevicePort()
        port.start()
        task = asyncio.create_task(serve(sim, port, gap=0.05))
        link = await open_link(str(port.path), ESCPOS_LINE)
        try:
            await link.write(b"\x1d(k\xff\x00")  # claims 255 bytes that never come
            await asyncio.sleep(0.2)
            await link.write(b"\x10\x04\x01")
            assert await link.read_some(2) == b"\x12"
        finally:
            await link.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            port.close()

    asyncio.run(main())
