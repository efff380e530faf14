"""An ESC/POS receipt printer on a serial port, with live status (a ``ReceiptPrinter``).

Wiring: the printer's RS-232 port (or a USB-serial adapter) at ``url``, 9600 8N1 by default
(:data:`~drivers.escpos.codes.ESCPOS_LINE`); no flow control is used, so keep receipts text and
native QR (no raster images).

``status()`` sends DLE EOT 1, 2, 3 and 4, each answered by one byte within ``status_timeout``
seconds. A printer that does not answer is reported ``online=False`` (not ready) after that one
timeout: silence never means "paper fine".

``print(doc)`` checks the status and raises :class:`~drivers.errors.DeviceFault` with kind
``cover_open``, ``paper_out``, ``error`` or ``offline`` (see
:func:`drivers.escpos.status.fault_kind`) without sending anything when the printer is not
ready; otherwise it writes the receipt (:func:`drivers.escpos.encoder.encode`), sends ``GS r 1``,
which the printer answers only once everything before it is processed (and not at all when it
stopped at paper end), and checks the status again: a printer that is no longer ready raises
``DeviceFault(kind, "mid-receipt")`` (the kiosk keeps the receipt queued). ``PortError`` when the
port cannot be opened or is lost.
"""

from __future__ import annotations

import asyncio
import logging

from drivers.errors import DeviceFault, PortError
from drivers.escpos import encoder, status
from drivers.escpos.codes import ESCPOS_LINE, CodePage, StatusRequest
from drivers.escpos.status import ReplyKind
from drivers.printer.base import Document, PaperState, PrinterStatus
from drivers.serialport import LineSettings, Link, open_link

log = logging.getLogger(__name__)

NOT_ANSWERING = PrinterStatus(online=False, paper=PaperState.OK)
"""The status of a printer that does not answer: offline (the paper is unknown; not ready)."""


class EscposPrinter:
    """An ESC/POS printer at ``url``.

    :param line: line settings of the port (the printer's DIP switches / memory switches).
    :param columns: characters per line in font A: 48 on 80 mm paper, 32 on 58 mm.
    :param status_timeout: seconds to wait for each one-byte status reply.
    :param code_page: the ``ESC t`` table the text is encoded in.
    """

    def __init__(
        self,
        url: str,
        *,
        line: LineSettings = ESCPOS_LINE,
        columns: int = 48,
        status_timeout: float = 0.3,
        name: str = "escpos",
        code_page: CodePage = CodePage.PC437,
    ) -> None:
        if columns < 2:
            raise ValueError("columns must be at least 2")
        if status_timeout <= 0:
            raise ValueError("status_timeout must be positive (seconds)")
        self.url, self.line, self.columns, self.name = url, line, columns, name
        self.status_timeout = status_timeout
        self.code_page = code_page
        self._link: Link | None = None
        self._rx = bytearray()
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._link is None:
            self._link = await open_link(self.url, self.line)
            self._rx.clear()
            log.info("%s: %s at %s", self.name, self.url, self.line)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    async def __aenter__(self) -> EscposPrinter:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def status(self) -> PrinterStatus:
        async with self._lock:
            return await self._status()

    async def print(self, doc: Document) -> None:
        data = encoder.encode(doc, columns=self.columns, code_page=self.code_page)
        async with self._lock:
            before = await self._status()
            kind = status.fault_kind(before)
            if kind is not None:
                raise DeviceFault(kind, f"{self.name}: cannot print {doc.name} ({before})")
            link = self._require_link()
            await link.write(data + status.gs_r_request(1))
            # GS r is processed in sequence: its reply means the receipt went through. Allow
            # for the time the bytes take on the wire (they may still sit in the UART buffer).
            await self._reply("gs_r", self.status_timeout + self.wire_time(len(data)))
            after = await self._status()
        kind = status.fault_kind(after)
        if kind is not None:
            raise DeviceFault(kind, "mid-receipt")
        log.info("%s: printed %s (%d bytes)", self.name, doc.name, len(data))

    def wire_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take on the wire at the line settings."""
        bits = 1 + self.line.bytesize + (self.line.parity != "N") + self.line.stopbits
        return nbytes * bits / self.line.baudrate

    # -- internals ---------------------------------------------------------------------------

    def _require_link(self) -> Link:
        if self._link is None:
            raise PortError(f"{self.name}: {self.url} is not open (call open() first)")
        return self._link

    async def _status(self) -> PrinterStatus:
        link = self._require_link()
        await self._drain()
        replies: dict[StatusRequest, int] = {}
        for n in status.ALL_REQUESTS:
            await link.write(status.request(n))
            reply = await self._reply("dle_eot", self.status_timeout)
            if reply is None:
                log.debug("%s: no reply to DLE EOT %d", self.name, n)
                return NOT_ANSWERING
            replies[n] = reply
        return status.to_status(replies)

    async def _drain(self) -> None:
        """Drop stale input (a late reply must not answer the next request)."""
        link = self._require_link()
        self._rx.clear()
        while await link.read_some(0):
            pass

    async def _reply(self, want: ReplyKind, timeout: float) -> int | None:
        link = self._require_link()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            reply, used = status.find_reply(bytes(self._rx), want)
            del self._rx[:used]
            if reply is not None:
                return reply
            left = deadline - loop.time()
            if left <= 0:
                return None
            self._rx += await link.read_some(left)
