"""The core of the eSSP driver: its state, its tables and the exchanges every part of it uses.

:class:`EsspCore` is what :class:`~drivers.essp.client.EsspValidator` is built on: the
constructor (wiring and options, documented on ``EsspValidator``), the link and its
:class:`~drivers.essp.protocol.HostProtocol`, the :class:`PollState` the poll task keeps
between polls, and the helpers that send a command and turn a refusal into the right error,
acknowledge events, track the level faults and declare the unit gone.

Siblings: :mod:`~drivers.essp.startup` (what ``open`` sends, and the power-up report),
:mod:`~drivers.essp.payout` (the SMART Payout side) and :mod:`~drivers.essp.client`
(``EsspValidator``: the BillValidator side and the poll task).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

from drivers.errors import CommandRefused, DeviceFault, DriverError, FrameError
from drivers.essp.codes import Command, Event, PayoutError, Response, UnitType
from drivers.essp.crypto import DEFAULT_FIXED_KEY
from drivers.essp.frames import PollEvent, Reply, Request, SetupInfo, parse_events
from drivers.essp.protocol import REPLY_TIMEOUT, TRIES, HostProtocol
from drivers.serialport import ESSP_LINE, LineSettings, Link
from drivers.validator.base import (
    Fault,
    FaultCleared,
    FaultKind,
    Note,
    PayoutResult,
    ValidatorEvent,
)

log = logging.getLogger("drivers.essp")  # one logger for the whole driver

MIN_PROTOCOL: Final = 6  # 4-byte values and country codes
MIN_POLL_GAP: Final = 0.2  # seconds between polls at the least (GA973 §7.4: 200..1000 ms)
MAX_POLL_GAP: Final = 1.0
MAX_AMOUNT: Final = 0xFFFFFFFF  # a value on the wire: 4 bytes LE (protocol >= 6)

LEVEL_FAULTS: Final = {
    Event.UNSAFE_JAM: (FaultKind.JAM, "unsafe jam"),
    Event.SAFE_JAM: (FaultKind.JAM, "safe jam"),
    Event.STACKER_FULL: (FaultKind.CASHBOX_FULL, "stacker full"),
    Event.CASHBOX_REMOVED: (FaultKind.CASHBOX_REMOVED, "cashbox removed"),
    Event.NOTE_PATH_OPEN: (FaultKind.FAILURE, "note path open"),
}
PAYOUT_ENDS: Final = {
    Event.DISPENSED: "",
    Event.JAMMED: "jammed",
    Event.HALTED: "halted",
    Event.TIMEOUT: "timeout",
}
_PAYOUT_ERRORS: Final = frozenset(e.value for e in PayoutError)


def payout_error(err: int) -> str:
    """The name of PAYOUT AMOUNT's F5 error byte (GA138: 1..4; kybarg's 0 as 1)."""
    if err == 0:
        err = PayoutError.NOT_ENOUGH_VALUE
    return PayoutError(err).name.lower() if err in _PAYOUT_ERRORS else f"error {err}"


_RESPONSES: Final = frozenset(r.value for r in Response)


@dataclass
class PayoutWait:
    """A :meth:`~drivers.essp.payout.SmartPayout.payout` waiting for the end of its payout."""

    requested: int
    done: asyncio.Future[PayoutResult]
    dispensed: int = 0
    error: bool = False


@dataclass
class PollState:
    """What the poll task knows between polls (reset by each open)."""

    escrow: Note | None = None
    stacking: bool = False
    stack: asyncio.Future[Note] | None = None
    host_reject: bool = False
    unacked: tuple[PollEvent, ...] = ()
    hold_ack: bool = False  # the unacked events wait: on_credit, a stray credit, recovery
    power_up: bool = False  # they are the power-up report, waiting for ack_power_up()
    stray: bool = False  # they are a credit no stack() asked for, waiting for ack_credit()
    last_poll: float = float("-inf")  # loop time of the last POLL / HOLD sent
    hold_refused: bool = False  # HOLD answered F2/F8: the note is left to the poll
    faults: frozenset[FaultKind] = frozenset()
    fraud: bool = False
    payout: PayoutWait | None = None
    empty: asyncio.Future[None] | None = None
    gone: bool = False
    problem: str = ""


class Restarted(DriverError):
    """The unit restarted under the driver (SLAVE RESET or KEY NOT SET while polling)."""


class EsspCore:
    """State and shared exchanges of :class:`~drivers.essp.client.EsspValidator`, whose
    docstring gives the parameters. Not used on its own."""

    def __init__(
        self,
        url: str,
        *,
        currency: str,
        line: LineSettings = ESSP_LINE,
        address: int = 0,
        encrypted: bool = True,
        poll_interval: float = 0.2,
        protocol_version: int = 8,
        reply_timeout: float = REPLY_TIMEOUT,
        tries: int = TRIES,
        fixed_key: int = DEFAULT_FIXED_KEY,
        payout: bool | None = None,
        stack_timeout: float = 30.0,
        payout_timeout: float = 120.0,
        name: str = "essp",
    ) -> None:
        if not MIN_POLL_GAP <= poll_interval <= MAX_POLL_GAP:
            raise ValueError("poll_interval must be in [0.2, 1] seconds (GA973 §7.4)")
        if protocol_version < MIN_PROTOCOL:
            raise ValueError(f"protocol_version must be >= {MIN_PROTOCOL}")
        self.url, self.currency, self.line, self.address = url, currency, line, address
        self.encrypted, self.poll_interval = encrypted, poll_interval
        self.protocol_version = protocol_version
        self.reply_timeout, self.tries, self.fixed_key = reply_timeout, tries, fixed_key
        self.stack_timeout, self.payout_timeout = stack_timeout, payout_timeout
        self.name = name
        self._payout_option = payout
        self.poll_command = Command.POLL_WITH_ACK  # POLL when the unit does not know it
        self.enabled = False  # as the host last set it (ENABLE / DISABLE)
        self.credit_seen_at = 0.0  # time.perf_counter() when the last CREDIT reply was read
        self.protocol = 0  # negotiated at open
        self.setup: SetupInfo | None = None
        self.serial_number: int | None = None
        self.is_payout = False
        self.incomplete_payout: PayoutResult | None = None
        self.channels: dict[int, Note] = {}
        self._link: Link | None = None
        self._proto: HostProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[ValidatorEvent] = asyncio.Queue()
        self._poll_lock = asyncio.Lock()
        self._payout_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._s = PollState()

    # -- exchanges -------------------------------------------------------------------------------

    async def _cmd(
        self, code: Command, params: bytes = b"", *, encrypt: bool | None = None
    ) -> Reply:
        reply = await self._proto_or_raise().command(Request(code, params), encrypt=encrypt)
        if not reply.ok:
            raise self._refusal(code, reply)
        return reply

    async def _ack(self) -> None:
        """EVENT ACK, only with POLL WITH ACK (a plain POLL gives each event once)."""
        if self.poll_command != Command.POLL_WITH_ACK:
            return
        reply = await self._proto_or_raise().command(Request(Command.EVENT_ACK))
        if not reply.ok and reply.status != Response.CANNOT_PROCESS:
            raise self._refusal(Command.EVENT_ACK, reply)

    async def _spaced(self, request: Request) -> Reply:
        """Send a poll (POLL, POLL WITH ACK, HOLD) at least MIN_POLL_GAP after the last one's
        reply came back: measured from the reply, not from our send, so that the unit sees the
        gap too when the previous frame was delayed on its way (the line, the kernel's buffers,
        a busy host)."""
        loop = asyncio.get_running_loop()
        wait = self._s.last_poll + MIN_POLL_GAP - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            return await self._proto_or_raise().command(request)
        finally:
            self._s.last_poll = loop.time()

    async def _poll_events(self) -> tuple[PollEvent, ...]:
        reply = await self._spaced(Request(self.poll_command))
        if reply.status == Response.UNKNOWN_COMMAND and self.poll_command == Command.POLL_WITH_ACK:
            log.warning("%s: POLL WITH ACK unknown (F2): polling with POLL", self.name)
            self.poll_command = Command.POLL
            reply = await self._spaced(Request(Command.POLL))
        if reply.status == Response.KEY_NOT_SET and self._task is not None:
            raise Restarted(f"{self.name}: the unit lost its keys: it restarted")
        if not reply.ok:
            raise self._refusal(self.poll_command, reply)
        smart = self.setup is not None and self.setup.unit_type in (
            UnitType.SMART_PAYOUT,
            UnitType.SMART_HOPPER,
        )
        return parse_events(reply.data, protocol=self.protocol, smart=smart or self.is_payout)

    def _refusal(self, code: Command, reply: Reply) -> DriverError:
        what = f"{self.name}: {code.name}"
        err = reply.data[0] if reply.data else None
        status = reply.status
        if status == Response.KEY_NOT_SET:
            return CommandRefused(
                f"{what}: KEY NOT SET: the unit wants encryption (encrypted=True), or it"
                " restarted: close() and open()"
            )
        if status == Response.CANNOT_PROCESS:
            if code == Command.PAYOUT_AMOUNT and err is not None:
                return CommandRefused(f"{what}: {payout_error(err)}")
            return CommandRefused(f"{what}: cannot be processed now (error {err})")
        if status == Response.SOFTWARE_ERROR:
            return DeviceFault(FaultKind.FAILURE.value, f"{what}: software error")
        if status in _RESPONSES:
            return CommandRefused(f"{what}: {Response(status).name.lower()}")
        return FrameError(f"{what}: unknown generic response {status:#04x}")

    @property
    def bad_frames(self) -> int:
        """Frames dropped on the link since it opened (bad CRC, bad header, cut short): each
        is retried as the protocol says; a count that keeps rising is a line sending garbage.
        Read-only, for the host's health watch (0 when closed)."""
        return self._proto._parser.bad_frames if self._proto is not None else 0

    def _proto_or_raise(self) -> HostProtocol:
        if self._proto is None:
            raise CommandRefused(f"{self.name}: not open")
        return self._proto

    async def _close_link(self) -> None:
        link, self._link, self._proto = self._link, None, None
        if link is not None:
            await link.close()

    # -- what the events say ---------------------------------------------------------------------

    def _track_faults(
        self, events: tuple[PollEvent, ...], fresh: tuple[PollEvent, ...] | None = None
    ) -> None:
        """Level faults from every poll; a fraud attempt once, when it is new (a unit repeats
        it until EVENT ACK: one fault, not one per poll)."""
        s = self._s
        current: dict[FaultKind, str] = {}
        for e in events:
            if e.code in LEVEL_FAULTS:
                kind, detail = LEVEL_FAULTS[e.code]
                current.setdefault(kind, detail)
        frauds = [e for e in (events if fresh is None else fresh) if e.code == Event.FRAUD_ATTEMPT]
        for kind, detail in current.items():
            if kind not in s.faults:
                log.warning("%s: %s", self.name, detail)
                self._emit(Fault(kind, detail))
        if frauds and not s.fraud:
            e = frauds[0]
            detail = (
                f"fraud attempt on channel {e.channel}"
                if e.channel is not None
                else f"fraud attempt ({e.total(self.currency)} {self.currency})"
            )
            log.warning("%s: %s", self.name, detail)
            self._emit(Fault(FaultKind.FRAUD, detail))
        still_fraud = any(e.code == Event.FRAUD_ATTEMPT for e in events)
        if (s.faults or s.fraud) and not current and not still_fraud:
            log.info("%s: faults cleared", self.name)
            self._emit(FaultCleared())
        if (current or frauds) and s.stack is not None and not s.stack.done():
            kind = FaultKind.FRAUD if frauds else next(iter(current))
            s.escrow = None
            s.stack.set_exception(DeviceFault(kind.value, f"{self.name}: note not stacked"))
        s.faults, s.fraud = frozenset(current), still_fraud or (s.fraud and bool(current))

    def _incomplete(self, e: PollEvent, wait: PayoutWait | None) -> PayoutResult:
        parts = [i for i in e.incomplete if i.country == self.currency]
        dispensed = sum(i.dispensed for i in parts)
        requested = sum(i.requested for i in parts) if wait is None else wait.requested
        return PayoutResult(requested, dispensed, "incomplete")

    def _note(self, channel: int | None) -> Note:
        note = self.channels.get(channel or 0)
        return note if note is not None else Note(channel or 0, 0, self.currency)

    def _n_channels(self) -> int:
        return len(self.setup.channels) if self.setup is not None else 16

    def _emit(self, event: ValidatorEvent) -> None:
        self._events.put_nowait(event)

    def _lost(self, detail: str) -> None:
        s = self._s
        if s.gone:
            return
        s.gone = True
        log.error("%s: %s: polling stopped", self.name, detail)
        self._emit(Fault(FaultKind.DISCONNECTED, detail))
        self._fail_waiters(DeviceFault(FaultKind.DISCONNECTED.value, detail))

    def _fail_waiters(self, exc: DeviceFault) -> None:
        s = self._s
        for fut in (s.stack, s.payout.done if s.payout else None, s.empty):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
