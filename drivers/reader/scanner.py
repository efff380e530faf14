"""A serial 2D scanner module: it decodes the code itself and sends the text, line-terminated.

Wiring: a scanner module (Zebra SE, Newland, Honeywell, Waveshare...) on a UART (3.3 V TTL:
module TX to the Pi's RX, GPIO 15) or over USB in CDC/"virtual COM" mode (``/dev/ttyACM0``;
a udev rule gives it a stable name such as ``/dev/kiosk-scanner``). The port is a pyserial URL
opened through :func:`drivers.serialport.open_link`. Set the module to "serial output" with a
CR, LF or CRLF suffix and no prefix; most modules default to 9600 8N1 (:data:`SCANNER_LINE`),
USB CDC ignores the baud rate.

Framing (:class:`LineFramer`): any byte of ``terminators`` (CR and LF by default) ends a line,
so CR, LF and CRLF all work and empty lines are ignored; a payload cannot itself contain a
terminator. A line is refused, with a log line and without stopping the reader, when it is not
UTF-8 or longer than ``max_length`` bytes (its bytes are discarded as they come: a runaway
line never fills memory). A partial line followed by ``gap`` seconds of silence is discarded
too: it is line noise (power-up, a loose cable), and the next real code must not be glued to
it. A module sends a code in one burst, well inside ``gap``.

The same code on consecutive lines is one scan (:class:`~drivers.reader.camera_reader.
RepeatFilter`): a module in continuous mode repeats it while it stays in view.

Bytes are read while :meth:`SerialScanner.next_code` is awaited; the port does not buffer
forever, so a code scanned while nobody listens may be lost, as with a camera.
"""

from __future__ import annotations

import collections
import logging
import re
from dataclasses import dataclass
from typing import Final

from drivers.errors import PortError
from drivers.reader.camera_reader import RepeatFilter
from drivers.serialport import LineSettings, Link, open_link

log = logging.getLogger(__name__)

SCANNER_LINE: Final = LineSettings(9600, 8, "N", 1)  # the usual factory default of modules
MAX_LENGTH: Final = 4096  # bytes: a QR code holds at most 2953 bytes (version 40, level L)


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line refused by :class:`LineFramer`: ``length`` bytes before its terminator."""

    length: int


class LineFramer:
    """Bytes in, lines out (terminator stripped). Knows nothing of the port."""

    def __init__(self, terminators: bytes = b"\r\n", max_length: int = MAX_LENGTH) -> None:
        if not terminators:
            raise ValueError("give at least one terminator byte, e.g. b'\\r\\n'")
        if max_length < 1:
            raise ValueError("max_length must be at least 1 byte")
        self.max_length = max_length
        self._split = re.compile(b"[" + b"".join(re.escape(bytes([t])) for t in terminators) + b"]")
        self._buffer = bytearray()
        self._overflow = 0  # bytes of a line already too long, discarded; 0: not overflowing

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """Complete lines (without terminator, empty ones left out) and refused long lines."""
        *complete, rest = self._split.split(data)
        out: list[bytes | LineTooLong] = []
        for part in complete:
            self._add(part)
            if self._overflow:
                out.append(LineTooLong(self._overflow))
            elif self._buffer:
                out.append(bytes(self._buffer))
            self._buffer.clear()
            self._overflow = 0
        self._add(rest)
        return out

    def discard_partial(self) -> int:
        """Drop the unterminated line so far (after a silence); returns its length in bytes."""
        dropped = self._overflow or len(self._buffer)
        self._buffer.clear()
        self._overflow = 0
        return dropped

    def _add(self, part: bytes) -> None:
        if self._overflow:
            self._overflow += len(part)
        elif len(self._buffer) + len(part) > self.max_length:
            self._overflow = len(self._buffer) + len(part)
            self._buffer.clear()
        else:
            self._buffer += part


@dataclass(frozen=True, slots=True)
class ScannerCounters:
    """Since :meth:`SerialScanner.open`."""

    lines: int = 0
    refused: int = 0  # not UTF-8, or too long
    noise: int = 0  # partial lines dropped after a silence
    codes: int = 0  # new scans reported (repeats filtered out)


class SerialScanner:
    """A :class:`~drivers.reader.base.CodeReader` on a serial 2D scanner module.

    :param url: the port (pyserial URL: ``/dev/kiosk-scanner``, ``/dev/ttyACM0``...).
    :param line: line settings (default 9600 8N1).
    :param terminators: each of these bytes ends a line (CR and LF by default).
    :param max_length: longest line accepted, in bytes.
    :param hold: seconds after which a code scanned again counts as a new scan.
    :param gap: seconds of silence after which a partial line is discarded as noise.

    :meth:`open` raises ``PortError`` if the port cannot be opened; :meth:`next_code` raises
    ``PortError`` when the port is lost (the kiosk reopens it). Bad lines never raise.
    """

    def __init__(
        self,
        url: str,
        *,
        line: LineSettings = SCANNER_LINE,
        terminators: bytes = b"\r\n",
        max_length: int = MAX_LENGTH,
        hold: float = 3.0,
        gap: float = 0.5,
        name: str = "scanner",
    ) -> None:
        if gap <= 0:
            raise ValueError("gap must be > 0 seconds")
        self.name = name
        self.url = url
        self.line = line
        self.gap = gap
        self._terminators = terminators
        self._max_length = max_length
        self._framer = LineFramer(terminators, max_length)
        self._filter = RepeatFilter(hold)
        self._link: Link | None = None
        self._pending: collections.deque[str] = collections.deque()
        self._refusing = False
        self._lines = self._refused = self._noise = self._codes = 0

    @property
    def counters(self) -> ScannerCounters:
        return ScannerCounters(self._lines, self._refused, self._noise, self._codes)

    async def open(self) -> None:
        if self._link is not None:
            return
        self._link = await open_link(self.url, self.line)
        self._framer = LineFramer(self._terminators, self._max_length)
        self._pending.clear()
        self._lines = self._refused = self._noise = self._codes = 0
        log.info("%s: %s at %s", self.name, self.url, self.line)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    async def next_code(self) -> str:
        while not self._pending:
            if self._link is None:
                raise PortError(f"{self.name}: the scanner port is not open")
            data = await self._link.read_some(self.gap)
            if not data:
                dropped = self._framer.discard_partial()
                if dropped:
                    self._noise += 1
                    self._refuse(f"dropped {dropped} byte(s) without a line end (line noise?)")
                continue
            for item in self._framer.feed(data):
                self._take(item)
        return self._pending.popleft()

    # -- internals -----------------------------------------------------------------------------

    def _take(self, item: bytes | LineTooLong) -> None:
        self._lines += 1
        if isinstance(item, LineTooLong):
            self._refused += 1
            self._refuse(f"refused a {item.length}-byte line (longer than {self._max_length})")
            return
        try:
            text = item.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._refused += 1
            self._refuse(f"refused a {len(item)}-byte line that is not UTF-8 ({exc.reason})")
            return
        if self._refusing:
            log.info("%s: good lines again", self.name)
            self._refusing = False
        for code in self._filter.feed([text]):
            self._pending.append(code)
            self._codes += 1

    def _refuse(self, message: str) -> None:
        """The first bad line of a run is a warning; the rest are debug until a good line."""
        if self._refusing:
            log.debug("%s: %s", self.name, message)
        else:
            log.warning("%s: %s", self.name, message)
            self._refusing = True
