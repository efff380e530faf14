"""Builds the devices the config names. Pi-only modules are imported here, lazily.

Under ``--simulate`` (or ``hardware.simulate = true``) every device is simulated: the
validator and printer simulators, the replay reader watching ``state_dir/frames``, and the
real :class:`~drivers.panel.Panel` on gpiozero's ``MockFactory``; a control socket
(``state_dir/sim.sock``) lets ``kiosk demo``, tests or a technician play the customer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from drivers.panel import Panel
from drivers.printer.base import ReceiptPrinter
from drivers.reader.base import CodeReader
from drivers.validator.base import BillValidator
from kiosk.config import Config

log = logging.getLogger("kiosk.hardware")


@dataclass
class Hardware:
    validator: BillValidator
    printer: ReceiptPrinter
    reader: CodeReader
    panel: Panel
    control: asyncio.AbstractServer | None = None

    async def close(self) -> None:
        if self.control is not None:
            self.control.close()
        for closer in (self.reader.close, self.printer.close, self.validator.close):
            try:
                await closer()
            except Exception:  # closing must go on for the other devices
                log.exception("closing a device failed")
        self.panel.close()


def _pin_factory(simulate: bool) -> Any:
    if simulate:
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    try:  # lgpio works on every Pi and is the only choice on a Pi 5 (RPi.GPIO is not)
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    except Exception as exc:  # not a Pi, or lgpio missing: gpiozero's own default
        log.warning("gpio: lgpio unavailable (%s); using gpiozero's default pin factory", exc)
        return None


async def build(config: Config) -> Hardware:
    """Build (not open) every device; under simulation also start the control socket."""
    from drivers.printer.sim import SimPrinter
    from drivers.reader.replay import ReplayReader
    from drivers.validator.sim import SimValidator

    c = config
    validator = SimValidator(
        currency=c.currency.code,
        channels={i + 1: v for i, v in enumerate(c.validator.notes)},
        state_file=c.state_dir / "sim-validator.json",
        escrow_timeout=c.validator.escrow_timeout_s,
        stack_time=c.validator.stack_s,
    )
    printer = SimPrinter(c.receipts_dir, columns=48 if c.printer.paper_mm == 80 else 32)
    reader = ReplayReader(c.frames_dir, poll_interval=c.reader.poll_s)
    pins = c.panel
    factory = _pin_factory(c.simulate)
    panel = Panel(pins, pin_factory=factory)
    hw = Hardware(validator, printer, reader, panel)
    if c.simulate:
        from drivers.sim.control import SimRig, serve_control

        factory.pin(pins.door).drive_low()  # the simulated door starts closed
        rig = SimRig(
            validator=validator,
            printer=printer,
            replay_dir=c.frames_dir,
            panel=panel,
            factory=factory,
            reader=reader,
        )
        sock = c.state_dir / "sim.sock"
        sock.unlink(missing_ok=True)
        hw.control = await serve_control(rig, sock)
    return hw
