"""A simulated serial 2D scanner module on a pseudo-terminal, for tests, the demo and
``kiosk sim``.

The driver (:class:`~drivers.reader.scanner.SerialScanner`) opens the pty's slave like a real
port; the simulator writes on the master end what a module sends: the decoded text and a
terminator (:meth:`ScannerSimulator.scan`), or line noise (:meth:`ScannerSimulator.garbage`).
Whatever the driver writes (a real module would take configuration commands) is read and
ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from drivers.pty import DevicePort

log = logging.getLogger(__name__)


class ScannerSimulator:
    """A scanner module on ``port`` (a new :class:`~drivers.pty.DevicePort` if not given)."""

    def __init__(self, port: DevicePort | None = None) -> None:
        self.port = port if port is not None else DevicePort()
        self.scanned: list[bytes] = []  # payloads sent by scan(), in order
        self._closed = False

    @property
    def path(self) -> Path:
        """The port the driver opens."""
        return self.port.path

    def scan(self, text: bytes | str, terminator: bytes = b"\r\n") -> None:
        """A code was read: send its text (UTF-8 if ``str``) and the terminator."""
        payload = text.encode("utf-8") if isinstance(text, str) else text
        self.scanned.append(payload)
        self.port.write(payload + terminator)

    def garbage(self, data: bytes) -> None:
        """Bytes that are not a code (power-up noise, a baud-rate mismatch), sent as they are."""
        self.port.write(data)

    def write(self, data: bytes) -> None:
        """Raw bytes, e.g. one part of a line that a module sends in two USB packets."""
        self.port.write(data)

    def close(self) -> None:
        """Close the port (once: its file descriptor numbers may be reused afterwards)."""
        if not self._closed:
            self._closed = True
            self.port.close()


async def run_scanner_simulator(
    link_path: Path,
    *,
    sim: ScannerSimulator | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve a simulated scanner on a pty linked at ``link_path`` until cancelled.

    Pass ``sim`` to script it from elsewhere (``sim.scan("...")``); ``ready`` is set once the
    link exists. The driver opens ``link_path`` like a real port.
    """
    if sim is None:
        sim = ScannerSimulator()
    port = sim.port
    try:
        port.start()
        port.link(link_path)
        log.info("scanner sim: on %s (%s)", link_path, port.path)
        if ready is not None:
            ready.set()
        while True:
            data = await port.read_some()
            log.debug("scanner sim: ignoring %d byte(s) from the driver", len(data))
    finally:
        with contextlib.suppress(Exception):
            sim.close()
