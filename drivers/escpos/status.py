"""ESC/POS status: DLE EOT 1-4 requests, their one-byte replies, GS r 1 and ASB (protocols.md §3.1).

The three sources are told apart by their fixed bits: a DLE EOT reply is ``0xx1xx10``, the first
byte of a 4-byte ASB block ``0xx1xx00``, a GS r reply ``0xx0xxxx``. A byte without the fixed
bits of the reply awaited is not that reply (:func:`find_reply` skips it, :func:`check_dle_eot`
raises ``FrameError``).

:func:`to_status` folds the four DLE EOT replies into a
:class:`~drivers.printer.base.PrinterStatus`:

- ``online``: DLE EOT 1 bit 3 clear. Real printers also go offline while the cover is open or
  the paper is out, so an offline printer usually has a cause below too.
- ``cover_open``: DLE EOT 2 bit 2.
- ``paper``: ``OUT`` on DLE EOT 4 bits 5/6 or DLE EOT 2 bit 5 (stopped by paper end),
  ``NEAR_END`` on DLE EOT 4 bits 2/3, else ``OK``.
- ``error``: DLE EOT 2 bit 6, or any DLE EOT 3 error (mechanical, autocutter, unrecoverable,
  auto-recoverable).

A printer that does not answer has no status here: the client reports it offline, never
"paper fine" (python-escpos's ``paper_status()`` returns 2, "adequate", on no reply).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from drivers.errors import FrameError
from drivers.escpos.codes import (
    ASB_FIXED,
    ASB_LENGTH,
    ASB_MASK,
    DLE_EOT_FIXED,
    DLE_EOT_MASK,
    GS_R_FIXED,
    GS_R_MASK,
    AsbBit,
    Ctl,
    ErrorBit,
    GsCmd,
    GsrPaperBit,
    OfflineBit,
    PaperBit,
    PrinterBit,
    StatusRequest,
)
from drivers.printer.base import PaperState, PrinterStatus

ReplyKind = Literal["dle_eot", "gs_r"]

#: The four requests of a full status, in the order they are sent.
ALL_REQUESTS = tuple(StatusRequest)


def request(n: StatusRequest) -> bytes:
    """``DLE EOT n``."""
    return bytes((Ctl.DLE, Ctl.EOT, n))


def gs_r_request(n: int = 1) -> bytes:
    """``GS r n`` (1: paper sensors, 2: drawer). Processed in sequence, after earlier data."""
    return bytes((Ctl.GS, GsCmd.STATUS, n))


def is_dle_eot_reply(b: int) -> bool:
    return b & DLE_EOT_MASK == DLE_EOT_FIXED


def is_asb_first(b: int) -> bool:
    return b & ASB_MASK == ASB_FIXED


def is_gs_r_reply(b: int) -> bool:
    return b & GS_R_MASK == GS_R_FIXED


def check_dle_eot(b: int) -> int:
    """``b`` if it has the fixed bits of a DLE EOT reply, else ``FrameError``."""
    if not is_dle_eot_reply(b):
        raise FrameError(f"0x{b:02X} is not a DLE EOT status reply (fixed bits 0xx1xx10)")
    return b


def find_reply(buf: bytes, want: ReplyKind) -> tuple[int | None, int]:
    """The first reply of kind ``want`` in ``buf`` and how many bytes were consumed.

    Whole ASB blocks (4 bytes starting ``0xx1xx00``) are skipped; an ASB block not yet complete
    stops the scan before it (wait for more bytes). Other bytes are garbage and dropped.
    """
    i = 0
    while i < len(buf):
        b = buf[i]
        if want == "dle_eot" and is_dle_eot_reply(b):
            return b, i + 1
        if is_asb_first(b):
            if len(buf) - i < ASB_LENGTH:
                return None, i
            i += ASB_LENGTH
            continue
        if want == "gs_r" and is_gs_r_reply(b):
            return b, i + 1
        i += 1
    return None, i


def online(reply: int) -> bool:
    """DLE EOT 1: not offline."""
    return not check_dle_eot(reply) & PrinterBit.OFFLINE


def offline_cause(reply: int) -> OfflineBit:
    """DLE EOT 2: why the printer is offline."""
    return OfflineBit(check_dle_eot(reply) & sum(OfflineBit))


def error_cause(reply: int) -> ErrorBit:
    """DLE EOT 3: which error."""
    return ErrorBit(check_dle_eot(reply) & sum(ErrorBit))


def paper(reply: int) -> PaperState:
    """DLE EOT 4: roll paper sensors."""
    check_dle_eot(reply)
    if reply & PaperBit.END:
        return PaperState.OUT
    if reply & PaperBit.NEAR_END:
        return PaperState.NEAR_END
    return PaperState.OK


def gs_r_paper(reply: int) -> PaperState:
    """GS r 1: paper sensors (``00`` ok, ``03`` near end, ``0C`` out)."""
    if not is_gs_r_reply(reply):
        raise FrameError(f"0x{reply:02X} is not a GS r reply (fixed bits 0xx0xxxx)")
    if reply & GsrPaperBit.END:
        return PaperState.OUT
    if reply & GsrPaperBit.NEAR_END:
        return PaperState.NEAR_END
    return PaperState.OK


def to_status(replies: Mapping[StatusRequest, int]) -> PrinterStatus:
    """The status of the four DLE EOT replies (every request must have its reply)."""
    missing = [n.name for n in ALL_REQUESTS if n not in replies]
    if missing:
        raise FrameError(f"no reply to DLE EOT {', '.join(missing)}")
    cause = offline_cause(replies[StatusRequest.OFFLINE_CAUSE])
    roll = paper(replies[StatusRequest.PAPER])
    if cause & OfflineBit.PAPER_END_STOP:
        roll = PaperState.OUT
    return PrinterStatus(
        online=online(replies[StatusRequest.PRINTER]),
        paper=roll,
        cover_open=bool(cause & OfflineBit.COVER_OPEN),
        error=bool(cause & OfflineBit.ERROR or error_cause(replies[StatusRequest.ERROR_CAUSE])),
    )


def parse_asb(block: bytes) -> PrinterStatus:
    """A 4-byte ASB block (byte 1 printer, byte 2 errors, byte 3 paper sensors)."""
    if len(block) != ASB_LENGTH or not is_asb_first(block[0]):
        raise FrameError(f"{block.hex(' ')} is not an ASB block (4 bytes, first 0xx1xx00)")
    first, errors, sensors = block[0], block[1], block[2]
    roll = (
        PaperState.OUT
        if sensors & GsrPaperBit.END
        else PaperState.NEAR_END
        if sensors & GsrPaperBit.NEAR_END
        else PaperState.OK
    )
    return PrinterStatus(
        online=not first & AsbBit.OFFLINE,
        paper=roll,
        cover_open=bool(first & AsbBit.COVER_OPEN),
        error=bool(errors & sum(ErrorBit)),
    )


def fault_kind(status: PrinterStatus) -> str | None:
    """The ``DeviceFault`` kind of a status that is not ready, most specific cause first:
    ``cover_open``, ``paper_out``, ``error``, then ``offline`` (no reply, or no cause given)."""
    if status.ready:
        return None
    if status.cover_open:
        return "cover_open"
    if status.paper is PaperState.OUT:
        return "paper_out"
    if status.error:
        return "error"
    return "offline"
