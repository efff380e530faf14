"""A control channel to the simulated hardware, so another process can play the customer and
the technician (the demo, end-to-end tests, ``kiosk sim``).

The daemon under ``--simulate`` builds a :class:`SimRig` and runs :func:`serve_control` on its
own event loop; a test or the demo talks to it with :class:`SimControl`.

Protocol: a Unix stream socket; one JSON object per line in, one JSON object per line out.
Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; a malformed line gets
an error reply and the connection (and the server) carry on.

==============================================  =================================================
request                                         effect → extra reply fields
==============================================  =================================================
``{"cmd":"ping"}``                              nothing
``{"cmd":"insert","value":10000}``              a note of that value (minor units) → ``event``
``{"cmd":"insert_fake"}``                       a fake note → ``event`` (NoteRejected "fake")
``{"cmd":"fault","kind":"jam"}``                validator fault (``FaultKind``) → ``event``
``{"cmd":"clear_fault"}``                       fault cleared → ``event`` (null if none)
``{"cmd":"empty_cashbox"}``                     technician empties it → ``cashbox`` it held
``{"cmd":"press","button":"confirm"}``          button pin low, then high (``"hold"``: s between);
                                                ``"service_key"``: the technician's key turned
``{"cmd":"door","open":true}``                  door switch released (true) or closed (false)
``{"cmd":"paper","state":"near_end"}``          printer paper ``ok`` / ``near_end`` / ``out``
``{"cmd":"cover","open":true}``                 printer cover open or closed
``{"cmd":"online","online":false}``             printer offline or back online
``{"cmd":"show","path":"/abs/code.png"}``       image copied into the camera dir → ``frame``
``{"cmd":"hide"}``                              a blank frame (the code left the camera's view)
``{"cmd":"state"}``                             ``validator``, ``printer``, ``panel``, ...
==============================================  =================================================

Events are ``{"type": "NoteEscrowed", "note": {"channel":5,"value":10000,"currency":"EUR"}}``,
``{"type": "NoteRejected", "reason": "fake"}``, ``{"type": "Fault", "kind": "jam", ...}``...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import shutil
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, Union

from gpiozero.pins.mock import MockFactory

from drivers.errors import CommandRefused, DriverError, PortError
from drivers.panel import DEFAULT_PINS, DEFAULT_TIMING, Panel, PanelPins, PanelTiming
from drivers.printer.base import PaperState
from drivers.printer.sim import SimPrinter
from drivers.reader.replay import IMAGE_SUFFIXES, ReplayReader
from drivers.validator.base import FaultKind, ValidatorEvent
from drivers.validator.sim import DEFAULT_CHANNELS, SimValidator, note_to_json

log = logging.getLogger(__name__)

_LINE_LIMIT: Final = 64 * 1024


class ScriptedValidator(Protocol):
    """What the control channel asks of a simulated validator: the interface-level
    :class:`SimValidator`, or a wire-level simulator behind an adapter (``drivers.sim.wire``).
    ``insert``/``insert_fake``/``fault``/``clear_fault`` return the event the device raised
    when the simulator knows it at once, else ``None`` (the driver will see it on the wire)."""

    def insert(self, value: int) -> ValidatorEvent | None: ...

    def insert_fake(self) -> ValidatorEvent | None: ...

    def fault(self, kind: FaultKind, detail: str = "") -> ValidatorEvent | None: ...

    def clear_fault(self) -> ValidatorEvent | None: ...

    def empty_cashbox(self) -> dict[int, int]: ...

    def state(self) -> dict[str, Any]: ...


class ScriptedPrinter(Protocol):
    """What the control channel asks of a simulated printer: the interface-level
    :class:`SimPrinter` or the ESC/POS simulator (``drivers.escpos.sim``)."""

    def set_paper(self, paper: PaperState) -> None: ...

    def set_cover_open(self, cover_open: bool) -> None: ...

    def set_online(self, online: bool) -> None: ...

    def state(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ValidatorRig:
    """A validator simulator alone (``kiosk sim validator``): only the validator commands."""

    validator: ScriptedValidator

    def state(self) -> dict[str, Any]:
        return {"validator": self.validator.state()}


@dataclass(frozen=True)
class PrinterRig:
    """A printer simulator alone (``kiosk sim printer``): only the printer commands."""

    printer: ScriptedPrinter

    def state(self) -> dict[str, Any]:
        return {"printer": self.printer.state()}


@dataclass(frozen=True)
class SimRig:
    """The simulated devices of one kiosk, and the camera directory the reader watches.

    Build one with :meth:`SimRig.build`; hand ``validator``, ``printer``, ``reader`` and
    ``panel`` to the kiosk, and the rig to :func:`serve_control`.
    """

    validator: ScriptedValidator
    printer: ScriptedPrinter
    replay_dir: Path
    panel: Panel
    factory: Any  # gpiozero MockFactory the panel's pins come from
    reader: ReplayReader

    @classmethod
    def build(
        cls,
        base_dir: Path,
        *,
        currency: str = "EUR",
        channels: Mapping[int, int] = DEFAULT_CHANNELS,
        escrow_timeout: float = 30.0,
        columns: int = 32,
        pins: PanelPins = DEFAULT_PINS,
        timing: PanelTiming = DEFAULT_TIMING,
        poll_interval: float = 0.1,
        hold: float = 3.0,
    ) -> SimRig:
        """A rig under ``base_dir``: ``validator.json`` (the validator's non-volatile memory),
        ``receipts/`` (printer output), ``camera/`` (frames for the reader). The door starts
        closed. A second build on the same ``base_dir`` finds the validator's memory again."""
        base_dir.mkdir(parents=True, exist_ok=True)
        replay_dir = base_dir / "camera"
        replay_dir.mkdir(exist_ok=True)
        factory = MockFactory()
        panel = Panel(pins, pin_factory=factory, timing=timing)
        factory.pin(pins.door).drive_low()  # door closed
        return cls(
            validator=SimValidator(
                currency=currency,
                channels=channels,
                state_file=base_dir / "validator.json",
                escrow_timeout=escrow_timeout,
            ),
            printer=SimPrinter(base_dir / "receipts", columns=columns),
            replay_dir=replay_dir,
            panel=panel,
            factory=factory,
            reader=ReplayReader(replay_dir, poll_interval=poll_interval, hold=hold),
        )

    def close(self) -> None:
        """Release the panel's devices and the mock pins."""
        self.panel.close()
        self.factory.reset()

    def state(self) -> dict[str, Any]:
        panel = self.panel
        return {
            "validator": self.validator.state(),
            "printer": self.printer.state(),
            "panel": {
                "state": None if panel.state is None else panel.state.value,
                "lights": panel.lights(),
                "outputs": panel.outputs(),
                "door_open": panel.door_open,
            },
            "replay_dir": str(self.replay_dir),
        }


def event_to_json(event: ValidatorEvent | None) -> dict[str, Any] | None:
    """``{"type": <class name>, <fields>}``; notes as dicts, enums as their values."""
    if event is None:
        return None
    out: dict[str, Any] = {"type": type(event).__name__}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        out[field.name] = note_to_json(value) if field.name == "note" else value
    return out


# -- server ------------------------------------------------------------------------------------


class _BadRequest(ValueError):
    pass


def _arg(req: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in req:
        raise _BadRequest(f"missing {key!r}")
    value = req[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _BadRequest(f"{key!r} must be {kind.__name__}, got {value!r}")
    return value


def _choice(req: Mapping[str, Any], key: str, choices: list[str]) -> str:
    value: str = _arg(req, key, str)
    if value not in choices:
        raise _BadRequest(f"{key!r} must be one of {', '.join(choices)}, got {value!r}")
    return value


Rig = Union["SimRig", ValidatorRig, PrinterRig]
_Handler = Callable[[Any, Mapping[str, Any]], Awaitable[dict[str, Any]]]
_PRINTER_COMMANDS: Final = frozenset(
    {"ping", "paper", "cover", "online", "paper_runs_out", "state"}
)
_VALIDATOR_COMMANDS: Final = frozenset(
    {
        "ping",
        "insert",
        "insert_fake",
        "fault",
        "clear_fault",
        "empty_cashbox",
        "state",
        "power",
        "payout_stop_after",
    }
)
_frame_seq = itertools.count()


async def _ping(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    return {}


async def _insert(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    return {"event": event_to_json(rig.validator.insert(_arg(req, "value", int)))}


async def _insert_fake(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    return {"event": event_to_json(rig.validator.insert_fake())}


async def _fault(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    kind = FaultKind(_choice(req, "kind", [k.value for k in FaultKind]))
    detail = req.get("detail", "")
    return {"event": event_to_json(rig.validator.fault(kind, str(detail)))}


async def _clear_fault(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    return {"event": event_to_json(rig.validator.clear_fault())}


async def _empty_cashbox(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    held = rig.validator.empty_cashbox()
    return {"cashbox": {str(v): n for v, n in sorted(held.items())}}


async def _press(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    button = _choice(req, "button", ["confirm", "cancel", "service_key"])
    hold = req.get("hold", 0)
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 <= hold <= 10:
        raise _BadRequest(f"'hold' must be seconds between 0 and 10, got {hold!r}")
    pins = rig.panel.pins
    pin = rig.factory.pin(getattr(pins, button))
    pin.drive_low()
    await asyncio.sleep(hold)
    pin.drive_high()
    return {}


async def _door(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    pin = rig.factory.pin(rig.panel.pins.door)
    if _arg(req, "open", bool):
        pin.drive_high()
    else:
        pin.drive_low()
    return {"door_open": rig.panel.door_open}


async def _paper(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    rig.printer.set_paper(PaperState(_choice(req, "state", [p.value for p in PaperState])))
    return {"printer": rig.printer.state()}


async def _cover(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    rig.printer.set_cover_open(_arg(req, "open", bool))
    return {"printer": rig.printer.state()}


async def _online(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    rig.printer.set_online(_arg(req, "online", bool))
    return {"printer": rig.printer.state()}


def _fresh_frame_path(replay_dir: Path, suffix: str) -> Path:
    return replay_dir / f"frame-{time.time_ns():020d}-{next(_frame_seq):06d}{suffix}"


def _place_frame(replay_dir: Path, write: Callable[[Path], None], suffix: str) -> Path:
    """Write a frame under a hidden temp name, then rename it into view."""
    final = _fresh_frame_path(replay_dir, suffix)
    tmp = replay_dir / f".{final.name}.tmp"
    write(tmp)
    tmp.replace(final)
    return final


async def _show(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    src = Path(_arg(req, "path", str))
    if not src.is_absolute():
        raise _BadRequest(f"'path' must be absolute, got {str(src)!r}")
    suffix = src.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise _BadRequest(f"'path' must be one of {', '.join(sorted(IMAGE_SUFFIXES))}")

    def copy(dst: Path) -> None:
        if not src.is_file():
            raise _BadRequest(f"no such file: {src}")
        shutil.copyfile(src, dst)

    frame = await asyncio.to_thread(_place_frame, rig.replay_dir, copy, suffix)
    return {"frame": str(frame)}


async def _hide(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    def blank(dst: Path) -> None:
        from PIL import Image

        Image.new("L", (64, 64), 255).save(dst, format="PNG")

    frame = await asyncio.to_thread(_place_frame, rig.replay_dir, blank, ".png")
    return {"frame": str(frame)}


async def _state(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    return rig.state()


async def _payout_stop_after(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    """The recycler's next payout stops after ``notes`` notes (an incomplete payout)."""
    notes = _arg(req, "notes", int)
    stop = getattr(rig.validator, "payout_stop_after", None)
    if stop is None:
        raise _BadRequest("this simulated validator does not pay out")
    stop(notes)
    return {"stop_after": notes}


async def _paper_runs_out(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    """The paper runs out after ``lines`` more lines (ESC/POS simulator): mid-receipt."""
    lines = _arg(req, "lines", int)
    runs_out = getattr(rig.printer, "run_out_of_paper_after", None)
    if runs_out is None:
        raise _BadRequest("this simulated printer cannot run out mid-receipt")
    runs_out(lines=lines)
    return {"printer": rig.printer.state()}


async def _power(rig: SimRig, req: Mapping[str, Any]) -> dict[str, Any]:
    """A power cut of the validator alone (wire-level simulators): ``{"on": false|true}``."""
    on = _arg(req, "on", bool)
    switch = getattr(rig.validator, "power_on" if on else "power_cut", None)
    if switch is None:
        raise _BadRequest("this simulated validator has no power switch")
    switch()
    return {"powered": on}


COMMANDS: Final[dict[str, _Handler]] = {
    "ping": _ping,
    "insert": _insert,
    "insert_fake": _insert_fake,
    "fault": _fault,
    "clear_fault": _clear_fault,
    "empty_cashbox": _empty_cashbox,
    "press": _press,
    "door": _door,
    "paper": _paper,
    "cover": _cover,
    "online": _online,
    "show": _show,
    "hide": _hide,
    "state": _state,
    "power": _power,
    "payout_stop_after": _payout_stop_after,
    "paper_runs_out": _paper_runs_out,
}


async def handle_request(rig: Rig, line: bytes) -> dict[str, Any]:
    """One request line → its reply. Never raises (except cancellation)."""
    try:
        req = json.loads(line)
    except ValueError as exc:
        return {"ok": False, "error": f"not a JSON line: {exc}"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "a request is a JSON object"}
    cmd = req.get("cmd")
    handler = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    allowed = (
        _VALIDATOR_COMMANDS
        if isinstance(rig, ValidatorRig)
        else _PRINTER_COMMANDS
        if isinstance(rig, PrinterRig)
        else frozenset(COMMANDS)
    )
    if handler is None or cmd not in allowed:
        known = allowed
        return {"ok": False, "error": f"unknown cmd {cmd!r}; known: {', '.join(sorted(known))}"}
    try:
        extra = await handler(rig, req)
    except (_BadRequest, DriverError) as exc:
        return {"ok": False, "error": f"{cmd}: {exc}"}
    except Exception as exc:
        log.exception("sim control: %s failed", cmd)
        return {"ok": False, "error": f"{cmd}: {type(exc).__name__}: {exc}"}
    return {"ok": True, **extra}


async def _serve_client(
    rig: Rig, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than the limit: answer, then drop the connection
                writer.write(b'{"ok": false, "error": "line too long"}\n')
                await writer.drain()
                break
            if not line:
                break
            if not line.strip():
                continue
            reply = await handle_request(rig, line)
            try:
                text = json.dumps(reply)
            except (TypeError, ValueError) as exc:  # a reply that is not JSON: say so
                text = json.dumps({"ok": False, "error": f"reply not serialisable: {exc}"})
            writer.write(text.encode() + b"\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _clear_socket_path(socket_path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(socket_path.lstat().st_mode):
            raise PortError(f"{socket_path} exists and is not a socket: remove it or pick another")
        socket_path.unlink()
    socket_path.parent.mkdir(parents=True, exist_ok=True)


async def serve_control(rig: Rig, socket_path: Path) -> asyncio.Server:
    """Listen on ``socket_path`` (a stale socket there is replaced). Close the returned server
    (``server.close(); await server.wait_closed()``) to stop."""
    _clear_socket_path(socket_path)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_client(rig, reader, writer)

    return await asyncio.start_unix_server(client, path=socket_path, limit=_LINE_LIMIT)


# -- client ------------------------------------------------------------------------------------


class SimControl:
    """A blocking client of :func:`serve_control`, for tests and the demo in another process.

    Each call opens a connection, sends one line and waits ``timeout`` seconds for the reply.
    Raises ``PortError`` when the server cannot be reached or does not answer, and
    ``CommandRefused`` when it answers ``ok: false`` (unless ``check=False``).

    Do not call it from the thread running the server's loop: use ``asyncio.to_thread``.
    """

    def __init__(self, socket_path: Path | str, *, timeout: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def call(self, cmd: str, /, *, check: bool = True, **args: Any) -> dict[str, Any]:
        request = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
        reply = self._exchange(request)
        try:
            data = json.loads(reply)
        except ValueError as exc:
            raise PortError(f"sim control {self.socket_path}: bad reply {reply!r}") from exc
        if not isinstance(data, dict):
            raise PortError(f"sim control {self.socket_path}: bad reply {reply!r}")
        if check and not data.get("ok"):
            raise CommandRefused(f"sim control: {data.get('error', 'refused')}")
        return data

    def _exchange(self, request: bytes) -> bytes:
        where = f"sim control {self.socket_path}"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(request)
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise PortError(f"{where}: connection closed before the reply")
                    buf += chunk
                return buf
        except TimeoutError as exc:
            raise PortError(f"{where}: no reply within {self.timeout} s") from exc
        except PortError:
            raise
        except OSError as exc:
            raise PortError(f"{where}: {exc} (is the simulator running?)") from exc

    def ping(self) -> dict[str, Any]:
        return self.call("ping")

    def wait_ready(self, timeout: float = 10.0, interval: float = 0.05) -> None:
        """Wait until the server answers ``ping`` (e.g. after starting the daemon)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ping()
                return
            except PortError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(interval)

    # -- the customer ---------------------------------------------------------------------------

    def insert(self, value: int) -> dict[str, Any]:
        return self.call("insert", value=value)

    def insert_fake(self) -> dict[str, Any]:
        return self.call("insert_fake")

    def press(self, button: str, hold: float = 0) -> dict[str, Any]:
        return self.call("press", button=button, hold=hold)

    def show(self, path: Path | str) -> dict[str, Any]:
        return self.call("show", path=str(Path(path).resolve()))

    def hide(self) -> dict[str, Any]:
        return self.call("hide")

    # -- the technician -------------------------------------------------------------------------

    def fault(self, kind: str, detail: str = "") -> dict[str, Any]:
        return self.call("fault", kind=kind, detail=detail)

    def clear_fault(self) -> dict[str, Any]:
        return self.call("clear_fault")

    def empty_cashbox(self) -> dict[str, Any]:
        return self.call("empty_cashbox")

    def door(self, open: bool) -> dict[str, Any]:
        return self.call("door", open=open)

    def paper(self, state: str) -> dict[str, Any]:
        return self.call("paper", state=state)

    def cover(self, open: bool) -> dict[str, Any]:
        return self.call("cover", open=open)

    def online(self, online: bool) -> dict[str, Any]:
        return self.call("online", online=online)

    def state(self) -> dict[str, Any]:
        return self.call("state")
