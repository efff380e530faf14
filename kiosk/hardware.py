"""Builds the devices the config names. Pi-only modules are imported here, lazily.

Under ``--simulate`` (or ``hardware.simulate = true``) every device is simulated: the
validator and printer simulators, the replay reader watching ``state_dir/frames``, and the
real :class:`~drivers.panel.Panel` on gpiozero's ``MockFactory``; a control socket
(``state_dir/sim.sock``) lets ``kiosk demo``, tests or a technician play the customer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from drivers.panel import Panel
from drivers.printer.base import ReceiptPrinter
from drivers.reader.base import CodeReader, Decoder, FrameSource
from drivers.validator.base import BillValidator, NoteDispenser
from kiosk import devices
from kiosk.config import Config
from kiosk.errors import DeviceError

log = logging.getLogger("kiosk.hardware")


@dataclass
class Hardware:
    validator: BillValidator
    printer: ReceiptPrinter
    reader: CodeReader
    panel: Panel
    dispenser: NoteDispenser | None = None
    device: Any = None  # an in-process wire simulator (validator port "sim")
    printer_device: Any = None  # the same for the printer (printer port "sim")
    control: asyncio.AbstractServer | None = None

    async def close(self) -> None:
        if self.control is not None:
            self.control.close()
        for closer in (self.reader.close, self.printer.close, self.validator.close):
            try:
                await closer()
            except Exception:  # closing must go on for the other devices
                log.exception("closing a device failed")
        for device in (self.device, self.printer_device):
            if device is not None:
                await device.close()
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
    """Build (not open) every device; under simulation also start the control socket.

    Each device is handed out through the kiosk's boundary (:mod:`kiosk.devices`): what it
    raises is a :class:`~kiosk.errors.DeviceError` naming it; so is a device that cannot even
    be built (a decoder's library missing, a simulator's pty, the panel's GPIO)."""
    from drivers.reader.replay import ReplayReader

    c = config
    with devices.boundary(devices.VALIDATOR):
        hw_validator, scripted, dispenser, device = await _validator(c)
    with devices.boundary(devices.PRINTER):
        printer, scripted_printer, printer_device = await _printer(c)
    with devices.boundary(devices.READER):
        replay = ReplayReader(
            c.frames_dir, poll_interval=c.reader.poll_s, hold=c.reader.hold_s, decoder=_decoder(c)
        )
        reader: CodeReader = replay if c.simulate or c.reader.driver == "replay" else _reader(c)
    pins = c.panel
    factory = _pin_factory(c.simulate)
    panel = _panel(pins, factory)
    hw = Hardware(
        devices.validator(hw_validator),
        devices.printer(printer),
        devices.reader(reader),
        panel,
        dispenser=devices.dispenser(dispenser) if dispenser is not None else None,
        device=device,
        printer_device=printer_device,
    )
    if c.simulate:
        from drivers.sim.control import SimRig, serve_control

        factory.pin(pins.door).drive_low()  # the simulated door starts closed
        rig = SimRig(
            validator=scripted,
            printer=scripted_printer,
            replay_dir=c.frames_dir,
            panel=panel,
            factory=factory,
            reader=replay,
        )
        sock = c.state_dir / "sim.sock"
        sock.unlink(missing_ok=True)
        hw.control = await serve_control(rig, sock)
    return hw


def _panel(pins: Any, factory: Any) -> Panel:
    """The panel on ``factory``; GPIO that cannot be claimed is the panel's DeviceError."""
    from gpiozero.exc import GPIOZeroError

    try:
        return Panel(pins, pin_factory=factory)
    except GPIOZeroError as exc:
        raise gpio_error(exc) from exc


def gpio_error(exc: Exception) -> DeviceError:
    """The panel's :class:`DeviceError` for gpiozero's refusal ``exc``."""
    return DeviceError(
        "gpio panel",
        f"{str(exc).rstrip('!.')}: on a Raspberry Pi install lgpio (sudo apt install"
        " python3-lgpio) and give the daemon's user the gpio group; elsewhere run with"
        " --simulate",
    )


async def _validator(c: Config) -> tuple[BillValidator, Any, NoteDispenser | None, Any]:
    """The validator driver, what the control channel scripts, the dispenser, and the
    in-process device simulator (``port = "sim"``) to stop with the kiosk."""
    v = c.validator
    if v.driver == "sim":
        from drivers.validator.sim import SimValidator

        sim = SimValidator(
            currency=c.currency.code,
            channels={i + 1: value for i, value in enumerate(v.notes)},
            state_file=c.state_dir / "sim-validator.json",
            escrow_timeout=v.escrow_timeout_s,
            stack_time=v.stack_s,
        )
        return sim, sim, None, None
    from drivers.sim.wire import Unscripted

    port, device = v.port, None
    scripted: Any = Unscripted()
    if v.driver == "id003":
        from drivers.id003.client import Id003Validator
        from drivers.serialport import ID003_LINE

        table = {0x61 + i: value for i, value in enumerate(v.notes[:8])}
        if port == "sim":
            from drivers.id003.sim import Id003Simulator, serve
            from drivers.sim.wire import Id003Script

            id003_sim = Id003Simulator(currency=c.currency.code, escrow_table=table)
            device = _DeviceSim(serve, id003_sim)
            port, scripted = await device.start(), Id003Script(id003_sim)
        validator = Id003Validator(
            port,
            currency=c.currency.code,
            escrow_table=table,
            country_code=v.country_code,
            line=v.line or ID003_LINE,
            poll_interval=v.poll_interval_s,
            reply_timeout=v.reply_timeout_s,
            retries=(v.retries or 3) - 1,  # ID-003: retries after the first send
        )
        return validator, scripted, None, device
    from drivers.essp.client import EsspValidator
    from drivers.essp.protocol import TRIES as ESSP_TRIES
    from drivers.serialport import ESSP_LINE

    channels = {i + 1: value for i, value in enumerate(v.notes)}
    if port == "sim":
        from drivers.essp.sim import EsspSimulator
        from drivers.essp.sim import serve as serve_essp
        from drivers.sim.wire import EsspScript

        essp_sim = EsspSimulator(
            currency=c.currency.code,
            channels=channels,
            payout=v.payout,
            require_encryption=v.encrypted,
            levels=SIM_FLOAT if v.payout else None,
        )
        device = _DeviceSim(serve_essp, essp_sim)
        port, scripted = await device.start(), EsspScript(essp_sim)
    essp = EsspValidator(
        port,
        currency=c.currency.code,
        line=v.line or ESSP_LINE,
        address=v.address,
        encrypted=v.encrypted,
        poll_interval=v.poll_interval_s,
        payout=True if v.payout else None,
        reply_timeout=v.reply_timeout_s,
        tries=v.retries or ESSP_TRIES,
    )
    return essp, scripted, essp if v.payout else None, device


#: Notes a simulated SMART Payout holds for paying out at start (value -> count).
SIM_FLOAT: dict[int, int] = {1000: 10, 2000: 10, 5000: 10}


class _DeviceSim:
    """A wire-level simulator served on a pty inside this process (``port = "sim"``)."""

    def __init__(self, serve: Any, sim: Any) -> None:
        self._serve, self.sim = serve, sim
        self._task: asyncio.Task[None] | None = None
        self._port: Any = None

    async def start(self) -> str:
        from drivers.pty import DevicePort

        self._port = DevicePort()
        self._port.start()
        self._task = asyncio.create_task(self._serve(self.sim, self._port))
        log.info("%s simulated on %s", type(self.sim).__name__, self._port.path)
        return str(self._port.path)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._port is not None:
            self._port.close()


def _decoder(c: Config) -> Decoder:
    from drivers.reader.decoders import make_decoder

    budget = c.reader.budget_ms if c.reader.decoder in ("auto", "kiosk") else None
    return make_decoder(c.reader.decoder, budget_ms=budget)


def _reader(c: Config) -> CodeReader:
    """The configured code reader (cameras decode in one worker thread; a scanner sends text).
    Pi-only and optional modules (picamera2, cv2) are imported when the source opens."""
    r = c.reader
    if r.driver == "scanner":
        from drivers.reader.scanner import SerialScanner

        return SerialScanner(r.port, line=r.line, hold=r.hold_s)
    from drivers.reader.camera_reader import CameraReader

    source: FrameSource
    if r.driver == "picamera2":
        from drivers.camera.picam import PicameraSource

        source = PicameraSource()
    else:
        from drivers.camera.v4l2 import V4l2Source

        source = V4l2Source(r.device)
    return CameraReader(source, _decoder(c), hold=r.hold_s)


async def _printer(c: Config) -> tuple[ReceiptPrinter, Any, Any]:
    """The printer driver, what the control channel scripts, and an in-process simulator."""
    p = c.printer
    columns = 48 if p.paper_mm == 80 else 32
    if p.driver == "sim":
        from drivers.printer.sim import SimPrinter

        sim_printer = SimPrinter(c.receipts_dir, columns=columns)
        return sim_printer, sim_printer, None
    from drivers.escpos.client import EscposPrinter

    port, device, scripted = p.port, None, None
    if port == "sim":
        from drivers.escpos.sim import EscposSimulator, serve

        escpos_sim = EscposSimulator(c.receipts_dir, columns=columns)
        device = _DeviceSim(serve, escpos_sim)
        port, scripted = await device.start(), escpos_sim
    return EscposPrinter(port, line=p.line, columns=columns), scripted, device
