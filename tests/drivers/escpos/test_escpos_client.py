"""The ESC/POS driver against the simulated printer over a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zxingcpp
from PIL import Image

from drivers.errors import DeviceFault, PortError
from drivers.escpos.client import EscposPrinter
from drivers.escpos.sim import EscposSimulator, serve
from drivers.printer.base import (
    Document,
    Line,
    PaperState,
    PrinterStatus,
    QrBlock,
    ReceiptPrinter,
    Rule,
)
from drivers.printer.render import render_text
from drivers.pty import DevicePort
from drivers.serialport import LineSettings

T = TypeVar("T")
TIMEOUT = 0.1
QR_DATA = "https://pay.example/r/KT1-000123?amount=300.00"
DOC = Document(
    "KT1-000123",
    (
        Line("Cash-in receipt", bold=True, align="center", double=True),
        Line("Kiosk KT1", align="right"),
        Rule(),
        Line("Amount:       AED 300.00", bold=True),
        Line("Paid with cash, thank you"),
        Rule("="),
        QrBlock(QR_DATA, size=5),
        Line("Keep this receipt", align="center"),
    ),
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def printer(
    out_dir: Path, *, columns: int = 48, **options: Any
) -> AsyncIterator[tuple[EscposPrinter, EscposSimulator, DevicePort]]:
    sim = EscposSimulator(out_dir, columns=columns)
    port = DevicePort()
    port.start()
    task = asyncio.create_task(serve(sim, port))
    p = EscposPrinter(str(port.path), columns=columns, status_timeout=TIMEOUT, **options)
    try:
        await p.open()
        yield p, sim, port
    finally:
        await p.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        port.close()


def test_is_a_receipt_printer() -> None:
    p: ReceiptPrinter = EscposPrinter("/dev/null")
    assert (p.name, p.columns) == ("escpos", 48)


@pytest.mark.parametrize("columns", [48, 32])
def test_full_receipt_round_trip(tmp_path: Path, columns: int) -> None:
    async def main() -> None:
        async with printer(tmp_path, columns=columns) as (p, sim, _):
            await p.print(DOC)
            assert sim.printed == ["0001-cash-in-receipt"]
            text_path, png_path = sim.paths(sim.printed[0])
            text = text_path.read_text()
            assert text == render_text(DOC, columns)  # every line, as the reference renders it
            for block in DOC.blocks:
                if isinstance(block, Line) and not block.double:
                    assert block.text in text
            decoded = zxingcpp.read_barcodes(Image.open(png_path))
            assert [r.text for r in decoded] == [QR_DATA]

    run(main())


def test_line_settings_on_the_pty(tmp_path: Path) -> None:
    async def main() -> None:
        async with printer(tmp_path) as (_, _sim, port):
            assert port.line() == (9600, 8, False, 1)
        async with printer(tmp_path, line=LineSettings(19200, 8, "N", 2)) as (_, _sim, port):
            assert port.line() == (19200, 8, False, 2)

    run(main())


def test_status_ok_and_near_end_still_prints(tmp_path: Path) -> None:
    async def main() -> None:
        async with printer(tmp_path) as (p, sim, _):
            assert await p.status() == PrinterStatus(online=True, paper=PaperState.OK)
            sim.set_paper(PaperState.NEAR_END)
            st = await p.status()
            assert st == PrinterStatus(online=True, paper=PaperState.NEAR_END)
            assert st.ready
            await p.print(DOC)
            assert len(sim.printed) == 1

    run(main())


@pytest.mark.parametrize(
    ("script", "kind", "expected"),
    [
        ("paper", "paper_out", PrinterStatus(False, PaperState.OUT)),
        ("cover", "cover_open", PrinterStatus(False, PaperState.OK, cover_open=True)),
        ("offline", "offline", PrinterStatus(False, PaperState.OK)),
        ("error", "error", PrinterStatus(False, PaperState.OK, error=True)),
    ],
)
def test_not_ready_refuses_before_printing(
    tmp_path: Path, script: str, kind: str, expected: PrinterStatus
) -> None:
    async def main() -> None:
        async with printer(tmp_path) as (p, sim, _):
            {
                "paper": lambda: sim.set_paper(PaperState.OUT),
                "cover": lambda: sim.set_cover_open(True),
                "offline": lambda: sim.set_online(False),
                "error": lambda: sim.set_error(True),
            }[script]()
            assert await p.status() == expected
            sim.requests.clear()
            with pytest.raises(DeviceFault) as info:
                await p.print(DOC)
            assert info.value.kind == kind
            await asyncio.sleep(0.05)
            # only the four status requests reached the printer: no receipt bytes
            assert sim.requests == [bytes((0x10, 0x04, n)) for n in (1, 2, 3, 4)]
            assert sim.printed == [] and sim.lost == 0

    run(main())


def test_silent_printer_is_offline_within_the_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        port = DevicePort()  # nobody answers
        port.start()
        p = EscposPrinter(str(port.path), status_timeout=0.2)
        try:
            await p.open()
            started = time.monotonic()
            st = await p.status()
            elapsed = time.monotonic() - started
            assert not st.online and not st.ready  # not "paper fine"
            assert elapsed < 0.5
            with pytest.raises(DeviceFault) as info:
                await p.print(DOC)
            assert info.value.kind == "offline"
        finally:
            await p.close()
            port.close()

    run(main())


def test_garbage_before_the_reply_is_skipped(tmp_path: Path) -> None:
    async def main() -> None:
        async with printer(tmp_path) as (p, _sim, port):
            port.write(bytes.fromhex("FF 00 0C"))  # stale noise, dropped before requesting
            assert (await p.status()).ready

    run(main())


def test_paper_out_mid_receipt(tmp_path: Path) -> None:
    async def main() -> None:
        async with printer(tmp_path) as (p, sim, _):
            sim.run_out_of_paper_after(lines=3)
            with pytest.raises(DeviceFault) as info:
                await p.print(DOC)
            assert (info.value.kind, info.value.detail) == ("paper_out", "mid-receipt")
            assert sim.printed == [] and sim.lost == 1
            assert (await p.status()).paper is PaperState.OUT
            sim.set_paper(PaperState.OK)  # paper loaded: the queued receipt prints
            await p.print(DOC)
            assert sim.printed == ["0001-cash-in-receipt"]

    run(main())


def test_not_open_is_a_port_error(tmp_path: Path) -> None:
    async def main() -> None:
        p = EscposPrinter(str(tmp_path / "nothing"))
        with pytest.raises(PortError):
            await p.status()
        with pytest.raises(PortError):
            await p.open()

    run(main())


def test_bad_options() -> None:
    with pytest.raises(ValueError):
        EscposPrinter("/dev/null", columns=1)
    with pytest.raises(ValueError):
        EscposPrinter("/dev/null", status_timeout=0)
