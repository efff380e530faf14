"""``kiosk selftest``: each device in turn, one ``PASS`` / ``FAIL`` / ``SKIP`` line each, a failure
saying what to do; exit 0 when nothing failed, 1 when a check failed, 2 for a bad config or when
the daemon runs (it owns the ports: stop it first).

The checks, in order (``--skip NAME[,NAME]`` leaves any out): ``validator`` (the handshake, the
channel table, a fault it reports), ``recycler`` (the SMART Payout's levels), ``printer`` (status
and a test page), ``camera`` (one frame; the replay directory's newest image under simulation),
``decoder`` (a generated test card read by the configured decoder), ``leds``, ``buzzer``,
``buttons`` and ``door`` (the technician presses green, red, opens and closes the door, each
within ``--press-timeout``; skipped with ``--no-buttons`` or when stdin is not a terminal),
``clock`` (NTP synchronised), ``disk`` (free space on the state dir's filesystem) and
``provider:NAME`` for each configured provider (``--skip providers`` leaves them all out; they
call the provider over the network).

The self-test holds the state directory's lock (:mod:`kiosk.statelock`) while it runs, so the
daemon cannot start meanwhile. It journals nothing: the test page is printed straight to the
printer (it carries no money and must not stay queued for a reprint).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from drivers.errors import DecoderUnavailable, DeviceFault, DriverError
from kiosk.errors import KioskError

if TYPE_CHECKING:  # the rest is imported when a check runs (`kiosk`'s start-up time)
    from PIL import Image

    from drivers.panel import PanelEvent
    from drivers.printer.base import PrinterStatus
    from drivers.validator.base import Fault
    from kiosk.config import Config, Secrets
    from kiosk.hardware import Hardware

log = logging.getLogger("kiosk.selftest")

DEVICE_TIMEOUT_S: Final = 60.0  # the longest one device check may take (a silent port: ~20 s)
FRAME_TIMEOUT_S: Final = 10.0  # a camera's first frame
ANSWER_TIMEOUT_S: Final = 120.0  # a technician's y/n answer
SHOW_S = 0.4  # how long each LED stays lit when nobody is asked
MIN_FREE_BYTES = 200 * 1024 * 1024
MIN_FREE_FRACTION = 0.05
CLOCK_COMMAND: tuple[str, ...] = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")
TEST_CARD = "KIOSK-SELFTEST"
SYSTEMD_UNIT: Final = "kiosk"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the self-test. ``ok`` is None for a check that was skipped; ``fix`` says, in
    plain words, what the technician does about a failure."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    @property
    def status(self) -> str:
        return "SKIP" if self.ok is None else "PASS" if self.ok else "FAIL"

    def line(self) -> str:
        text = f"{self.detail} — {self.fix}" if self.ok is False and self.fix else self.detail
        return f"{self.status}  {self.name:<9}  {text}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.lower(),
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool | None
    detail: str
    fix: str = ""


def passed(detail: str) -> Verdict:
    return Verdict(True, detail)


def failed(detail: str, fix: str) -> Verdict:
    return Verdict(False, detail, fix)


def skipped(detail: str) -> Verdict:
    return Verdict(None, detail)


class Prompt(Protocol):
    """How the self-test talks to the technician: an instruction, or a yes/no question
    (``None``: no answer in time)."""

    def tell(self, text: str) -> None: ...

    async def ask(self, question: str) -> bool | None: ...


class Terminal:
    """The technician at the terminal: prompts on stderr (stdout holds the results), answers
    read from stdin without blocking the event loop."""

    def __init__(self, out: Any = None, stdin: Any = None) -> None:
        self.out, self.stdin = out or sys.stderr, stdin or sys.stdin

    def tell(self, text: str) -> None:
        print(f"  >> {text}", file=self.out, flush=True)

    async def ask(self, question: str) -> bool | None:
        while True:
            self.tell(f"{question} [y/n]")
            line = await self._readline(ANSWER_TIMEOUT_S)
            if line is None:
                return None
            answer = line.strip().lower()
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")

    async def _readline(self, timeout: float) -> str | None:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[str] = loop.create_future()
        fd = self.stdin.fileno()

        def readable() -> None:  # a terminal hands over one line per read
            if not got.done():
                got.set_result(os.read(fd, 1024).decode(errors="replace"))

        loop.add_reader(fd, readable)
        try:
            async with asyncio.timeout(timeout):
                line = await got
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(fd)
        return line or None  # "" is the end of input


@dataclass
class Session:
    config: Config
    secrets: Secrets
    hw: Hardware | None
    interactive: bool
    press_timeout_s: float
    prompt: Prompt
    validator_error: str | None = None  # why the validator did not open

    @property
    def devices(self) -> Hardware:
        assert self.hw is not None  # device steps are skipped without hardware
        return self.hw

    def money(self, minor: int) -> str:
        from kiosk.money import Money

        return str(Money.of(minor, self.config.currency.code))


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    run: Callable[[Session], Awaitable[Verdict]]
    fix: str  # what to do when the check itself raises
    device: bool = True
    timeout_s: float | None = DEVICE_TIMEOUT_S


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


def _validator_fix(port: str) -> str:
    return (
        f"check the validator's power (its bezel lights at power-on) and its cable; `ls -l {port}`"
        " must show the device (udev rule 99-kiosk.rules names it)"
    )


async def check_validator(s: Session) -> Verdict:
    v, cfg = s.devices.validator, s.config.validator
    try:
        report = await v.open()
    except (DriverError, OSError) as exc:
        s.validator_error = str(exc)
        if isinstance(exc, DeviceFault) and exc.kind != "disconnected":
            return failed(str(exc), OPEN_REFUSED_FIX)
        return failed(str(exc), _validator_fix(cfg.port))
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
    except (DriverError, OSError) as exc:
        return failed(str(exc), PRINTER_FIX["offline"][1].format(port=port))
    status = await printer.status()
    if (kind := fault_kind(status)) is not None:
        return _printer_failed(kind, port)
    ref = f"{s.config.kiosk_id}-SELFTEST-{time.strftime('%Y%m%d%H%M%S')}"
    try:
        await printer.print(_test_page(s, ref, status))
    except DeviceFault as exc:
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
        try:
            await source.open()
            try:
                frame = await asyncio.wait_for(source.next_frame(), FRAME_TIMEOUT_S)
            finally:
                await source.close()
        except DeviceFault as exc:
            return failed(str(exc), CAMERA_FIX if exc.kind != "picamera2-missing" else str(exc))
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

        decoder = make_decoder(s.config.reader.decoder)
    text = f"{TEST_CARD} {s.config.kiosk_id}"
    card = make_test_card(text)
    started = time.perf_counter()
    try:
        texts = await asyncio.to_thread(decoder.decode, card)
    except DecoderUnavailable as exc:
        return failed(str(exc), "install what the message names, or set [hardware.reader] decoder")
    ms = (time.perf_counter() - started) * 1000
    if text not in texts:
        return failed(
            f"{decoder.name}: the test card was not read ({texts or 'nothing'})",
            'reinstall the kiosk\'s software (uv sync --locked), or set decoder = "zxing"',
        )
    return passed(f"{decoder.name}: test card read in {ms:.0f} ms")


# -- the panel -------------------------------------------------------------------------------

LEDS: Final = (("green", "ready"), ("amber", "insert_notes"), ("red", "out_of_service"))


async def check_leds(s: Session) -> Verdict:
    from drivers.panel import PanelState

    panel, pins = s.devices.panel, s.config.panel
    await panel.open()
    dark = []
    for colour, state in LEDS:
        panel.show(PanelState(state))
        lit = {k for k, on in panel.outputs().items() if on and k != "buzzer"}
        if lit != {colour}:
            dark.append(f"{colour} (GPIO {getattr(pins, 'led_' + colour)} reads {sorted(lit)})")
        elif s.interactive and not await s.prompt.ask(f"Is the {colour.upper()} light on?"):
            dark.append(f"{colour} (GPIO {getattr(pins, 'led_' + colour)})")
        elif not s.interactive:
            await asyncio.sleep(SHOW_S)
    if dark:
        return failed(
            f"did not light: {', '.join(dark)}",
            "check the LED and its wire from that GPIO (through its resistor) to ground",
        )
    how = "seen by the technician" if s.interactive else "set without error; nobody watched"
    return passed(f"green, amber and red lit in turn ({how})")


async def check_buzzer(s: Session) -> Verdict:
    panel = s.devices.panel
    for _ in range(3):
        panel.tick()
        await asyncio.sleep(panel.timing.beep_short + panel.timing.beep_gap + 0.1)
    if s.interactive and not await s.prompt.ask("Did you hear three short beeps?"):
        return failed(
            "not heard", f"check the buzzer and its transistor on GPIO {s.config.panel.buzzer}"
        )
    return passed("three beeps (heard)" if s.interactive else "three beeps sent; nobody listened")


async def _await_event(s: Session, among: set[PanelEvent]) -> PanelEvent | None:
    """The first of ``among`` within the press timeout (others are ignored), or None."""
    panel = s.devices.panel
    try:
        async with asyncio.timeout(s.press_timeout_s):
            while (got := await panel.next_event()) not in among:
                pass
    except TimeoutError:
        return None
    return got


async def _drain(s: Session) -> None:
    with contextlib.suppress(TimeoutError):
        while True:
            await asyncio.wait_for(s.devices.panel.next_event(), 0.05)


async def check_buttons(s: Session) -> Verdict:
    from drivers.panel import PanelEvent

    if not s.interactive:
        return skipped("not interactive (--no-buttons, or stdin is not a terminal)")
    panel, pins = s.devices.panel, s.config.panel
    await panel.open()
    await _drain(s)
    buttons = {PanelEvent.CONFIRM: ("GREEN", pins.confirm), PanelEvent.CANCEL: ("RED", pins.cancel)}
    for want, (colour, pin) in buttons.items():
        s.prompt.tell(f"Press the {colour} button (within {s.press_timeout_s:.0f} s)")
        got = await _await_event(s, set(buttons))
        if got is None:
            return failed(
                f"no press of {colour.lower()} in {s.press_timeout_s:.0f} s",
                f"check the button and its wire from GPIO {pin} to ground (pressed = closed)",
            )
        if got is not want:
            return failed(
                f"pressing {colour.lower()} read as the other button",
                f"the buttons are swapped: confirm goes to GPIO {pins.confirm}, cancel to "
                f"GPIO {pins.cancel}",
            )
    return passed("green (confirm) and red (cancel) read")


async def check_door(s: Session) -> Verdict:
    from drivers.panel import PanelEvent

    panel, pin = s.devices.panel, s.config.panel.door
    where = "open" if panel.door_open else "closed"
    if not s.interactive:
        return skipped(f"not interactive; the switch reads {where}")
    await panel.open()
    await _drain(s)
    steps = [("Open the door", PanelEvent.DOOR_OPEN), ("Close the door", PanelEvent.DOOR_CLOSED)]
    if panel.door_open:
        steps.insert(0, ("Close the door", PanelEvent.DOOR_CLOSED))
    for text, want in steps:
        s.prompt.tell(f"{text} (within {s.press_timeout_s:.0f} s)")
        if await _await_event(s, {want}) is None:
            return failed(
                f"{text.lower()}: not seen in {s.press_timeout_s:.0f} s (the switch read {where})",
                f"check the door switch and its wire from GPIO {pin} to ground",
            )
    return passed("opened and closed: the switch follows the door")


# -- the system ------------------------------------------------------------------------------


async def check_clock(s: Session) -> Verdict:
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        proc = await asyncio.create_subprocess_exec(
            *CLOCK_COMMAND, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except (FileNotFoundError, PermissionError):
        return skipped(f"{CLOCK_COMMAND[0]} not found here: the clock's sync cannot be read")
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return skipped(f"{CLOCK_COMMAND[0]} did not answer in 10 s")
    if proc.returncode != 0:
        why = (err.decode(errors="replace").strip().splitlines() or ["no reason"])[0]
        return skipped(f"{CLOCK_COMMAND[0]} cannot say ({why})")
    if out.decode().strip() == "yes":
        return passed(f"synchronised (NTP), {now}")
    return failed(
        f"not synchronised ({now} here)",
        "check the network and NTP (`timedatectl timesync-status`); providers refuse requests"
        " signed by a clock that is off",
    )


def _size(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GB"
    return f"{n / 1024**2:.0f} MB"


async def check_disk(s: Session) -> Verdict:
    import shutil

    usage = shutil.disk_usage(s.config.state_dir)
    share = usage.free / usage.total if usage.total else 0.0
    detail = (
        f"{_size(usage.free)} free of {_size(usage.total)} ({share:.0%}) on {s.config.state_dir}"
    )
    if usage.free < MIN_FREE_BYTES or share < MIN_FREE_FRACTION:
        return failed(
            detail,
            "make room: `sudo journalctl --vacuum-size=100M` trims the system's logs; never delete"
            f" anything in {s.config.state_dir} (the journal holds the money); if it fills again,"
            " move to a larger SD card",
        )
    return passed(detail)


def _provider_step(name: str) -> Step:
    async def run(s: Session) -> Verdict:
        from kiosk.provider_check import check

        ok, message = await asyncio.to_thread(check, s.config, s.secrets, name)
        if ok:
            return passed(message)
        return failed(message, f"check the network, then the [{name}] credentials and the clock")

    fix = f"check the network, then the [{name}] credentials (`kiosk provider check {name}`)"
    return Step(f"provider:{name}", run, fix, device=False, timeout_s=None)


def steps(config: Config) -> list[Step]:
    from kiosk.providers.registry import providers

    device = [
        Step("validator", check_validator, _validator_fix(config.validator.port)),
        Step("recycler", check_recycler, "power-cycle the validator; if it persists, replace it"),
        Step("printer", check_printer, PRINTER_FIX["error"][1]),
        Step("camera", check_camera, CAMERA_FIX),
        Step("decoder", check_decoder, "reinstall the kiosk's software (uv sync --locked)"),
        Step("leds", check_leds, "check the panel's wiring (README: The panel)", timeout_s=None),
        Step("buzzer", check_buzzer, "check the buzzer's wiring", timeout_s=None),
        Step("buttons", check_buttons, "check the buttons' wiring", timeout_s=None),
        Step("door", check_door, "check the door switch's wiring", timeout_s=None),
    ]
    system = [
        Step("clock", check_clock, "check the network and NTP", device=False),
        Step("disk", check_disk, f"check {config.state_dir} exists and is readable", device=False),
    ]
    names = [n for n, p in providers().items() if p.configured(config)]
    return [*device, *system, *(_provider_step(n) for n in names)]


def check_names(config: Config) -> list[str]:
    return [step.name for step in steps(config)]


def _skipped(name: str, skip: set[str]) -> bool:
    if name.startswith("provider:"):
        return bool({"providers", name, name.removeprefix("provider:")} & skip)
    return name in skip


async def run_step(s: Session, step: Step, skip: set[str]) -> Check:
    if _skipped(step.name, skip):
        return Check(step.name, None, "skipped (--skip)")
    if step.device and s.hw is None:
        return Check(step.name, None, "not checked: the devices could not be set up (see above)")
    try:
        async with asyncio.timeout(step.timeout_s):
            verdict = await step.run(s)
    except TimeoutError:
        return Check(step.name, False, f"no answer within {step.timeout_s:.0f} s", step.fix)
    except (DriverError, KioskError, OSError) as exc:
        log.debug("%s failed", step.name, exc_info=True)
        return Check(step.name, False, str(exc) or type(exc).__name__, step.fix)
    except Exception as exc:  # one check never stops the others, and never prints a traceback
        log.debug("%s failed", step.name, exc_info=True)
        detail = f"unexpected error ({type(exc).__name__}: {exc})"
        return Check(step.name, False, detail, f"{step.fix}; `kiosk -v selftest` shows more")
    return Check(step.name, verdict.ok, verdict.detail, verdict.fix)


async def run_checks(
    config: Config,
    secrets: Secrets,
    hw: Hardware | None,
    *,
    interactive: bool,
    press_timeout_s: float,
    skip: set[str],
    prompt: Prompt | None = None,
    report: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check in turn on ``hw`` (built by :func:`kiosk.hardware.build`; each check opens
    its device: the validator's open is its handshake). ``hw`` None: the devices could not be
    built, and only the system's checks run. ``report`` gets each check as it ends."""
    s = Session(config, secrets, hw, interactive, press_timeout_s, prompt or Terminal())
    results: list[Check] = []
    for step in steps(config):
        check = await run_step(s, step, skip)
        results.append(check)
        if report is not None:
            report(check)
    return results


