"""JCM ID-003 bill validator driver (UBA, iVIZION, iPRO…) behind the ``BillValidator`` interface.

Wiring: the acceptor's RS-232/TTL port at 9600 8E1 (``ID003_LINE``), by URL
(``/dev/kiosk-validator``, ``spy:///dev/ttyUSB0``…). The host polls: one STATUS REQUEST every
``poll_interval`` seconds from a background task; every answer goes through one state tracker
that turns status changes into events. Commands and polls share one lock: one exchange is on
the wire at a time.

Events
------
- ESCROW (0x13 + escrow code) → ``NoteEscrowed(Note(channel=escrow code, value from the escrow
  table))``. The note stays in escrow until :meth:`stack` or :meth:`return_note` (with
  ``hold_interval`` set, HOLD 0x44 is re-sent that often to keep it there). An escrow code that
  is not in the table is returned at once and reported as ``NoteRejected("unknown_denomination")``.
- REJECTING (0x17 + reason) → ``NoteRejected(reason name)``: ``inhibit`` for 0x79, etc.
- The acceptor giving an escrowed note back by itself → ``NoteReturned``. A return the host asked
  for (:meth:`return_note`) emits no event: the method returns the note.
- STACKER FULL / STACKER OPEN / JAM IN ACCEPTOR / JAM IN STACKER / CHEATED / FAILURE →
  ``Fault(cashbox_full / cashbox_removed / jam / jam / fraud / failure, detail)``; IDLING or
  DISABLE afterwards → ``FaultCleared``. No answer (after ``retries`` repeats of
  ``reply_timeout``) → ``Fault(disconnected)`` and ``PortError`` from the command; the next
  answer clears it. PAUSE (a second note pushed in) is logged only.
- The acceptor restarting behind the host's back (POWER UP while running) → it is initialised
  again and the accept set the kiosk enabled is restored.

Money safety
------------
:meth:`stack` sends STACK-1 and follows STACKING → VEND VALID. VEND VALID is the safe credit
point: ``on_credit(note)`` is awaited there and the ACK (0x50) is written only after it returned.
If ``on_credit`` raises or is cancelled, no ACK is ever sent: the acceptor keeps repeating VEND
VALID, and the next :meth:`open` (after the host restarts) reports the note as stacked.

Power-up acknowledgement (the design chosen)
--------------------------------------------
:meth:`open` returns the :class:`PowerUpReport` and never acknowledges anything the kiosk has not
been told about:

- POWER UP (0x40) → empty report; POWER UP WITH BILL IN ACCEPTOR (0x41) → ``in_escrow`` (value 0:
  the acceptor cannot say which note; it gives it back while initialising); WITH BILL IN STACKER
  (0x42) → ``stacked`` (value 0: the host's journal intent says which). Then RESET, INITIALIZE →
  DISABLE, the escrow table (CURRENCY ASSIGN 0x8A), denominations (C0), security (C1), polled
  mode (C2 00) and INHIBIT (C3 01) until :meth:`enable`.
- A note still in ESCROW (the host restarted while the acceptor kept it) → ``in_escrow`` with its
  value; it is returned (RETURN 0x43) before the RESET.
- VEND VALID repeated (the host crashed inside ``on_credit``, before its ACK) → ``stacked``
  (value 0) and the acceptor is left **un-acknowledged and un-reset**: the kiosk runs its
  recovery (commits the credit), then calls :meth:`ack_power_up`, which sends the ACK and
  initialises the acceptor. :attr:`pending_ack` tells whether one is due. If the kiosk never
  calls it, the first :meth:`enable` does (the kiosk enables only after its recovery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Final

from drivers.errors import CommandRefused, DeviceFault, DriverError, FrameError, PortError
from drivers.id003.codes import (
    FAULTS,
    FIRST_DENOMINATION,
    LAST_DENOMINATION,
    OPERATIONS,
    POWER_UPS,
    STATUS_ANSWERS,
    TRANSIENT,
    Command,
    Status,
    failure_name,
    reject_reason_name,
)
from drivers.id003.frames import (
    Frame,
    decode_currency_assign,
    denomination_mask,
    escrow_values,
)
from drivers.id003.protocol import Id003Protocol
from drivers.serialport import ID003_LINE, LineSettings, Link, open_link
from drivers.validator.base import (
    CreditCallback,
    Fault,
    FaultCleared,
    FaultKind,
    Note,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PowerUpReport,
    ValidatorEvent,
)

log = logging.getLogger(__name__)

_FAULT_KINDS: Final[Mapping[Status, tuple[FaultKind, str]]] = {
    Status.STACKER_FULL: (FaultKind.CASHBOX_FULL, "stacker full"),
    Status.STACKER_OPEN: (FaultKind.CASHBOX_REMOVED, "stacker open"),
    Status.JAM_IN_ACCEPTOR: (FaultKind.JAM, "jam in acceptor"),
    Status.JAM_IN_STACKER: (FaultKind.JAM, "jam in stacker"),
    Status.CHEATED: (FaultKind.FRAUD, "cheated"),
    Status.FAILURE: (FaultKind.FAILURE, "failure"),
}
_IDLE: Final = frozenset({Status.IDLING, Status.DISABLE})
_IN_ESCROW: Final = frozenset({Status.ESCROW, Status.HOLDING})
_REFUSALS: Final = frozenset({Status.COMMUNICATION_ERROR, Status.INVALID_COMMAND})
#: Seconds between status requests while waiting on the acceptor (initialising, stacking…).
BUSY_POLL: Final = 0.002  # between status requests while a note moves (idle: poll_interval)
#: Passing statuses of a note on its way: while the acceptor reports one, poll back-to-back.
_MOVING: Final = frozenset({Status.ACCEPTING, Status.STACKING, Status.RETURNING, Status.REJECTING})


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


class Id003Validator:
    """A :class:`~drivers.validator.base.BillValidator` speaking JCM ID-003.

    :param url: the serial port (pyserial URL).
    :param currency: ISO code of the notes.
    :param escrow_table: escrow code → value in minor units, used when the acceptor does not
        answer CURRENCY ASSIGN (0x8A); the acceptor's own table wins when it answers.
    :param minor_digits: decimals of ``currency`` (CURRENCY ASSIGN gives major units).
    :param line: line settings (8E1; on a pty the parity is dropped, see ``open_link``).
    :param poll_interval: seconds between status requests from the background task while idle;
        while a note moves (accepting, stacking, returning) it polls every ``BUSY_POLL``.
    :param reply_timeout: seconds to wait for each answer.
    :param retries: repeats of an unanswered request before the acceptor counts as
        disconnected.
    :param init_timeout: seconds the acceptor may take to initialise after RESET (and to finish a
        passing status at open).
    :param stack_timeout: seconds from STACK-1 to STACKED (and from RETURN to idle).
    :param hold_interval: seconds between HOLD (0x44) commands while a note waits in escrow;
        ``None`` sends none (for acceptors that hold a note until told).
    :param hold_data: data of the HOLD command. Empty by default; some firmware takes a
        hold-time byte (a public UBA host sends ``44 FF``).
    :param security: SET_SECURITY data (d1 d2): bit = 1 for high security on that denomination.
    """

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
        self._pending_ack = False
        self._needs_init = False
        self._enabled = False
        self._accept: frozenset[int] | None = None
        self._last_hold = 0.0
        self._poll_error: str | None = None

    # -- BillValidator ---------------------------------------------------------------------------

    async def open(self) -> PowerUpReport:
        if self._link is not None:
            raise CommandRefused(f"{self.name}: already open")
        self._last, self._fault, self._escrow = None, None, None
        self._pending_ack = self._needs_init = self._enabled = False
        link = await open_link(self.url, self.line)
        self._link, self._proto = link, Id003Protocol(link)
        try:
            async with self._lock:
                report = await self._power_up()
        except BaseException:
            await self._close_link()
            raise
        self._running = True
        self._poller = asyncio.create_task(self._poll_loop(), name=f"{self.name}-poll")
        return report

    async def close(self) -> None:
        self._running = False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self._close_link()

    async def enable(self, accept: frozenset[int] | None = None) -> None:
        async with self._lock:
            self._require_open()
            if self._pending_ack:
                await self._acknowledge_power_up()
            if self._needs_init:
                await self._initialise()
            if self._fault is not None:
                raise DeviceFault(self._fault.value, f"{self.name}: cannot enable while faulted")
            await self._set(Command.SET_DENOMINATIONS, self._mask(accept))
            await self._set(Command.SET_INHIBIT, b"\x00")
            self._enabled, self._accept = True, accept
            log.debug("%s: enabled for %s", self.name, "all notes" if accept is None else accept)

    async def disable(self) -> None:
        async with self._lock:
            self._enabled = False
            if self._link is None or self._pending_ack or self._needs_init:
                return  # closed, at VEND VALID, or not initialised: not accepting anyway
            await self._set(Command.SET_INHIBIT, b"\x01")

    async def next_event(self) -> ValidatorEvent:
        return await self._events.get()

    async def stack(self, on_credit: CreditCallback) -> Note:
        async with self._lock:
            self._require_open()
            note = self._escrow
            if note is None:
                raise CommandRefused(f"{self.name}: no note in escrow to stack")
            if self._fault is not None:
                raise DeviceFault(self._fault.value, f"{self.name}: cannot stack while faulted")
            try:
                await self._request(Command.STACK_1)
            except CommandRefused:  # our first STACK-1 may have been taken, its ACK lost
                status, _ = await self._status()
                if status not in (Status.STACKING, Status.VEND_VALID, Status.STACKED):
                    raise
            return await self._follow_stack(note, on_credit)

    async def return_note(self) -> Note:
        async with self._lock:
            self._require_open()
            note = self._escrow
            if note is None:
                raise CommandRefused(f"{self.name}: no note in escrow to return")
            if self._fault is not None:
                raise DeviceFault(self._fault.value, f"{self.name}: cannot return while faulted")
            try:
                await self._request(Command.RETURN)
            except CommandRefused:
                status, _ = await self._status()
                if status not in (Status.RETURNING, *_IDLE):
                    raise
            return await self._follow_return(note)

    # -- beyond BillValidator --------------------------------------------------------------------

    @property
    def pending_ack(self) -> bool:
        """A VEND VALID from before the host restarted waits for :meth:`ack_power_up`."""
        return self._pending_ack

    @property
    def link(self) -> Link | None:
        """The open port (``link.line`` is what the driver asked for), or ``None``."""
        return self._link

    @property
    def escrow_table(self) -> dict[int, int]:
        """Escrow code → value (minor units) in use: the acceptor's, else the configured one."""
        return dict(self._table)

    async def ack_power_up(self) -> None:
        """Acknowledge the VEND VALID reported as ``PowerUpReport.stacked`` by :meth:`open`,
        then initialise the acceptor. Call it once the kiosk's recovery has committed that
        credit. Does nothing when no acknowledgement is pending."""
        async with self._lock:
            self._require_open()
            if self._pending_ack:
                await self._acknowledge_power_up()

    async def version(self) -> str:
        """The acceptor's software version (VERSION REQUEST 0x88), ASCII."""
        async with self._lock:
            self._require_open()
            answer = await self._request(Command.VERSION)
            return answer.data.decode("ascii", "replace")

    # -- start-up --------------------------------------------------------------------------------

    async def _power_up(self) -> PowerUpReport:
        status, data = await self._settle()
        unknown = Note(channel=0, value=0, currency=self.currency)
        if status is Status.VEND_VALID:
            self._pending_ack = True
            log.warning(
                "%s: VEND VALID from before the restart, not acknowledged: reported as stacked;"
                " waiting for ack_power_up()",
                self.name,
            )
            return PowerUpReport(stacked=unknown)
        report = PowerUpReport()
        if status is Status.POWER_UP_BILL_IN_ACCEPTOR:
            report = PowerUpReport(in_escrow=unknown)
        elif status is Status.POWER_UP_BILL_IN_STACKER:
            report = PowerUpReport(stacked=unknown)
        elif status in _IN_ESCROW:
            code = data[0] if status is Status.ESCROW and data else 0
            if code not in self._table:
                with contextlib.suppress(DriverError):
                    await self._load_table()
            note = Note(channel=code, value=self._table.get(code, 0), currency=self.currency)
            report = PowerUpReport(in_escrow=note)
            await self._request(Command.RETURN)
            await self._settle()
        if report.in_escrow is not None or report.stacked is not None:
            log.warning("%s: power-up report %s", self.name, report)
        if status in FAULTS:
            self._needs_init = True  # initialised once the fault clears (poll task)
            return report
        await self._initialise()
        return report

    async def _settle(self) -> tuple[Status | None, bytes]:
        """Poll until the acceptor is out of a passing status (or ``init_timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.init_timeout
        while True:
            status, data = await self._status()
            if status not in TRANSIENT or loop.time() >= deadline:
                return status, data
            await asyncio.sleep(self._step)

    async def _initialise(self) -> None:
        """RESET, wait INITIALIZE → DISABLE, read the escrow table, send the settings, and
        inhibit (or restore what the kiosk enabled)."""
        log.info("%s: initialising", self.name)
        await self._request(Command.RESET)
        status = await self._wait_idle(settings_pending=True)
        await self._load_table()
        await self._set(
            Command.SET_DENOMINATIONS, self._mask(self._accept if self._enabled else None)
        )
        await self._set(Command.SET_SECURITY, self.security)
        await self._set(Command.SET_COMMUNICATION_MODE, b"\x00")  # polled
        await self._set(Command.SET_INHIBIT, b"\x00" if self._enabled else b"\x01")
        if status is Status.INITIALIZE:
            await self._wait_idle(settings_pending=False)
        self._needs_init = False
        log.info("%s: ready (%s)", self.name, "enabled" if self._enabled else "inhibited")

    async def _wait_idle(self, *, settings_pending: bool) -> Status:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.init_timeout
        while True:
            status, data = await self._status()
            if status in _IDLE:
                assert status is not None
                return status
            if status in FAULTS:
                raise self._device_fault(status, data, "while initialising")
            if loop.time() >= deadline:
                if status is Status.INITIALIZE and settings_pending:
                    # Some firmware waits for the settings before it leaves INITIALIZE.
                    return status
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: still {status.name if status else '?'} {self.init_timeout}s"
                    " after RESET",
                )
            await asyncio.sleep(self._step)

    async def _load_table(self) -> None:
        """The escrow table from CURRENCY ASSIGN, else the configured one."""
        try:
            answer = await self._request(Command.CURRENCY_ASSIGN)
        except CommandRefused:
            table = {}
        else:
            table = escrow_values(decode_currency_assign(answer.data), self.minor_digits)
        if table:
            if table != self._table:
                if self._configured and table != self._configured:
                    log.warning(
                        "%s: the acceptor's escrow table %s differs from the configured %s;"
                        " using the acceptor's",
                        self.name,
                        table,
                        self._configured,
                    )
                log.info("%s: escrow table %s", self.name, table)
            self._table = table
        elif not self._table:
            raise DeviceFault(
                FaultKind.FAILURE.value,
                f"{self.name}: the acceptor does not answer CURRENCY ASSIGN (0x8A) and no"
                " escrow_table is configured: configure escrow code → value",
            )

    def _mask(self, accept: frozenset[int] | None) -> bytes:
        allowed = {c for c, v in self._table.items() if accept is None or v in accept}
        if accept is not None and not accept <= set(self._table.values()):
            log.warning(
                "%s: no escrow code for %s", self.name, sorted(accept - set(self._table.values()))
            )
        return denomination_mask(
            c for c in range(FIRST_DENOMINATION, LAST_DENOMINATION + 1) if c not in allowed
        )

    async def _acknowledge_power_up(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stack_timeout
        proto = self._require_open()
        await proto.send(Frame(Command.ACK))
        while True:
            status, data = await self._status()
            if status is Status.VEND_VALID:
                await proto.send(Frame(Command.ACK))  # our ACK was lost
            elif status in FAULTS:
                raise self._device_fault(status, data, "after the power-up ACK")
            elif status is not Status.STACKED:
                break
            if loop.time() >= deadline:
                raise DeviceFault(
                    FaultKind.FAILURE.value, f"{self.name}: VEND VALID not cleared by ACK"
                )
            await asyncio.sleep(self._step)
        self._pending_ack = False
        log.info("%s: power-up VEND VALID acknowledged", self.name)
        await self._initialise()

    # -- stacking and returning ------------------------------------------------------------------

    async def _follow_stack(self, note: Note, on_credit: CreditCallback) -> Note:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stack_timeout
        proto = self._require_open()
        credited = False
        while True:
            status, data = await self._status()
            if status is Status.VEND_VALID:
                if not credited:
                    self._escrow = None
                    log.debug("%s: %s at VEND VALID: credit, then ACK", self.name, note)
                    await on_credit(note)  # the kiosk commits first: only then the ACK
                    credited = True
                await proto.send(Frame(Command.ACK))  # again if the acceptor missed it
            elif status is Status.STACKED or (credited and status in _IDLE):
                log.debug("%s: %s stacked", self.name, note)
                return note
            elif status is Status.POWER_UP_BILL_IN_STACKER:
                # Restarted with our note in the stacker: it counts in the cashbox.
                self._escrow = None
                if not credited:
                    await on_credit(note)
                log.warning("%s: %s stacked across an acceptor restart", self.name, note)
                return note
            elif status in FAULTS:
                raise self._device_fault(status, data, f"{note} not stacked")
            elif status not in (Status.STACKING, Status.PAUSE, *_IN_ESCROW) and status:
                self._escrow = None
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: {note} not stacked: the acceptor reports {status.name}"
                    f" {data.hex()}".rstrip(),
                )
            if loop.time() >= deadline:
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: {note} still {status.name if status else '?'} after"
                    f" {self.stack_timeout}s",
                )
            await asyncio.sleep(self._step)

    async def _follow_return(self, note: Note) -> Note:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stack_timeout
        while True:
            status, data = await self._status()
            if status in _IDLE or status is Status.POWER_UP_BILL_IN_ACCEPTOR:
                self._escrow = None
                log.debug("%s: %s returned", self.name, note)
                return note
            if status in FAULTS:
                raise self._device_fault(status, data, f"{note} not returned")
            if status not in (Status.RETURNING, Status.PAUSE, *_IN_ESCROW):
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: returning {note}: the acceptor reports"
                    f" {status.name if status else '?'}",
                )
            if loop.time() >= deadline:
                raise DeviceFault(FaultKind.FAILURE.value, f"{self.name}: {note} not returned")
            await asyncio.sleep(self._step)

    # -- the poll task ---------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            moving = self._last is not None and self._last[0] in _MOVING
            await asyncio.sleep(self._step if moving else self.poll_interval)
            async with self._lock:
                try:
                    await self._poll_once()
                except Exception as exc:  # the poll task must outlive any one bad answer
                    if str(exc) != self._poll_error:
                        log.warning(
                            "%s: %s", self.name, exc, exc_info=not isinstance(exc, DriverError)
                        )
                    self._poll_error = str(exc)
                else:
                    self._poll_error = None

    async def _poll_once(self) -> None:
        prev = self._last[0] if self._last is not None else None
        status, data = await self._status()
        if status is None:
            return
        if status is Status.ESCROW:
            code = data[0] if data else 0
            known = self._escrow.channel if self._escrow is not None else self._refused_code
            if prev not in _IN_ESCROW or code != known:
                await self._on_escrow(code)
        elif status is Status.RETURNING or (status in _IDLE and prev in _IN_ESCROW):
            self._returned_by_device()
        elif status is Status.REJECTING and prev is not Status.REJECTING:
            reason = reject_reason_name(data[0]) if data else "unknown"
            log.info("%s: note rejected (%s)", self.name, reason)
            self._emit(NoteRejected(reason))
        elif status is Status.VEND_VALID and prev is not Status.VEND_VALID:
            if not self._pending_ack:
                log.error(
                    "%s: VEND VALID with no credit in progress: not acknowledged; the note is"
                    " in the cashbox and is reported at the next open()",
                    self.name,
                )
        elif status is Status.POWER_UP_BILL_IN_ACCEPTOR:
            self._returned_by_device()  # given back while initialising
        if self._needs_init and not self._pending_ack and status not in FAULTS:
            await self._initialise()
        elif self._should_hold(status):
            await self._request(Command.HOLD, self.hold_data)
            self._last_hold = asyncio.get_running_loop().time()

    async def _on_escrow(self, code: int) -> None:
        value = self._table.get(code)
        if value is None:
            log.warning("%s: escrow code 0x%02x not in the escrow table: returned", self.name, code)
            self._escrow, self._refused_code = None, code
            await self._request(Command.RETURN)
            self._emit(NoteRejected("unknown_denomination"))
            return
        self._escrow, self._refused_code = Note(code, value, self.currency), None
        self._last_hold = asyncio.get_running_loop().time()
        log.debug("%s: %s in escrow", self.name, self._escrow)
        self._emit(NoteEscrowed(self._escrow))

    def _returned_by_device(self) -> None:
        if self._escrow is not None:
            note, self._escrow = self._escrow, None
            log.info("%s: the acceptor gave %s back", self.name, note)
            self._emit(NoteReturned(note))

    def _should_hold(self, status: Status) -> bool:
        return (
            self.hold_interval is not None
            and self._escrow is not None
            and status in _IN_ESCROW
            and asyncio.get_running_loop().time() - self._last_hold >= self.hold_interval
        )

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
        elif status in _IDLE or self._fault is FaultKind.DISCONNECTED:
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
        if self._proto is None:
            raise PortError(f"{self.name}: {self.url} is not open: call open() first")
        return self._proto

    async def _request(self, cmd: Command, data: bytes = b"") -> Frame:
        """Send ``cmd`` and return its answer. No answer after ``retries`` repeats → the
        acceptor is disconnected (``PortError``); COMMUNICATION ERROR or INVALID COMMAND →
        sent once more, then ``FrameError`` / ``CommandRefused``."""
        proto = self._require_open()
        accept = _answers(cmd)
        silent = refused = 0
        while True:
            answer = await proto.request(Frame(cmd, data), self.reply_timeout, accept)
            if answer is None:
                silent += 1
                if silent > self.retries:
                    self._lost()
                    raise PortError(
                        f"{self.name}: no answer to {cmd.name} on {self.url} after {silent}"
                        f" tries of {self.reply_timeout}s: check power and cable"
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
        if self._fault is FaultKind.DISCONNECTED or not self._running:
            return
        self._fault = FaultKind.DISCONNECTED
        log.error("%s: no answer from the acceptor on %s", self.name, self.url)
        self._emit(Fault(FaultKind.DISCONNECTED, f"no answer on {self.url}"))

    async def _close_link(self) -> None:
        link, self._link, self._proto = self._link, None, None
        if link is not None:
            await link.close()
