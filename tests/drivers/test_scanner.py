"""SerialScanner against the simulated scanner module over a real pty, and its line framer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import PortError
from drivers.reader.scanner import MAX_LENGTH, LineFramer, LineTooLong, SerialScanner
from drivers.reader.scanner_sim import ScannerSimulator, run_scanner_simulator
from drivers.serialport import LineSettings

GAP = 0.15  # seconds of silence that end a partial line (short, for the tests)


@contextlib.asynccontextmanager
async def rig(**kwargs: Any) -> AsyncIterator[tuple[ScannerSimulator, SerialScanner]]:
    sim = ScannerSimulator()
    scanner = SerialScanner(str(sim.path), gap=GAP, **kwargs)
    await scanner.open()
    try:
        yield sim, scanner
    finally:
        await scanner.close()
        sim.close()


def run(test: Callable[[ScannerSimulator, SerialScanner], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with rig(**kw) as (sim, scanner):
            await test(sim, scanner)

    asyncio.run(main())


async def code(scanner: SerialScanner) -> str:
    return await asyncio.wait_for(scanner.next_code(), 2)


async def nothing_more(scanner: SerialScanner) -> bool:
    try:
        await asyncio.wait_for(scanner.next_code(), 3 * GAP)
    except TimeoutError:
        return True
    return False


def test_line_settings_reach_the_port() -> None:
    async def default(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        assert sim.port.line() == (9600, 8, False, 1)

    async def fast(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        assert sim.port.line() == (115200, 8, False, 1)

    run(default)
    run(fast, line=LineSettings(115200, 8, "N", 1))


def test_cr_lf_and_crlf_terminators() -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.scan("EVP-CR", terminator=b"\r")
        assert await code(scanner) == "EVP-CR"
        sim.scan("EVP-LF", terminator=b"\n")
        assert await code(scanner) == "EVP-LF"
        sim.scan("EVP-CRLF")
        assert await code(scanner) == "EVP-CRLF"
        sim.scan("€-ünïcode")
        assert await code(scanner) == "€-ünïcode"
        assert await nothing_more(scanner)  # the LF of a CRLF is not an empty code

    run(test)


def test_a_code_split_across_writes_and_two_codes_in_one_write() -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.write(b"EVP-00")
        await asyncio.sleep(GAP / 3)
        sim.write(b"42\r")
        await asyncio.sleep(GAP / 3)
        sim.write(b"\nA-1\rA-2\r\n")
        assert [await code(scanner) for _ in range(3)] == ["EVP-0042", "A-1", "A-2"]

    run(test)


def test_a_line_that_is_not_utf8_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.scan(b"\xff\xfe bad \xc3")
        sim.scan("GOOD")
        assert await code(scanner) == "GOOD"
        assert scanner.counters.refused == 1

    with caplog.at_level(logging.INFO, logger="drivers.reader.scanner"):
        run(test)
    assert "not UTF-8" in caplog.text and "good lines again" in caplog.text


def test_a_5kb_line_is_refused_and_the_next_code_read(caplog: pytest.LogCaptureFixture) -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.scan(b"X" * 5000)
        sim.scan("AFTER")
        assert await code(scanner) == "AFTER"
        assert scanner.counters.refused == 1

    with caplog.at_level(logging.WARNING, logger="drivers.reader.scanner"):
        run(test)
    assert f"5000-byte line (longer than {MAX_LENGTH})" in caplog.text


def test_garbage_then_a_good_code() -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.garbage(b"\x00\xff\x13\x80noise")  # no line end: dropped after a silence
        waiting = asyncio.create_task(scanner.next_code())
        await asyncio.sleep(2 * GAP)
        sim.garbage(b"\xfe\xfe\r\n")  # a line of noise: not UTF-8, refused
        sim.scan("CODE-1")
        assert await asyncio.wait_for(waiting, 2) == "CODE-1"
        c = scanner.counters
        assert (c.noise, c.refused, c.codes) == (1, 1, 1)

    run(test)


def test_the_same_code_scanned_twice_quickly_is_one_scan() -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.scan("SAME")
        sim.scan("SAME")
        assert await code(scanner) == "SAME"
        assert await nothing_more(scanner)
        sim.scan("OTHER")
        sim.scan("SAME")  # after another code: a new scan
        assert [await code(scanner) for _ in range(2)] == ["OTHER", "SAME"]

    run(test)


def test_the_same_code_counts_again_after_hold() -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.scan("HELD")
        assert await code(scanner) == "HELD"
        await asyncio.sleep(0.12)
        sim.scan("HELD")
        assert await code(scanner) == "HELD"

    run(test, hold=0.1)


def test_a_lost_port_is_a_port_error() -> None:
    async def test(sim: ScannerSimulator, scanner: SerialScanner) -> None:
        sim.scan("LAST")
        assert await code(scanner) == "LAST"
        sim.close()
        with pytest.raises(PortError):
            await code(scanner)

    run(test)


def test_run_scanner_simulator_on_a_link(tmp_path: Path) -> None:
    async def main() -> None:
        sim = ScannerSimulator()
        ready = asyncio.Event()
        link = tmp_path / "dev" / "kiosk-scanner"
        server = asyncio.create_task(run_scanner_simulator(link, sim=sim, ready=ready))
        await asyncio.wait_for(ready.wait(), 2)
        scanner = SerialScanner(str(link))
        await scanner.open()
        sim.scan("VIA-LINK")
        assert await code(scanner) == "VIA-LINK"
        await scanner.close()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        assert not link.exists()

    asyncio.run(main())


def test_open_a_missing_port() -> None:
    with pytest.raises(PortError, match="cannot open"):
        asyncio.run(SerialScanner("/dev/does-not-exist").open())
    with pytest.raises(PortError, match="not open"):
        asyncio.run(SerialScanner("/dev/does-not-exist").next_code())


# -- the framer, without a port ----------------------------------------------------------------


def test_framer_limits() -> None:
    framer = LineFramer(max_length=4)
    assert framer.feed(b"abcd\r") == [b"abcd"]
    assert framer.feed(b"ab") == []
    assert framer.feed(b"cde") == []  # over the limit: discarded as it comes
    assert framer.feed(b"fg\nok\n") == [LineTooLong(7), b"ok"]
    assert framer.feed(b"part") == []
    assert framer.discard_partial() == 4
    assert framer.feed(b"\n\r\n") == []
    only_cr = LineFramer(terminators=b"\r")
    assert only_cr.feed(b"two\nlines\r") == [b"two\nlines"]
    with pytest.raises(ValueError, match="terminator"):
        LineFramer(terminators=b"")


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: not set(b) & {10, 13})),
    ends=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n"]), min_size=1),
    cuts=st.lists(st.integers(min_value=0, max_value=2000)),
)
def test_framer_gives_the_same_lines_however_the_bytes_are_cut(
    lines: list[bytes], ends: list[bytes], cuts: list[int]
) -> None:
    wire = b"".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    framer = LineFramer()
    got: list[bytes | LineTooLong] = []
    start = 0
    for cut in sorted({c for c in cuts if c < len(wire)} | {len(wire)}):
        got += framer.feed(wire[start:cut])
        start = cut
    assert got == lines