# -- the command -----------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Register ``kiosk selftest`` on the CLI's subparsers."""
    p = sub.add_parser(
        "selftest",
        help="check every device in turn (the daemon stopped); one pass/fail line each",
    )
    p.add_argument(
        "--config", help="TOML config (default $KIOSK_CONFIG, else /etc/kiosk/kiosk.toml)"
    )
    p.add_argument(
        "--no-buttons", action="store_true", help="skip the checks that need a technician"
    )
    p.add_argument(
        "--press-timeout", type=float, default=20.0, metavar="S", help="seconds for each press"
    )
    p.add_argument("--skip", default="", metavar="NAME[,NAME]", help="checks to leave out")
    p.add_argument("--json", action="store_true", help="one JSON document with every check")
    p.set_defaults(fn=cmd_selftest)


def run_cli(config_path: Path) -> int:
    """The non-interactive self-test of the kiosk configured in ``config_path`` (after
    ``kiosk provision``): prints its lines, returns its exit status."""
    args = argparse.Namespace(
        config=str(config_path), no_buttons=True, press_timeout=20.0, skip="", json=False
    )
    return cmd_selftest(args)


def cmd_selftest(args: argparse.Namespace) -> int:
    from kiosk import config
    from kiosk.errors import ConfigError
    from kiosk.statelock import StateLock, StateLocked

    try:
        cfg = config.load(config.resolve_path(args.config))
        secrets = config.load_secrets(cfg.secrets_file)
    except ConfigError as exc:
        print(f"kiosk: configuration error: {exc}", file=sys.stderr)
        return 2
    skip = {name.strip() for name in str(args.skip or "").split(",") if name.strip()}
    known = {*check_names(cfg), "providers"}
    known |= {n.removeprefix("provider:") for n in known}
    if unknown := sorted(skip - known):
        print(
            f"kiosk: --skip: no check {', '.join(unknown)} (checks: {', '.join(sorted(known))})",
            file=sys.stderr,
        )
        return 2
    lock = StateLock(cfg.state_dir)
    try:
        lock.acquire()
    except StateLocked as exc:
        print(
            f"kiosk: the kiosk daemon is running ({exc.holder}): stop it first with `sudo "
            f"systemctl stop {SYSTEMD_UNIT}`, run the self-test, then `sudo systemctl start "
            f"{SYSTEMD_UNIT}`",
            file=sys.stderr,
        )
        return 2
    except KioskError as exc:
        print(
            f"kiosk: {exc} (run the self-test as the kiosk's user: sudo -u kiosk …)",
            file=sys.stderr,
        )
        return 2
    interactive = not args.no_buttons and sys.stdin.isatty()
    try:
        with _quiet_logs(getattr(args, "verbose", False)):
            results = asyncio.run(
                _selftest(cfg, secrets, interactive, float(args.press_timeout), skip, args.json)
            )
    finally:
        lock.release()
    failures = sum(c.ok is False for c in results)
    status = 1 if failures else 0
    if args.json:
        doc = {
            "kiosk": cfg.kiosk_id,
            "ok": not failures,
            "exit_status": status,
            "checks": [c.to_json() for c in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        counts = {word: sum(c.status == word for c in results) for word in ("PASS", "FAIL", "SKIP")}
        print(
            f"self-test of {cfg.kiosk_id}: {counts['PASS']} passed, {counts['FAIL']} failed, "
            f"{counts['SKIP']} skipped"
        )
    return status


async def _selftest(
    cfg: Config,
    secrets: Secrets,
    interactive: bool,
    press_timeout_s: float,
    skip: set[str],
    as_json: bool,
) -> list[Check]:
    from kiosk.hardware import build

    def show(check: Check) -> None:
        if not as_json:
            print(check.line(), flush=True)

    first: list[Check] = []
    hw: Hardware | None = None
    try:
        hw = await build(cfg)
    except Exception as exc:  # the system's checks still run
        log.debug("build failed", exc_info=True)
        first.append(
            Check(
                "hardware",
                False,
                f"cannot set up the devices: {exc}",
                "check [hardware] in the config (`kiosk config check`) and the panel's pins",
            )
        )
        show(first[0])
    try:
        rest = await run_checks(
            cfg,
            secrets,
            hw,
            interactive=interactive,
            press_timeout_s=press_timeout_s,
            skip=skip,
            report=show,
        )
    finally:
        if hw is not None:
            await hw.close()
    return [*first, *rest]


@contextlib.contextmanager
def _quiet_logs(verbose: bool) -> Iterator[None]:
    """The lines say what is wrong: the drivers' logs (and their tracebacks) only with -v or
    KIOSK_LOG_LEVEL."""
    if verbose or os.environ.get("KIOSK_LOG_LEVEL"):
        yield
        return
    loggers = [logging.getLogger(n) for n in ("drivers", "kiosk", "asyncio", "gpiozero")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
