"""A simulated ESC/POS receipt printer on a pty: parses what the driver sends and renders it.

:class:`EscposSimulator` is a streaming parser of the ESC/POS subset :mod:`.encoder` emits
(``ESC @``, ``ESC t``, ``ESC E``, ``ESC a``, ``GS !``, ``ESC ! ``, text and ``LF``, ``ESC d``,
``GS ( k`` QR, ``GS V``) plus the status requests: ``DLE EOT 1-4`` are answered at once from the
scripted state (real-time, even offline), ``GS r 1``/``2`` in sequence (not while stopped at
paper end, like a real printer). Other known commands are skipped with their parameters; an
unknown ``ESC``/``GS``/``FS`` command is skipped as two bytes, other control bytes one by one.

It rebuilds a :class:`~drivers.printer.base.Document` from the bytes: each ``LF``-terminated
text line is a ``Line`` with the bold/alignment/double size in force at its ``LF``; a line
that is one non-alphanumeric character repeated ``columns`` times at normal size, left, is a
``Rule``; ``GS ( k`` print makes a ``QrBlock`` of the stored data (UTF-8) and module size (the
``LF`` right after it is the symbol's own feed, not an empty line). On each cut the receipt is
rendered with :mod:`drivers.printer.render` to ``<out_dir>/<nnnn>-<slug>.txt`` and ``.png``:
``nnnn`` numbers the receipts on from the highest number already in ``out_dir`` (0001 in an
empty folder; a second run in the same folder goes on after the first's and never replaces a
file), ``slug`` is the first non-empty text line in lower case with runs of other characters
than ``a-z0-9`` as ``-`` (40 characters at most; ``receipt`` when there is no text). Names come
from the paper alone, as on a real printer: the driver's ``Document.name`` is not on the wire.
``printed`` lists the names in order (sorted by name, the files are in printing order up to
9999).

Scripting (tests, ``kiosk sim``): :meth:`~EscposSimulator.set_paper`,
:meth:`~EscposSimulator.set_cover_open`, :meth:`~EscposSimulator.set_online`,
:meth:`~EscposSimulator.set_error` and :meth:`~EscposSimulator.run_out_of_paper_after`
(``lines=`` printed rows or ``nbytes=`` bytes of print data: then the paper runs out, the rest of
that receipt is lost and status requests report paper out). The printer goes offline (DLE EOT 1
bit 3) while the cover is open, the paper is out, in error or set offline; print data received
while it is not ready is lost (the receipt is counted in ``lost``, not rendered).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from drivers.escpos.codes import (
    DLE_EOT_FIXED,
    QR_CN,
    CodePage,
    Ctl,
    ErrorBit,
    EscCmd,
    GsCmd,
    GsrPaperBit,
    OfflineBit,
    PaperBit,
    PrinterBit,
    QrFn,
    StatusRequest,
)
from drivers.printer.base import (
    Block,
    Document,
    Line,
    PaperState,
    PrinterStatus,
    QrBlock,
    Rule,
    dots_for_columns,
)
from drivers.printer.sim import write_new
from drivers.pty import DevicePort

log = logging.getLogger(__name__)

AlignName = Literal["left", "center", "right"]

_ALIGNS: Final[dict[int, AlignName]] = {
    0: "left",
    1: "center",
    2: "right",
    48: "left",
    49: "center",
    50: "right",
}
# Parameter counts of fixed-length commands that are skipped (or parsed) by the simulator.
_ESC_PARAMS: Final = {
    0x40: 0,  # @ init
    0x45: 1,  # E bold
    0x61: 1,  # a align
    0x74: 1,  # t code page
    0x64: 1,  # d feed lines
    0x21: 1,  # ! mode
    0x2D: 1,  # - underline
    0x32: 0,  # 2 default line spacing
    0x33: 1,  # 3 line spacing
    0x4A: 1,  # J feed dots
    0x47: 1,  # G double strike
    0x4D: 1,  # M font
    0x52: 1,  # R international set
    0x7B: 1,  # { upside down
    0x56: 1,  # V rotate
    0x70: 3,  # p drawer pulse
    0x63: 2,  # c 3/4/5 n: paper sensors, panel keys
}
_GS_PARAMS: Final = {
    0x21: 1,  # ! size
    0x72: 1,  # r status
    0x61: 1,  # a ASB
    0x42: 1,  # B reverse
    0x48: 1,  # H HRI position
    0x68: 1,  # h barcode height
    0x77: 1,  # w barcode width
    0x66: 1,  # f HRI font
    0x4C: 2,  # L left margin
    0x57: 2,  # W print area width
}
_CUT_WITH_FEED: Final = frozenset({65, 66, 97, 98, 103, 104})  # GS V m n
_SLUG: Final = re.compile(r"[^a-z0-9]+")
_NUMBERED: Final = re.compile(r"(\d+)-.*\.(?:txt|png)")  # a receipt's file
_NUMBERED_NAME: Final = re.compile(r"(\d+)-(.*)")

Output = bytes | Document
"""What :meth:`EscposSimulator.feed` asks of its server: bytes to send back, or a receipt to
render (with :meth:`EscposSimulator.render`), in order."""


@dataclass(slots=True)
class _Format:
    bold: bool = False
    align: AlignName = "left"
    double: bool = False
    code_page: CodePage = CodePage.PC437


def slug(text: str, limit: int = 40) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-")


class EscposSimulator:
    """A scriptable ESC/POS printer writing receipts to ``out_dir``.

    :param columns: font-A characters per line: 48 (80 mm) or 32 (58 mm).
    """

    def __init__(self, out_dir: Path, *, columns: int = 48, name: str = "escpos-sim") -> None:
        if columns < 2:
            raise ValueError("columns must be at least 2")
        self.out_dir, self.columns, self.name = out_dir, columns, name
        self.dots = dots_for_columns(columns)
        self.printed: list[str] = []  # file stems of the receipts rendered, in order
        self.lost = 0  # receipts cut while (or after) the printer could not print them
        self.skipped = 0  # bytes of unknown commands and stray control bytes
        self.requests: list[bytes] = []  # status requests received (DLE EOT n, GS r n)
        self._online, self._paper, self._cover_open, self._error = True, PaperState.OK, False, False
        self._lines_left: int | None = None
        self._bytes_left: int | None = None
        self._buf = bytearray()
        self._count = 0
        self._blocks: list[Block] = []
        self._text = bytearray()
        self._qr_data: bytes | None = None
        self._qr_size = 3
        self._after_qr = self._spoiled = self._had_data = False
        self._reset_receipt()
        self._fmt = _Format()

    # -- scripting -----------------------------------------------------------------------------

    def set_paper(self, paper: PaperState) -> None:
        self._paper = PaperState(paper)
        if self._paper is not PaperState.OUT:
            self._lines_left = self._bytes_left = None

    def set_cover_open(self, cover_open: bool) -> None:
        self._cover_open = cover_open

    def set_online(self, online: bool) -> None:
        self._online = online

    def set_error(self, error: bool) -> None:
        self._error = error

    def run_out_of_paper_after(
        self, *, lines: int | None = None, nbytes: int | None = None
    ) -> None:
        """Run out of paper after ``lines`` more printed rows or ``nbytes`` more print bytes."""
        if (lines is None) == (nbytes is None):
            raise ValueError("give exactly one of lines= or nbytes=")
        if (lines or 0) < 0 or (nbytes or 0) < 0:
            raise ValueError("the count must not be negative")
        self._lines_left, self._bytes_left = lines, nbytes

    def current_status(self) -> PrinterStatus:
        return PrinterStatus(
            online=self._online, paper=self._paper, cover_open=self._cover_open, error=self._error
        )

    def state(self) -> dict[str, Any]:
        """Status and output, JSON-able (for tests and the control channel)."""
        return {
            "name": self.name,
            "online": self._online,
            "paper": self._paper.value,
            "cover_open": self._cover_open,
            "error": self._error,
            "ready": self.current_status().ready,
            "columns": self.columns,
            "out_dir": str(self.out_dir),
            "printed": list(self.printed),
            "lost": self.lost,
            "paper_runs_out_after": {"lines": self._lines_left, "nbytes": self._bytes_left},
        }

    def paths(self, name: str) -> tuple[Path, Path]:
        """The text and picture files of receipt ``name``."""
        return self.out_dir / f"{name}.txt", self.out_dir / f"{name}.png"

    # -- status replies ------------------------------------------------------------------------

    def _offline(self) -> bool:
        return not self._online or self._cover_open or self._error or self._out()

    def _out(self) -> bool:
        return self._paper is PaperState.OUT

    def dle_eot(self, n: int) -> int | None:
        """The reply byte to ``DLE EOT n`` (None for n outside 1..4)."""
        if n == StatusRequest.PRINTER:
            return DLE_EOT_FIXED | (PrinterBit.OFFLINE if self._offline() else 0)
        if n == StatusRequest.OFFLINE_CAUSE:
            return (
                DLE_EOT_FIXED
                | (OfflineBit.COVER_OPEN if self._cover_open else 0)
                | (OfflineBit.PAPER_END_STOP if self._out() else 0)
                | (OfflineBit.ERROR if self._error else 0)
            )
        if n == StatusRequest.ERROR_CAUSE:
            return DLE_EOT_FIXED | (ErrorBit.AUTOCUTTER if self._error else 0)
        if n == StatusRequest.PAPER:
            near = self._paper is not PaperState.OK  # an empty roll is past its near end too
            return (
                DLE_EOT_FIXED
                | (PaperBit.NEAR_END if near else 0)
                | (PaperBit.END if self._out() else 0)
            )
        return None

    def gs_r(self, n: int) -> int | None:
        """The reply to ``GS r n`` (1/49 paper, 2/50 drawer); None while stopped at paper end."""
        if self._out():
            return None
        if n in (1, 49):
            return GsrPaperBit.NEAR_END if self._paper is PaperState.NEAR_END else 0
        if n in (2, 50):
            return 0
        return None

    # -- the parser ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Output]:
        """Parse ``data`` (any split); the replies and finished receipts, in order."""
        self._buf += data
        out: list[Output] = []
        i = 0
        while i < len(self._buf):
            end = self._step(i, out)
            if end is None:  # an incomplete command: wait for more bytes
                break
            i = end
        del self._buf[:i]
        return out

    @property
    def pending(self) -> bool:
        """True while an incomplete command is buffered."""
        return bool(self._buf)

    def clear(self) -> None:
        """Drop an incomplete command (after a silence)."""
        self.skipped += len(self._buf)
        self._buf.clear()

    def _step(self, i: int, out: list[Output]) -> int | None:
        buf = self._buf
        b = buf[i]
        if b == Ctl.DLE:
            return self._dle(i, out)
        if b == Ctl.ESC:
            return self._esc(i, out)
        if b == Ctl.GS:
            return self._gs(i, out)
        if b == Ctl.FS:
            if i + 1 >= len(buf):
                return None
            self.skipped += 2
            return i + 2
        self._paper_bytes(1)
        if b == Ctl.LF:
            self._end_line()
        elif b >= 0x20:
            self._text.append(b)
        elif b != Ctl.CR:
            self.skipped += 1
        return i + 1

    def _dle(self, i: int, out: list[Output]) -> int | None:
        buf = self._buf
        if i + 1 >= len(buf):
            return None
        if buf[i + 1] != Ctl.EOT:
            self.skipped += 1
            return i + 1
        if i + 2 >= len(buf):
            return None
        n = buf[i + 2]
        self.requests.append(bytes(buf[i : i + 3]))
        reply = self.dle_eot(n)
        if reply is not None:
            out.append(bytes((reply,)))
        return i + 3

    def _esc(self, i: int, out: list[Output]) -> int | None:
        buf = self._buf
        if i + 1 >= len(buf):
            return None
        cmd = buf[i + 1]
        params = _ESC_PARAMS.get(cmd)
        if params is None:
            self.skipped += 2
            return i + 2
        end = i + 2 + params
        if end > len(buf):
            return None
        self._paper_bytes(end - i)
        arg = buf[i + 2] if params else 0
        if cmd == EscCmd.INIT:
            self._fmt = _Format()
            self._text.clear()
        elif cmd == EscCmd.BOLD:
            self._fmt.bold = bool(arg & 1)
        elif cmd == EscCmd.ALIGN:
            self._fmt.align = _ALIGNS.get(arg, self._fmt.align)
        elif cmd == EscCmd.CODE_PAGE:
            with contextlib.suppress(ValueError):
                self._fmt.code_page = CodePage(arg)
        elif cmd == EscCmd.MODE:
            self._fmt.bold = bool(arg & 0x08)
            self._fmt.double = bool(arg & 0x30)
        elif cmd == EscCmd.FEED_LINES and self._text:
            self._end_line()
        return end

    def _gs(self, i: int, out: list[Output]) -> int | None:
        buf = self._buf
        if i + 1 >= len(buf):
            return None
        cmd = buf[i + 1]
        if cmd == GsCmd.TWO_D:
            return self._two_d(i)
        if cmd == GsCmd.CUT:
            if i + 2 >= len(buf):
                return None
            end = i + 3 + (buf[i + 2] in _CUT_WITH_FEED)
            if end > len(buf):
                return None
            self._cut(out)
            return end
        params = _GS_PARAMS.get(cmd)
        if params is None:
            self.skipped += 2
            return i + 2
        end = i + 2 + params
        if end > len(buf):
            return None
        arg = buf[i + 2]
        if cmd == GsCmd.STATUS:
            self.requests.append(bytes(buf[i:end]))
            reply = self.gs_r(arg)
            if reply is not None:
                out.append(bytes((reply,)))
        elif cmd == GsCmd.SIZE:
            self._paper_bytes(end - i)
            self._fmt.double = arg != 0
        elif cmd != GsCmd.ASB:
            self._paper_bytes(end - i)
        return end

    def _two_d(self, i: int) -> int | None:
        """``GS ( k pL pH cn fn ...``; other ``GS ( x`` functions have the same length form."""
        buf = self._buf
        if i + 5 > len(buf):
            return None
        size = buf[i + 3] | buf[i + 4] << 8
        end = i + 5 + size
        if end > len(buf):
            return None
        self._paper_bytes(end - i)
        body = bytes(buf[i + 5 : end])
        if buf[i + 2] != 0x6B or len(body) < 2 or body[0] != QR_CN:
            self.skipped += end - i
            return end
        fn, rest = body[1], body[2:]
        if fn == QrFn.MODULE_SIZE and rest:
            self._qr_size = rest[0]
        elif fn == QrFn.STORE:
            self._qr_data = rest[1:]
        elif fn == QrFn.PRINT and self._qr_data is not None:
            if self._text:
                self._end_line()
            data = self._qr_data.decode("utf-8", errors="replace")
            self._add(QrBlock(data, size=self._qr_size))
            self._after_qr = True
        return end

    # -- building the receipt ------------------------------------------------------------------

    def _reset_receipt(self) -> None:
        self._blocks = []
        self._text = bytearray()
        self._qr_data = None
        self._qr_size = 3
        self._after_qr = False
        self._spoiled = False
        self._had_data = False

    def _paper_bytes(self, n: int) -> None:
        """Count ``n`` bytes of print data against the paper; lose them if not ready."""
        self._had_data = True
        if self._bytes_left is not None:
            self._bytes_left -= n
            if self._bytes_left < 0:
                self._run_out()
        if self._offline():
            self._spoiled = True

    def _run_out(self) -> None:
        log.info("%s: paper out mid-receipt", self.name)
        self._paper = PaperState.OUT
        self._lines_left = self._bytes_left = None
        self._spoiled = True

    def _end_line(self) -> None:
        raw, self._text = bytes(self._text), bytearray()
        if self._after_qr and not raw:
            self._after_qr = False
            return
        self._after_qr = False
        text = raw.decode(self._fmt.code_page.codec, errors="replace")
        fmt = self._fmt
        plain = not (fmt.bold or fmt.double) and fmt.align == "left"
        char = text[:1]
        if (
            plain
            and len(text) == self.columns
            and char * self.columns == text
            and not (char.isalnum() or char.isspace())
        ):
            self._add(Rule(char))
        else:
            self._add(Line(text, bold=fmt.bold, align=fmt.align, double=fmt.double))

    def _add(self, block: Block) -> None:
        if self._lines_left is not None:
            if self._lines_left == 0:
                self._run_out()
            else:
                self._lines_left -= 1
        if not self._spoiled:
            self._blocks.append(block)

    def _cut(self, out: list[Output]) -> None:
        if self._text:
            self._end_line()
        self._paper_bytes(3)
        blocks, spoiled, had_data = tuple(self._blocks), self._spoiled, self._had_data
        self._reset_receipt()
        if spoiled:
            self.lost += 1
            log.info("%s: receipt lost (%s)", self.name, self.current_status())
            return
        if not blocks and not had_data:
            return
        self._count = max(self._count, self.highest_number()) + 1
        first = next((b.text for b in blocks if isinstance(b, Line) and b.text.strip()), "")
        out.append(Document(f"{self._count:04d}-{slug(first) or 'receipt'}", blocks))

    def highest_number(self) -> int:
        """The highest ``nnnn`` of the receipts in ``out_dir`` (0 if none)."""
        try:
            names = [p.name for p in self.out_dir.iterdir()]
        except OSError:
            return 0
        return max((int(m[1]) for n in names if (m := _NUMBERED.fullmatch(n))), default=0)

    # -- output --------------------------------------------------------------------------------

    def render(self, doc: Document) -> tuple[Path, Path]:
        """Write ``doc`` as text and PNG (atomically, the picture first); CPU-bound, run it in
        a thread. A name taken meanwhile (another simulator on the folder) is never replaced:
        the receipt takes the next number."""
        from drivers.printer.render import render_image, render_text  # Pillow: only to render

        image = render_image(doc, self.columns, self.dots)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        text = render_text(doc, self.columns).encode()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        name = doc.name
        while True:
            text_path, png_path = self.paths(name)
            if write_new(((png_path, buf.getvalue()), (text_path, text))):
                break
            m = _NUMBERED_NAME.fullmatch(name)
            taken, rest = (int(m[1]), m[2]) if m else (0, name)
            self._count = max(self._count, self.highest_number(), taken) + 1
            name = f"{self._count:04d}-{rest}"
        self.printed.append(name)
        log.info("%s: printed %s", self.name, name)
        return text_path, png_path


async def serve(sim: EscposSimulator, port: DevicePort, *, gap: float = 0.5) -> None:
    """Answer the host on ``port`` (started) until cancelled. Receipts are rendered in a
    thread, in sequence with the replies (a ``GS r`` after a cut is answered once the files
    exist). An incomplete command followed by ``gap`` seconds of silence is dropped."""
    while True:
        data = await port.read_some(gap if sim.pending else None)
        if not data:
            sim.clear()
            continue
        for item in sim.feed(data):
            if isinstance(item, Document):
                await asyncio.to_thread(sim.render, item)
            else:
                port.write(item)


async def run_simulator(
    link_path: Path,
    out_dir: Path,
    *,
    columns: int = 48,
    sim: EscposSimulator | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve a simulated ESC/POS printer on a pty linked at ``link_path`` until cancelled.

    Pass ``sim`` to script it from elsewhere (a control socket); ``ready`` is set once the
    link exists. The driver opens ``link_path`` like a real port.
    """
    if sim is None:
        sim = EscposSimulator(out_dir, columns=columns)
    port = DevicePort()
    try:
        port.start()
        port.link(link_path)
        log.info(
            "escpos sim: %d columns on %s (%s) -> %s", sim.columns, link_path, port.path, out_dir
        )
        if ready is not None:
            ready.set()
        await serve(sim, port)
    finally:
        with contextlib.suppress(Exception):
            port.close()
