"""Driver exceptions. Drivers know bytes and devices, not money: the kiosk translates these to
``kiosk.errors.DeviceError`` at its boundary.

::

    DriverError
     ├── PortError(DriverError, OSError)      the port cannot be opened, or was lost
     ├── FrameError(DriverError, ValueError)  garbage or a bad checksum on the wire
     ├── DeviceFault(DriverError)             the device reports a fault (jam, cashbox out...)
     ├── CommandRefused(DriverError)          the device refused a command in its state
     └── DecoderUnavailable(DriverError, RuntimeError)
                                              a QR decoder's library is missing here
"""

from __future__ import annotations


class DriverError(Exception):
    """Root of every driver error."""


class PortError(DriverError, OSError):
    """The serial port (or other transport) cannot be opened or was lost."""


class FrameError(DriverError, ValueError):
    """Bytes that are not a valid frame (bad checksum, bad length, unknown code)."""


class DeviceFault(DriverError):
    """The device reports a fault; ``kind`` is a short machine-readable name."""

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


class CommandRefused(DriverError):
    """The device answered that it cannot process the command now."""


class DecoderUnavailable(DriverError, RuntimeError):
    """A decoder cannot run on this machine (a library is missing); the message says which
    one and how to install it (pyzbar: ``apt install libzbar0``)."""
