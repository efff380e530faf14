"""ESC/POS command bytes and status bit tables (protocols.md §3; Epson ESC/POS reference).

Only the subset this driver emits or answers is named here; the encoder (:mod:`.encoder`), the
status parser (:mod:`.status`) and the simulator (:mod:`.sim`) are all built from these tables.
"""

from __future__ import annotations

import enum
from typing import Final

from drivers.serialport import LineSettings

#: Factory default of most serial ESC/POS printers (Epson TM, Bixolon SRP): 9600 8N1.
ESCPOS_LINE: Final = LineSettings(9600, 8, "N", 1)


class Ctl(enum.IntEnum):
    """Control bytes that start a command or end a line (ESC/POS "ASCII" names)."""

    EOT = 0x04
    LF = 0x0A
    CR = 0x0D
    DLE = 0x10
    ESC = 0x1B
    GS = 0x1D
    FS = 0x1C


class EscCmd(enum.IntEnum):
    """Second byte of ``ESC x`` commands (Epson ESC/POS reference, "Commands by function")."""

    INIT = 0x40  # ESC @          initialise printer (formatting back to defaults)
    BOLD = 0x45  # ESC E n        emphasised on (n & 1) / off
    ALIGN = 0x61  # ESC a n        justification 0/48 left, 1/49 centre, 2/50 right
    CODE_PAGE = 0x74  # ESC t n        select character code table
    FEED_LINES = 0x64  # ESC d n        print and feed n lines
    MODE = 0x21  # ESC ! n        print mode (font, bold, double) - parsed, not emitted


class GsCmd(enum.IntEnum):
    """Second byte of ``GS x`` commands."""

    SIZE = 0x21  # GS ! n         character size: high nibble width-1, low nibble height-1
    CUT = 0x56  # GS V m [n]     cut (m 0/48 full, 1/49 partial; 65/66 feed n then cut)
    STATUS = 0x72  # GS r n         transmit status (in sequence; §3.1)
    ASB = 0x61  # GS a n         automatic status back enable (§3.1)
    TWO_D = 0x28  # GS ( k pL pH cn fn ...   2-D codes (with 0x6B "k")


class Align(enum.IntEnum):
    """``ESC a n`` values."""

    LEFT = 0
    CENTER = 1
    RIGHT = 2


#: ``GS ! n`` value for double width and double height (Line.double).
SIZE_DOUBLE: Final = 0x11
SIZE_NORMAL: Final = 0x00

#: ``GS V 1``: partial cut (function A), the cut of python-escpos ``cut("PART")``.
PARTIAL_CUT: Final = 0x01
#: Lines fed before the cut so the last printed line clears the cutter.
FEED_BEFORE_CUT: Final = 4


class CodePage(enum.IntEnum):
    """``ESC t n`` character code tables (Epson numbering) with the Python codec of each."""

    PC437 = 0  # USA, Standard Europe (the power-on default)
    PC850 = 2  # Multilingual
    PC860 = 3  # Portuguese
    PC863 = 4  # Canadian-French
    PC865 = 5  # Nordic
    WPC1252 = 16  # Windows Latin-1
    PC866 = 17  # Cyrillic #2
    PC852 = 18  # Latin 2
    PC858 = 19  # Euro

    @property
    def codec(self) -> str:
        return _CODECS[self]


_CODECS: Final = {
    CodePage.PC437: "cp437",
    CodePage.PC850: "cp850",
    CodePage.PC860: "cp860",
    CodePage.PC863: "cp863",
    CodePage.PC865: "cp865",
    CodePage.WPC1252: "cp1252",
    CodePage.PC866: "cp866",
    CodePage.PC852: "cp852",
    CodePage.PC858: "cp858",
}


# -- GS ( k: QR code (cn = 49), §3.1 "QR" --------------------------------------------------------

QR_CN: Final = 0x31  # cn 49: QR Code
QR_MODEL_2: Final = b"\x32\x00"  # fn 65 parameters: model 2
QR_STORE_M: Final = 0x30  # the "m" byte of fn 80 (store) and fn 81 (print)


class QrFn(enum.IntEnum):
    """``GS ( k`` function numbers for cn = 49."""

    MODEL = 0x41  # fn 65: select the model (n1 n2)
    MODULE_SIZE = 0x43  # fn 67: module size in dots, 1..16
    EC_LEVEL = 0x45  # fn 69: error correction level
    STORE = 0x50  # fn 80: store data in the symbol storage area
    PRINT = 0x51  # fn 81: print the stored symbol


class QrEc(enum.IntEnum):
    """``GS ( k`` fn 69 error-correction levels."""

    L = 0x30
    M = 0x31
    Q = 0x32
    H = 0x33


# -- DLE EOT n: real-time status, §3.1 -----------------------------------------------------------


class StatusRequest(enum.IntEnum):
    """``DLE EOT n`` (``10 04 n``): the n of each real-time status request."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    PAPER = 4


#: Every DLE EOT reply has bit 0 = 0, bit 1 = 1, bit 4 = 1, bit 7 = 0 (``0xx1xx10``).
DLE_EOT_MASK: Final = 0x93
DLE_EOT_FIXED: Final = 0x12
#: First byte of an ASB block: ``0xx1xx00``; GS r replies: ``0xx0xxxx``.
ASB_MASK: Final = 0x93
ASB_FIXED: Final = 0x10
GS_R_MASK: Final = 0x90
GS_R_FIXED: Final = 0x00
ASB_LENGTH: Final = 4


class PrinterBit(enum.IntFlag):
    """DLE EOT 1 reply."""

    DRAWER = 0x04  # drawer kick-out connector pin 3 high
    OFFLINE = 0x08
    WAITING_RECOVERY = 0x20
    FEED_BUTTON = 0x40


class OfflineBit(enum.IntFlag):
    """DLE EOT 2 reply."""

    COVER_OPEN = 0x04
    FEED_BUTTON = 0x08  # paper being fed by the FEED button
    PAPER_END_STOP = 0x20  # printing stopped by paper end
    ERROR = 0x40


class ErrorBit(enum.IntFlag):
    """DLE EOT 3 reply."""

    MECHANICAL = 0x04  # some models
    AUTOCUTTER = 0x08
    UNRECOVERABLE = 0x20
    AUTO_RECOVERABLE = 0x40  # head temperature, cover opened while printing


class PaperBit(enum.IntFlag):
    """DLE EOT 4 reply."""

    NEAR_END = 0x0C  # bits 2 and 3
    END = 0x60  # bits 5 and 6


class GsrPaperBit(enum.IntFlag):
    """GS r 1 reply (paper sensors)."""

    NEAR_END = 0x03
    END = 0x0C


class AsbBit(enum.IntFlag):
    """ASB first byte (the others: byte 2 like DLE EOT 3, byte 3 like GS r 1)."""

    DRAWER = 0x04
    OFFLINE = 0x08
    COVER_OPEN = 0x20
    FEED_BUTTON = 0x40
