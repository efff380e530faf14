"""The device checks: ``validator`` (the handshake, the channel table, a fault it reports),
``recycler`` (the SMART Payout's levels), ``printer`` (status and a test page), ``camera`` (one
frame) and ``decoder`` (a generated test card read by the configured decoder). Each opens its
device from the session's :class:`~kiosk.hardware.Hardware`; the fix tables are also the
runner's fallback fixes (:func:`kiosk.selftest.steps`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kiosk import devices
from kiosk.errors import DecoderMissing, DeviceError, DeviceFaulted
from kiosk.selftest.result import Verdict, failed, passed, skipped

if TYPE_CHECKING:  # the rest is imported when a check runs (`kiosk`'s start-up time)
    from PIL import Image

    from drivers.printer.base import PrinterStatus
    from drivers.validator.base import Fault
    from kiosk.selftest.session import Session

FRAME_TIMEOUT_S: Final = 10.0  # a camera's first frame
TEST_CARD = "KIOSK-SELFTEST"


# -- the validator and the recycler ----------------------------------------------------------

FAULT_FIX: Final = {
    "jam": "clear the jam: open the validator's note path, take out the note or debris, close it",
    "cashbox_full": "empty the cashbox and record it with `kiosk cash collect`",
    "cashbox_removed": "put the cashbox back and lock it",
    "fraud": "look for tape or string in the note path, clear it, then power-cycle the validator",
    "failure": "close the note path and power-cycle the validator; if it persists, replace it",
    "disconnected": "the validator does not answer: check its power and its cable",
}

OPEN_REFUSED_FIX: Final = (
    "power-cycle the validator; if it persists, check its dataset (currency) and settings"
    " against [hardware.validator] (driver, encrypted, address)"
)


def validator_fix(port: str) -> str:
    return (
        f"check the validator's power (its bezel lights at power-on) and its cable; `ls -l {port}`"
        " must show the device (udev rule 99-kiosk.rules names it)"
    )


async def check_validator(s: Session) -> Verdict:
    v, cfg = s.devices.validator, s.config.validator
    try:
        report = await v.open()
    except DeviceError as exc:
        s.validator_error = exc.message
        if isinstance(exc, DeviceFaulted) and exc.kind != "disconnected":
            return failed(exc.message, OPEN_REFUSED_FIX)
        return failed(exc.message, validator_fix(cfg.port))
    fault, stray = await _settle(v, 2 * cfg.poll_interval_s + 0.3)
    what = _describe(v)
    if fault is not None:
        fix = FAULT_FIX.get(fault.kind, FAULT_FIX["failure"])
        return failed(f"{what}: {fault.detail or fault.kind}", fix)
    code = s.config.currency.code
    values = _channel_values(v, code)
    if not values:
        return failed(
            f"{what}: the unit reports no {code} note",
            f"have the unit programmed with a {code} dataset (ITL: Validator Manager; JCM: "
            "the acceptor's ROM), or set [kiosk] currency to the notes it takes",
        )
    remark = ""
    if report.in_escrow or report.stacked or stray or getattr(v, "incomplete_payout", None):
        remark = "; a note or payout was in flight at power-up: the daemon settles it at start"
    return passed(f"{what}, channels: {', '.join(s.money(x) for x in values)}{remark}")


async def _settle(v: Any, quiet_s: float) -> tuple[Fault | None, bool]:
    """The fault the validator reports once its first polls settled, and whether a stray
    credit waits (left for the daemon's recovery: never acknowledged here)."""
    from drivers.validator.base import Fault, FaultCleared, NoteCredited

    fault: Fault | None = None
    stray = False
    while True:
        try:
            event = await asyncio.wait_for(v.next_event(), quiet_s)
        except TimeoutError:
            return fault, stray
        if isinstance(event, Fault):
            fault = event
        elif isinstance(event, FaultCleared):
            fault = None
        elif isinstance(event, NoteCredited):
            stray = True


def _channel_values(v: Any, currency: str) -> list[int]:
    """The note values the unit takes in ``currency`` (eSSP: SETUP REQUEST's channels; ID-003:
    the escrow table in use; the simulator: its channels)."""
    from drivers.validator.base import Note

    table = getattr(v, "escrow_table", None) or getattr(v, "channels", None) or {}
    values = {
        entry.value if isinstance(entry, Note) else int(entry)
        for entry in table.values()
        if not isinstance(entry, Note) or entry.currency == currency
    }
    return sorted(x for x in values if x > 0)


def _describe(v: Any) -> str:
    facts = []
    if getattr(v, "is_payout", False):
        facts.append("SMART Payout")
    if (setup := getattr(v, "setup", None)) is not None:
        facts.append(f"firmware {setup.firmware}")
    if getattr(v, "serial_number", None):
        facts.append(f"serial {v.serial_number}")
    name = str(getattr(v, "name", "validator"))
    return f"{name} ({', '.join(facts)})" if facts else name


async def check_recycler(s: Session) -> Verdict:
    dispenser = s.devices.dispenser
    if dispenser is None:
        return skipped("no recycler on this kiosk ([hardware.validator] payout = false)")
    if s.validator_error is not None:
        return failed(
            "not checked: the validator did not open",
            "the recycler is the validator's unit: fix the validator first (see above)",
        )
    levels = {value: n for value, n in sorted((await dispenser.levels()).items()) if n}
    if not levels:
        return failed(
            "empty: no note stored for payout",
            "load notes into the recycler (the float), or cash-out journeys cannot pay",
        )
    total = sum(value * n for value, n in levels.items())
    notes = ", ".join(f"{s.money(value)} x {n}" for value, n in levels.items())
    return passed(f"{notes} (total {s.money(total)})")


# -- the printer -----------------------------------------------------------------------------

PRINTER_FIX: Final = {  # a DeviceFault kind of drivers.escpos.status.fault_kind: words, fix
    "paper_out": ("paper out", "load a paper roll (thermal side to the head), close the cover"),
    "cover_open": ("cover open", "close the printer's cover until it clicks"),
    "offline": ("offline", "check the printer's power and its cable (`ls -l {port}`)"),
    "error": ("error", "power-cycle the printer; clear a paper jam or a stuck cutter"),
}


def _printer_failed(kind: str, port: str, prefix: str = "") -> Verdict:
    words, fix = PRINTER_FIX.get(kind, PRINTER_FIX["error"])
    return failed(f"{prefix}{words}", fix.format(port=port))


async def check_printer(s: Session) -> Verdict:
    from drivers.escpos.status import fault_kind
    from drivers.printer.base import PaperState

    printer, port = s.devices.printer, s.config.printer.port
    try:
        await printer.open()
    except DeviceError as exc:
        return failed(exc.message, PRINTER_FIX["offline"][1].format(port=port))
    status = await printer.status()
    if (kind := fault_kind(status)) is not None:
        return _printer_failed(kind, port)
    ref = f"{s.config.kiosk_id}-SELFTEST-{time.strftime('%Y%m%d%H%M%S')}"
    try:
        await printer.print(_test_page(s, ref, status))
    except DeviceFaulted as exc:
        return _printer_failed(exc.kind, port, "test page not printed: ")
    near = (
        "; paper near its end: load a new roll soon" if status.paper == PaperState.NEAR_END else ""
    )
    detail = f"{printer.name}: ready, test page {ref} printed{near}"
    if s.interactive and not await s.prompt.ask("Did the test page come out, cut and readable?"):
        return failed(
            f"{detail}, but it did not come out right",
            "check the roll's direction (thermal side to the head), the cutter and the head",
        )
    return passed(detail)


def _test_page(s: Session, ref: str, status: PrinterStatus) -> Any:
    """The technician's test page (the ``test`` template, as ``kiosk receipt test``)."""
    from kiosk import receipts

    c, printer = s.config, s.devices.printer
    fields = receipts.blank_fields()
    fields.update(
        title=receipts.TITLES["test"],
        kiosk_id=c.kiosk_id,
        location=c.location,
        support_line=c.support_line,
        time=receipts.local_time(),
        ref=ref,
        printer=printer.name,
        paper=str(status.paper),
        columns=str(printer.columns),
    )
    return receipts.load_templates(c.printer.templates_dir)["test"].render(fields, ref)


# -- the camera and the decoder ---------------------------------------------------------------

CAMERA_FIX: Final = (
    "check the camera's cable (Pi camera: the ribbon at both ends, contacts the right way; USB:"
    " replug it) and that nothing else uses it; `rpicam-hello --list-cameras` lists a Pi camera"
)


async def check_camera(s: Session) -> Verdict:
    reader = s.devices.reader
    source = getattr(reader, "source", None)  # a CameraReader's frame source
    if source is not None:
        source = devices.Guarded(source, "camera")  # the frame source's errors: DeviceError
        try:
            await source.open()
            try:
                frame = await asyncio.wait_for(source.next_frame(), FRAME_TIMEOUT_S)
            finally:
                await source.close()
        except DeviceFaulted as exc:
            why = exc.message
            return failed(why, CAMERA_FIX if exc.kind != "picamera2-missing" else why)
        except TimeoutError:
            return failed(f"no frame within {FRAME_TIMEOUT_S:.0f} s", CAMERA_FIX)
        return _judge_frame(f"{source.name}", frame)
    directory = getattr(reader, "directory", None)  # a ReplayReader
    if directory is not None:
        newest = _newest_image(Path(directory))
        if newest is None:
            return passed(f"replay of {directory}: no frame there yet (the test card stands in)")
        from PIL import Image

        with Image.open(newest) as image:
            return _judge_frame(f"replay {newest.name}", image.convert("L"))
    await reader.open()  # a serial scanner: it sends text, there is no frame
    return passed(f"{reader.name}: port open (scan the test page's QR code to try it)")


def _judge_frame(what: str, frame: Image.Image) -> Verdict:
    from PIL import ImageStat

    mean = ImageStat.Stat(frame.convert("L")).mean[0]
    size = f"{what}: {frame.width}x{frame.height}, brightness {mean:.0f}/255"
    if mean < 8:
        return failed(f"{size}: black", "take the cover off the lens; check the light in the slot")
    if mean > 247:
        return failed(f"{size}: washed out", "shade the camera from direct light or a reflection")
    return passed(size)


def _newest_image(directory: Path) -> Path | None:
    from drivers.reader.replay import IMAGE_SUFFIXES

    images = [
        p
        for p in directory.glob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return max(images, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def make_test_card(text: str) -> Image.Image:
    """A clean QR code of ``text`` as the kiosk's QR maker draws it (``kiosk.demo``)."""
    import io

    import segno
    from PIL import Image

    buf = io.BytesIO()
    segno.make_qr(text, error="m").save(buf, kind="png", scale=8, border=4)
    buf.seek(0)
    with Image.open(buf) as image:
        return image.convert("L")


async def check_decoder(s: Session) -> Verdict:
    decoder = getattr(s.devices.reader, "decoder", None)
    if decoder is None:  # a scanner decodes by itself; the replay's default is zxing-cpp
        from drivers.reader.decoders import make_decoder

        with devices.boundary(devices.READER):
            decoder = make_decoder(s.config.reader.decoder)
    text = f"{TEST_CARD} {s.config.kiosk_id}"
    card = make_test_card(text)
    started = time.perf_counter()
    try:
        with devices.boundary(devices.READER):
            texts = await asyncio.to_thread(decoder.decode, card)
    except DecoderMissing as exc:
        return failed(
            exc.message, "install what the message names, or set [hardware.reader] decoder"
        )
    ms = (time.perf_counter() - started) * 1000
    if text not in texts:
        return failed(
            f"{decoder.name}: the test card was not read ({texts or 'nothing'})",
            'reinstall the kiosk\'s software (uv sync --locked), or set decoder = "zxing"',
        )
    return passed(f"{decoder.name}: test card read in {ms:.0f} ms")
