"""The device side of a pseudo-terminal, for simulators that speak a protocol byte for byte.

:class:`DevicePort` opens a pty pair; the driver under test opens :attr:`DevicePort.path`
(the slave, e.g. ``/dev/pts/7``, or a stable symlink made with :meth:`link`) through pyserial
like a real port, and the simulator reads and writes the master end. The line settings the
driver set on its end are visible from here (:meth:`line`): Linux ptys drop PARENB, so parity
cannot be seen, but baud rate and stop bits can (see protocols.md "pty caveats").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from pathlib import Path

from drivers.errors import PortError

_BAUDS = {
    getattr(termios, f"B{b}"): b
    for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
    if hasattr(termios, f"B{b}")
}


def check_link_path(path: Path) -> None:
    """Raise :class:`PortError` if ``path`` exists and is not a symlink (a link may replace
    only a stale link, never a file it did not make)."""
    if not path.is_symlink() and path.exists():
        raise PortError(
            f"{path}: exists and is not a symlink; not replacing it (remove it or pick "
            "another --link path)"
        )


class DevicePort:
    """A pty whose master end is the simulated device. Use inside a running loop."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        self.path = Path(os.ttyname(slave))
        tty.setraw(slave)
        # Keep our slave fd open so the pty stays alive while the driver reconnects.
        self._slave = slave
        os.set_blocking(self.master, False)
        self._data = asyncio.Queue[bytes]()
        self._links: list[Path] = []
        self._reading = False

    def link(self, path: Path) -> Path:
        """A stable name for the port (like udev's ``/dev/kiosk-validator``): a symlink at
        ``path``. An old symlink there (a simulator that died) is replaced; anything else is
        never touched: :class:`~drivers.errors.PortError`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            raise PortError(
                f"{path} exists and is not a symlink: not replaced (choose another --link)"
            )
        path.symlink_to(self.path)
        self._links.append(path)
        return path

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.master, self._on_readable)
        self._reading = True

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:  # the slave side went away (EIO): the driver closed the port
            return
        if data:
            self._data.put_nowait(data)

    async def read_some(self, timeout: float | None = None) -> bytes:
        """Bytes the driver sent, or ``b""`` after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                return await self._data.get()
        except TimeoutError:
            return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise PortError(f"{self.path}: device write failed: {exc}") from exc
            view = view[n:]

    def line(self) -> tuple[int, int, bool, int]:
        """(baud, data bits, parity enabled, stop bits) as the driver set them."""
        attrs = termios.tcgetattr(self.master)
        cflag, ospeed = attrs[2], attrs[5]
        size = {termios.CS5: 5, termios.CS6: 6, termios.CS7: 7, termios.CS8: 8}[
            cflag & termios.CSIZE
        ]
        return (
            _BAUDS.get(ospeed, int(ospeed)),
            size,
            bool(cflag & termios.PARENB),
            2 if cflag & termios.CSTOPB else 1,
        )

    def close(self) -> None:
        if self._reading:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.master)
            self._reading = False
        for p in self._links:
            # only our own link: a file or another link put there since is left alone
            with contextlib.suppress(OSError):
                if p.is_symlink() and p.readlink() == self.path:
                    p.unlink()
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
