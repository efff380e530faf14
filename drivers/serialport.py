"""Serial ports by URL, for asyncio, with the line settings always explicit.

A port is a pyserial URL (``/dev/kiosk-validator``, ``/dev/pts/3``, ``spy:///dev/ttyUSB0`` for a
hexdump of the wire on stderr). :func:`open_link` opens it through pyserial-asyncio-fast (the
asyncio transport Home Assistant's serial integrations use) and returns a :class:`Link`:
``write``, and ``read_some`` with a deadline. Framing is kept apart, in each protocol's
``frames``/``protocol`` modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

from drivers.errors import PortError

log = logging.getLogger("drivers.serialport")


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Baud rate, data bits, parity (``N``/``E``/``O``) and stop bits (1 or 2)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


ESSP_LINE: Final = LineSettings(9600, 8, "N", 2)  # ITL GA138 "hardware layer": 8N2
ID003_LINE: Final = LineSettings(9600, 8, "E", 1)  # JCM ID-003: 8E1


class Link:
    """An open port: bytes in, bytes out. Not a framer: protocols buffer and resync."""

    def __init__(
        self,
        url: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        line: LineSettings,
    ) -> None:
        self.url, self.line = url, line
        self._reader, self._writer = reader, writer

    async def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, ConnectionError) as exc:
            raise PortError(f"{self.url}: write failed: {exc}") from exc

    async def read_some(self, timeout: float) -> bytes:
        """Whatever bytes arrive next (at least one), or ``b""`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(4096)
        except TimeoutError:
            return b""
        except (OSError, ConnectionError) as exc:
            raise PortError(f"{self.url}: read failed: {exc}") from exc
        if not data:
            raise PortError(f"{self.url}: the port was closed")
        return data

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def is_pty(url: str) -> bool:
    """True for a Unix98 pseudo-terminal slave (``/dev/pts/N``, majors 136-143)."""
    try:
        return 136 <= os.major(Path(url).stat().st_rdev) <= 143
    except (OSError, ValueError):
        return False


async def open_link(url: str, line: LineSettings) -> Link:
    """Open ``url`` with ``line`` settings, without flow control.

    A pseudo-terminal has no parity: Linux drops PARENB, and pyserial's second reconfigure
    then fails with EINVAL. On a pty (simulators, tests) the port is opened without parity,
    which puts the same bytes on the wire; ``Link.line`` keeps what the driver asked for.
    """
    import serial
    import serial_asyncio_fast

    effective = line
    if line.parity != "N" and is_pty(url):
        log.info("%s: a pseudo-terminal has no parity; %s requested, bytes unchanged", url, line)
        effective = replace(line, parity="N")
    try:
        reader, writer = await serial_asyncio_fast.open_serial_connection(
            url=url,
            baudrate=effective.baudrate,
            bytesize=effective.bytesize,
            parity=effective.parity,
            stopbits=effective.stopbits,
            xonxoff=False,
            rtscts=False,
            dsrdtr=False,
        )
    except (OSError, serial.SerialException, ValueError, termios.error) as exc:
        raise PortError(f"{url}: cannot open ({exc})") from exc
    return Link(url, reader, writer, line)
