"""Document -> ESC/POS bytes (the subset :mod:`drivers.escpos.sim` parses back).

A receipt is::

    ESC @                      initialise
    ESC t n                    code page (PC437 by default)
    per Line:  ESC a a, ESC E b, GS ! s, text in the code page, LF   (formatting reset after)
    per Rule:  ESC a 0, the rule's character x columns, LF
    per QR:    ESC a 1, GS ( k model 2 / module size / EC M / store / print, LF
    ESC d 4, GS V 1            feed past the cutter, partial cut

Text is encoded in the selected code page; characters it cannot encode become ``?``, and so do
control characters (a ``\\x1b`` in a field must never reach the printer as a command). A line
with embedded newlines prints as several lines. The QR part is byte-identical to python-escpos
3.1 ``Dummy().qr(data, native=True, size=n, ec=QR_ECLEVEL_M)`` (data in UTF-8).
"""

from __future__ import annotations

from drivers.escpos.codes import (
    FEED_BEFORE_CUT,
    PARTIAL_CUT,
    QR_CN,
    QR_MODEL_2,
    QR_STORE_M,
    SIZE_DOUBLE,
    SIZE_NORMAL,
    Align,
    CodePage,
    Ctl,
    EscCmd,
    GsCmd,
    QrEc,
    QrFn,
)
from drivers.printer.base import Document, Line, QrBlock, Rule

_ALIGN = {"left": Align.LEFT, "center": Align.CENTER, "right": Align.RIGHT}
QR_MAX_DATA = 7089  # QR model 2, numeric, EC L; pL/pH can hold len + 3 <= 65535


def esc(cmd: EscCmd, *params: int) -> bytes:
    return bytes((Ctl.ESC, cmd, *params))


def gs(cmd: GsCmd, *params: int) -> bytes:
    return bytes((Ctl.GS, cmd, *params))


def init() -> bytes:
    """``ESC @``."""
    return esc(EscCmd.INIT)


def encode_text(text: str, code_page: CodePage = CodePage.PC437) -> bytes:
    """``text`` in ``code_page``; unencodable and control characters become ``?``."""
    clean = "".join("?" if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in text)
    return clean.encode(code_page.codec, errors="replace")


def _two_d(fn: QrFn, data: bytes, m: bytes = b"") -> bytes:
    """``GS ( k pL pH cn fn [m] data``: pL/pH count cn, fn, m and data."""
    size = len(data) + len(m) + 2
    return bytes((Ctl.GS, GsCmd.TWO_D, 0x6B, size & 0xFF, size >> 8, QR_CN, fn)) + m + data


def qr(data: str, size: int = 6, ec: QrEc = QrEc.M) -> bytes:
    """A native QR code (model 2): select model, module size, EC level, store, print."""
    if not 1 <= size <= 16:
        raise ValueError(f"QR module size {size} is not in 1..16")
    payload = data.encode("utf-8")
    if not payload or len(payload) > QR_MAX_DATA:
        raise ValueError(f"QR data of {len(payload)} bytes (1..{QR_MAX_DATA})")
    store_m = bytes((QR_STORE_M,))
    return (
        _two_d(QrFn.MODEL, QR_MODEL_2)
        + _two_d(QrFn.MODULE_SIZE, bytes((size,)))
        + _two_d(QrFn.EC_LEVEL, bytes((ec,)))
        + _two_d(QrFn.STORE, payload, store_m)
        + _two_d(QrFn.PRINT, b"", store_m)
    )


def line(block: Line, code_page: CodePage = CodePage.PC437) -> bytes:
    styled = block.bold or block.double or block.align != "left"
    out = bytearray()
    if styled:
        out += esc(EscCmd.ALIGN, _ALIGN[block.align])
        out += esc(EscCmd.BOLD, int(block.bold))
        out += gs(GsCmd.SIZE, SIZE_DOUBLE if block.double else SIZE_NORMAL)
    for piece in block.text.splitlines() or [""]:
        out += encode_text(piece, code_page) + bytes((Ctl.LF,))
    if styled:
        out += esc(EscCmd.ALIGN, Align.LEFT) + esc(EscCmd.BOLD, 0) + gs(GsCmd.SIZE, SIZE_NORMAL)
    return bytes(out)


def rule(block: Rule, columns: int, code_page: CodePage = CodePage.PC437) -> bytes:
    return encode_text((block.char or "-")[0] * columns, code_page) + bytes((Ctl.LF,))


def qr_block(block: QrBlock) -> bytes:
    return (
        esc(EscCmd.ALIGN, Align.CENTER)
        + qr(block.data, block.size)
        + bytes((Ctl.LF,))
        + esc(EscCmd.ALIGN, Align.LEFT)
    )


def cut() -> bytes:
    """Feed past the cutter, then a partial cut (``ESC d 4``, ``GS V 1``)."""
    return esc(EscCmd.FEED_LINES, FEED_BEFORE_CUT) + gs(GsCmd.CUT, PARTIAL_CUT)


def encode(doc: Document, *, columns: int = 48, code_page: CodePage = CodePage.PC437) -> bytes:
    """The whole receipt: init, code page, blocks, feed and cut."""
    out = bytearray(init() + esc(EscCmd.CODE_PAGE, code_page))
    for block in doc.blocks:
        if isinstance(block, Line):
            out += line(block, code_page)
        elif isinstance(block, Rule):
            out += rule(block, columns, code_page)
        else:
            out += qr_block(block)
    out += cut()
    return bytes(out)
