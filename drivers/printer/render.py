"""Render a :class:`~drivers.printer.base.Document` as a thermal printer would lay it out.

Two renderings, both pure functions (CPU-bound: call them off the event loop):

- :func:`render_text`: plain text, ``columns`` characters wide. Alignment is applied; a
  ``double`` line is double width, so it holds ``columns // 2`` characters and each is followed
  by a space (``T O T A L``); a rule fills the width; a QR code is the line ``[QR: <data>]``.
  Bold is not marked.
- :func:`render_image`: a picture of the paper roll, white with black print, on the grid of a
  203 dpi head with ESC/POS font A (12 x 24 dots per character, so 384 dots for 32 columns on
  58 mm paper, 576 for 48 columns on 80 mm). Glyphs come from Pillow's built-in default font
  (no font files), each fitted in its cell so the text is monospaced; bold is struck twice one
  dot apart; double lines are scaled x2; the QR code is a real, scannable code (segno) with
  ``QrBlock.size`` dots per module and the standard 4-module quiet zone.
"""

from __future__ import annotations

import functools
import textwrap
import threading
from collections.abc import Iterator
from typing import Final

import segno
from PIL import Image, ImageDraw, ImageFont, ImageOps

from drivers.printer.base import (
    CELL_H,
    CELL_W,
    Block,
    Document,
    Line,
    QrBlock,
    Rule,
    dots_for_columns,
)

_FONT_SIZE: Final = 18  # ascent + descent of the default font ≈ CELL_H
_QR_BORDER: Final = 4  # quiet zone, modules
_TOP_MARGIN: Final = CELL_H
_BOTTOM_MARGIN: Final = 3 * CELL_H  # feed before the cut
_WHITE: Final = 255
_BLACK: Final = 0


def _pieces(text: str, width: int) -> list[str]:
    """Split ``text`` into pieces of at most ``width`` characters (words kept when possible)."""
    pieces: list[str] = []
    for raw in text.splitlines() or [""]:
        if len(raw) <= width:
            pieces.append(raw)
        else:
            pieces.extend(textwrap.wrap(raw, width, break_on_hyphens=False) or [""])
    return pieces


def _align(piece: str, width: int, align: str) -> str:
    if align == "center":
        return piece.center(width)
    if align == "right":
        return piece.rjust(width)
    return piece.ljust(width)


def _line_rows(line: Line, columns: int) -> Iterator[str]:
    """Each printed row of a line, ``columns // 2`` wide when double else ``columns``."""
    width = columns // 2 if line.double else columns
    for piece in _pieces(line.text, width):
        yield _align(piece, width, line.align)


def render_text(doc: Document, columns: int) -> str:
    """The document as plain text, one printed row per text line, ending with a newline."""
    out: list[str] = []
    for block in doc.blocks:
        if isinstance(block, Line):
            for row in _line_rows(block, columns):
                out.append(("".join(c + " " for c in row) if block.double else row).rstrip())
        elif isinstance(block, Rule):
            out.append((block.char or "-")[0] * columns)
        else:
            out.append(f"[QR: {block.data}]")
    return "\n".join(out) + "\n"


@functools.cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=_FONT_SIZE)


_font_lock = threading.Lock()  # one FreeType face shared by the printing threads


@functools.cache
def _glyph(char: str, bold: bool) -> Image.Image:
    """One character fitted in a CELL_W x CELL_H cell, black on white."""
    with _font_lock:
        return _draw_glyph(char, bold)


def _draw_glyph(char: str, bold: bool) -> Image.Image:
    cell = Image.new("L", (CELL_W, CELL_H), _WHITE)
    if char.isspace():
        return cell
    font = _font()
    wide = Image.new("L", (CELL_W * 3, CELL_H), _WHITE)
    draw = ImageDraw.Draw(wide)
    baseline = CELL_H - 5
    for dx in (0, 1) if bold else (0,):
        draw.text((CELL_W + dx, baseline), char, fill=_BLACK, font=font, anchor="ls")
    box = ImageOps.invert(wide).getbbox()
    if box is None:  # a character the font cannot draw
        return cell
    left, right = box[0], box[2]
    glyph = wide.crop((left, 0, right, CELL_H))
    if glyph.width > CELL_W - 1:  # condensed, like a printer's narrow font
        glyph = glyph.resize((CELL_W - 1, CELL_H), Image.Resampling.LANCZOS)
    cell.paste(glyph, ((CELL_W - glyph.width) // 2, 0))
    return cell


def _text_row(row: str, bold: bool) -> Image.Image:
    img = Image.new("L", (len(row) * CELL_W, CELL_H), _WHITE)
    for i, char in enumerate(row):
        img.paste(_glyph(char, bold), (i * CELL_W, 0))
    return img


def _qr_image(block: QrBlock, width: int) -> Image.Image:
    qr = segno.make_qr(block.data, error="m")
    modules = int(qr.symbol_size(scale=1, border=_QR_BORDER)[0])
    scale = max(1, min(16, block.size))
    while scale > 1 and modules * scale > width:
        scale -= 1
    side = modules * scale
    pixels = bytes(
        _BLACK if dark else _WHITE
        for row in qr.matrix_iter(scale=scale, border=_QR_BORDER)
        for dark in row
    )
    code = Image.frombytes("L", (side, side), pixels)
    img = Image.new("L", (width, side), _WHITE)
    img.paste(code, ((width - side) // 2, 0))
    return img


def _block_images(block: Block, columns: int, width: int) -> Iterator[Image.Image]:
    if isinstance(block, Line):
        for row in _line_rows(block, columns):
            img = _text_row(row, block.bold)
            if block.double:
                img = img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST)
            yield img
    elif isinstance(block, Rule):
        yield _text_row((block.char or "-")[0] * columns, bold=False)
    else:
        yield _qr_image(block, width)


def render_image(doc: Document, columns: int, width: int | None = None) -> Image.Image:
    """A grayscale picture of the printed paper, ``width`` dots wide (default: the columns')."""
    width = dots_for_columns(columns) if width is None else width
    rows = [img for block in doc.blocks for img in _block_images(block, columns, width)]
    height = _TOP_MARGIN + sum(r.height for r in rows) + _BOTTOM_MARGIN
    paper = Image.new("L", (width, height), _WHITE)
    y = _TOP_MARGIN
    for r in rows:
        paper.paste(r, ((width - r.width) // 2, y))
        y += r.height
    return paper
