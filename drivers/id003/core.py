"""The core of the ID-003 driver: its state, the exchanges and the status tracker.

:class:`Id003Core` is what :class:`~drivers.id003.client.Id003Validator` is built on: the
constructor (wiring and options, documented on ``Id003Validator``), one request/answer
exchange with its retries and refusals (:meth:`Id003Core._request`), and the state tracker
every status answer passes through (:meth:`Id003Core._track`): faults and their clearing,
restarts (POWER UP while running), PAUSE.

Siblings: :mod:`~drivers.id003.startup` (power-up report, initialisation, the escrow table),
:mod:`~drivers.id003.stacking` (following STACK-1 and RETURN) and
:mod:`~drivers.id003.client` (``Id003Validator``: the BillValidator methods and the poll task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Final

from drivers.errors import CommandRefused, DeviceFault, FrameError
from drivers.id003.codes import (
    FAULTS,
    OPERATIONS,
    POWER_UPS,
    STATUS_ANSWERS,
    Command,
    Status,
    failure_name,
)
from drivers.id003.frames import Frame
from drivers.id003.protocol import Id003Protocol
from drivers.serialport import ID003_LINE, LineSettings, Link
from drivers.validator.base import Fault, FaultCleared, FaultKind, Note, ValidatorEvent

log = logging.getLogger("drivers.id003.client")  # one logger for the whole driver

_FAULT_KINDS: Final[Mapping[Status, tuple[FaultKind, str]]] = {
    Status.STACKER_FULL: (FaultKind.CASHBOX_FULL, "stacker full"),
    Status.STACKER_OPEN: (FaultKind.CASHBOX_REMOVED, "stacker open"),
    Status.JAM_IN_ACCEPTOR: (FaultKind.JAM, "jam in acceptor"),
    Status.JAM_IN_STACKER: (FaultKind.JAM, "jam in stacker"),
    Status.CHEATED: (FaultKind.FRAUD, "cheated"),
    Status.FAILURE: (FaultKind.FAILURE, "failure"),
}
IDLE: Final = frozenset({Status.IDLING, Status.DISABLE})
IN_ESCROW: Final = frozenset({Status.ESCROW, Status.HOLDING})
_REFUSALS: Final = frozenset({Status.COMMUNICATION_ERROR, Status.INVALID_COMMAND})
#: Seconds between status requests while waiting on the acceptor (initialising, stacking…).
BUSY_POLL: Final = 0.002  # between status requests while a note moves (idle: poll_interval)


def _answers(cmd: Command) -> Callable[[Frame], bool]:
    """Which frames can answer ``cmd`` (others are late answers to an earlier request)."""

    def accept(frame: Frame) -> bool:
        if frame.cmd in _REFUSALS:
            return True
        if cmd is Command.STATUS_REQUEST:
            return frame.cmd in STATUS_ANSWERS
        if cmd in OPERATIONS:
            return frame.cmd == Status.ACK
        return frame.cmd == cmd  # settings echo, setting reads, version, currency assign

    return accept


class Id003Core:
    """State, exchanges and status tracking of :class:`~drivers.id003.client.Id003Validator`,
    whose docstring gives the parameters. Not used on its own."""

    def __init__(
        self,
        url: str,
        *,
        currency: str,
        escrow_table: Mapping[int, int] | None = None,
        minor_digits: int = 2,
        line: LineSettings = ID003_LINE,
        poll_interval: float = 0.2,
        reply_timeout: float = 1.0,
        retries: int = 2,
        init_timeout: float = 10.0,
        stack_timeout: float = 10.0,
        hold_interval: float | None = None,
        hold_data: bytes = b"",
        security: bytes = b"\x00\x00",
        country_code: int | None = None,
        name: str = "id003",
    ) -> None:
        if len(security) != 2:
            raise ValueError("security is two bytes (d1 d2)")
        self.name, self.url, self.line, self.currency = name, url, line, currency
        self.minor_digits = minor_digits
        self.poll_interval, self.reply_timeout, self.retries = poll_interval, reply_timeout, retries
        self._step = min(poll_interval, BUSY_POLL)
        self.init_timeout, self.stack_timeout = init_timeout, stack_timeout
        self.hold_interval, self.hold_data = hold_interval, bytes(hold_data)
        self.security = bytes(security)
        self.country_code = country_code
        self.credit_seen_at = 0.0  # time.perf_counter() when the last VEND VALID was read
        self._configured: dict[int, int] = dict(escrow_table or {})
        self._table: dict[int, int] = dict(self._configured)
        self._link: Link | None = None
        self._proto: Id003Protocol | None = None
        self._lock = asyncio.Lock()
        self._events: asyncio.Queue[ValidatorEvent] = asyncio.Queue()
        self._poller: asyncio.Task[None] | None = None
        self._running = False
        self._last: tuple[Status, bytes] | None = None
        self._fault: FaultKind | None = None
        self._escrow: Note | None = None
        self._refused_code: int | None = None  # an escrow code not in the table, being returned
        self._foreign: dict[int, int] = {}  # escrow code -> country code of another currency
        self._credit: Note | None = None  # a VEND VALID nobody stacked, waiting for ack_credit
        self._gone = False  # the port vanished: polling stopped until close() and open()
        self._pending_ack = False
        self._needs_init = False
        self._enabled = False
        self._accept: frozenset[int] | None = None
        self._last_hold = 0.0
        self._poll_error: str | None = None

    # -- state tracking --------------------------------------------------------------------------

    def _track(self, frame: Frame) -> Status | None:
        """Every status answer passes here: faults, their clearing, restarts, pauses."""
        try:
            status = Status(frame.cmd)
        except ValueError:
            log.warning("%s: unknown status 0x%02X %s", self.name, frame.cmd, frame.data.hex())
            return None
        prev = self._last[0] if self._last is not None else None
        self._last = (status, frame.data)
        if status is not prev:
            log.debug("%s: %s %s", self.name, status.name, frame.data.hex())
        if status in FAULTS:
            kind, what = _FAULT_KINDS[status]
            self._set_fault(kind, self._fault_detail(status, frame.data, what))
        elif status in IDLE or self._fault is FaultKind.DISCONNECTED:
            self._clear_fault()
        if status is Status.PAUSE and prev is not Status.PAUSE:
            log.warning("%s: PAUSE: a second note is being pushed in", self.name)
        if status in POWER_UPS:
            if self._running and prev not in POWER_UPS:
                log.warning("%s: the acceptor restarted (%s)", self.name, status.name)
            self._pending_ack = False
            self._needs_init = True
        return status

    @staticmethod
    def _fault_detail(status: Status, data: bytes, what: str) -> str:
        if status is Status.FAILURE and data:
            return f"{what} 0x{data[0]:02X} {failure_name(data[0])}"
        return what

    def _device_fault(self, status: Status, data: bytes, doing: str) -> DeviceFault:
        kind, what = _FAULT_KINDS[status]
        detail = self._fault_detail(status, data, what)
        return DeviceFault(kind.value, f"{self.name}: {doing}: {detail}")

    def _set_fault(self, kind: FaultKind, detail: str) -> None:
        if self._fault is kind:
            return
        self._fault = kind
        log.warning("%s: fault %s (%s)", self.name, kind.value, detail)
        self._emit(Fault(kind, detail))

    def _clear_fault(self) -> None:
        if self._fault is None:
            return
        log.info("%s: %s cleared", self.name, self._fault.value)
        self._fault = None
        self._emit(FaultCleared())

    def _emit(self, event: ValidatorEvent) -> None:
        self._events.put_nowait(event)

    # -- exchanges -------------------------------------------------------------------------------

    def _require_open(self) -> Id003Protocol:
        if self._gone:
            raise DeviceFault(
                FaultKind.DISCONNECTED.value,
                f"{self.name}: {self.url} was lost: close() and open() it again",
            )
        if self._proto is None:
            raise DeviceFault(
                FaultKind.DISCONNECTED.value, f"{self.name}: {self.url} is not open: call open()"
            )
        return self._proto

    @property
    def bad_frames(self) -> int:
        """Answers dropped on the link since it opened for a bad CRC: each is retried as the
        protocol says; a count that keeps rising is a line sending garbage. Read-only, for the
        host's health watch (0 when closed)."""
        return self._proto.parser.crc_errors if self._proto is not None else 0

    async def _send(self, frame: Frame) -> None:
        """A frame the acceptor does not answer (ACK); a vanished port → ``DeviceFault``."""
        proto = self._require_open()
        try:
            await proto.send(frame)
        except OSError as exc:  # PortError included: the adapter was unplugged
            raise self._port_gone(exc) from exc

    async def _request(self, cmd: Command, data: bytes = b"") -> Frame:
        """Send ``cmd`` and return its answer. No answer after ``retries`` repeats → the
        acceptor is disconnected (``DeviceFault``, polling goes on); a port that vanished →
        ``DeviceFault`` and polling stops (:meth:`_port_gone`); COMMUNICATION ERROR or INVALID
        COMMAND → sent once more, then ``FrameError`` / ``CommandRefused``."""
        proto = self._require_open()
        accept = _answers(cmd)
        silent = refused = 0
        while True:
            try:
                answer = await proto.request(Frame(cmd, data), self.reply_timeout, accept)
            except OSError as exc:  # PortError included: the adapter was unplugged
                raise self._port_gone(exc) from exc
            if answer is None:
                silent += 1
                if silent > self.retries:
                    self._lost()
                    raise DeviceFault(
                        FaultKind.DISCONNECTED.value,
                        f"{self.name}: no answer to {cmd.name} on {self.url} after {silent}"
                        f" tries of {self.reply_timeout}s: check power and cable",
                    )
                continue
            if answer.cmd in _REFUSALS:
                refused += 1
                if refused < 2:
                    continue
                if answer.cmd == Status.COMMUNICATION_ERROR:
                    raise FrameError(
                        f"{self.name}: the acceptor got {cmd.name} corrupted twice"
                        f" (COMMUNICATION ERROR): check the cable and line settings ({self.line})"
                    )
                raise CommandRefused(
                    f"{self.name}: the acceptor refused {cmd.name} (INVALID COMMAND)"
                    f" in status {self._last[0].name if self._last else '?'}"
                )
            return answer

    async def _status(self) -> tuple[Status | None, bytes]:
        answer = await self._request(Command.STATUS_REQUEST)
        return self._track(answer), answer.data

    async def _set(self, cmd: Command, data: bytes) -> None:
        answer = await self._request(cmd, data)
        if answer.data != data:
            raise FrameError(
                f"{self.name}: {cmd.name} echoed {answer.data.hex(' ')!r}, sent {data.hex(' ')!r}"
            )

    def _lost(self) -> None:
        """The acceptor is silent (power, cable): reported once; polling goes on, and the
        next answer clears it."""
        if self._fault is FaultKind.DISCONNECTED or not self._running:
            return
        self._fault = FaultKind.DISCONNECTED
        log.error("%s: no answer from the acceptor on %s", self.name, self.url)
        self._emit(Fault(FaultKind.DISCONNECTED, f"no answer on {self.url}"))

    def _port_gone(self, exc: OSError) -> DeviceFault:
        """The port itself vanished (adapter unplugged, pty hung up): ``Fault(disconnected)``
        at once, polling stops, every method raises ``DeviceFault`` until close() and open()."""
        detail = f"{self.url} lost ({exc})"
        if not self._gone:
            self._gone = True
            log.error("%s: %s: polling stopped", self.name, detail)
            if self._running:
                self._fault = FaultKind.DISCONNECTED
                self._emit(Fault(FaultKind.DISCONNECTED, detail))
        return DeviceFault(FaultKind.DISCONNECTED.value, f"{self.name}: {detail}")

    async def _close_link(self) -> None:
        link, self._link, self._proto = self._link, None, None
        if link is not None:
            with contextlib.suppress(Exception):  # a lost port may fail to close: it is gone
                await link.close()
