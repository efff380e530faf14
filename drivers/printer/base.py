"""The receipt printer interface. A receipt is a device-neutral document of blocks that each
driver renders (ESC/POS bytes, or text + PNG in the simulator)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, Protocol


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    bold: bool = False
    align: Literal["left", "center", "right"] = "left"
    double: bool = False  # double height and width


@dataclass(frozen=True, slots=True)
class Rule:
    """A horizontal separator across the paper."""

    char: str = "-"


@dataclass(frozen=True, slots=True)
class QrBlock:
    data: str
    size: int = 6  # module size in dots (ESC/POS GS ( k fn 43: 1..16)


Block = Line | Rule | QrBlock


@dataclass(frozen=True, slots=True)
class Document:
    """``name`` is a file-safe id (the receipt id); ``blocks`` are printed top to bottom."""

    name: str
    blocks: tuple[Block, ...]


class PaperState(enum.StrEnum):
    OK = "ok"
    NEAR_END = "near_end"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    online: bool
    paper: PaperState
    cover_open: bool = False
    error: bool = False

    @property
    def ready(self) -> bool:
        return (
            self.online
            and self.paper is not PaperState.OUT
            and not self.cover_open
            and not (self.error)
        )


#: Font A cell of ESC/POS heads, in dots (203 dpi: 32 columns = 384 dots on 58 mm paper,
#: 48 columns = 576 dots on 80 mm).
CELL_W: Final = 12
CELL_H: Final = 24


def dots_for_columns(columns: int) -> int:
    """Printable width in dots of a head that prints ``columns`` font-A characters."""
    return columns * CELL_W


class ReceiptPrinter(Protocol):
    name: str
    columns: int  # characters per line at normal size (32 on 58 mm, 48 on 80 mm)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def status(self) -> PrinterStatus:
        """Live status with a short timeout; a printer that does not answer is not ready."""
        ...

    async def print(self, doc: Document) -> None:
        """Print and cut. Raises ``DeviceFault`` (e.g. kind ``paper_out``) when it cannot."""
        ...
