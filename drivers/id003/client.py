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
  ``reply_timeout``) → ``Fault(disconnected)`` and ``DeviceFault`` from the command; polling
  goes on and the next answer clears it. A port that vanishes (adapter unplugged, pty hung up:
  reads/writes fail) → ``Fault(disconnected)`` at once and polling stops; every method then
  raises ``DeviceFault`` until :meth:`close` and :meth:`open` (the daemon reopens it).
  PAUSE (a second note pushed in) is logged only.
- VEND VALID that no :meth:`stack` waits for (a stack that failed on a fault and carried on
  once it cleared) → ``NoteCredited(note)`` (the note escrowed before it, else value 0) and no
  ACK until :meth:`ack_credit`: the acceptor repeats VEND VALID and takes no other note.
- An escrow code of another currency (CURRENCY ASSIGN record with another country code) →
  returned at once, ``NoteRejected("foreign_currency")``, never credited.
- The acceptor restarting behind the host's back (POWER UP while running) → it is initialised
  again and the accept set the kiosk enabled is restored.

Money safety
------------
:meth:`stack` sends STACK-1 and follows STACKING → VEND VALID. VEND VALID is the safe credit
point: ``on_credit(note)`` is awaited there and the ACK (0x50) is written only after it returned.
If ``on_credit`` raises or is cancelled, no ACK is ever sent: the acceptor keeps repeating VEND
VALID, and the next :meth:`open` (after the host restarts) reports the note as stacked.

Power-up acknowledgement: :meth:`open` reports notes in flight and never acknowledges anything
the kiosk has not been told about; a VEND VALID left from before the restart waits for
:meth:`ack_power_up` (see :mod:`~drivers.id003.startup`).

Layout: this module holds :class:`Id003Validator` — the BillValidator methods and the poll
task — assembled from :mod:`~drivers.id003.core` (constructor, exchanges, status tracking),
:mod:`~drivers.id003.startup` (power-up report, initialisation, escrow table) and
:mod:`~drivers.id003.stacking` (following STACK-1 and RETURN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from drivers.errors import CommandRefused, DeviceFault, DriverError
from drivers.id003.codes import FAULTS, Command, Status, reject_reason_name
from drivers.id003.core import BUSY_POLL, IDLE, IN_ESCROW
from drivers.id003.protocol import Id003Protocol
from drivers.id003.stacking import Stacking
from drivers.id003.startup import Startup
from drivers.serialport import Link, open_link
from drivers.validator.base import (
    CreditCallback,
    Note,
    NoteCredited,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PowerUpReport,
    ValidatorEvent,
)

__all__ = ["BUSY_POLL", "Id003Validator"]

log = logging.getLogger(__name__)

#: Passing statuses of a note on its way: while the acceptor reports one, poll back-to-back.
_MOVING: Final = frozenset({Status.ACCEPTING, Status.STACKING, Status.RETURNING, Status.REJECTING})


class Id003Validator(Startup, Stacking):
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
    :param country_code: JCM's country byte of ``currency`` in the acceptor's CURRENCY ASSIGN
        records (JCM's own numbering, not ISO 4217, and not public: read it off the unit). Records
        of other country codes are foreign notes: inhibited where they have an inhibit bit,
        returned if escrowed. ``open`` raises ``DeviceFault`` if no record has this code (the
        acceptor is set up for another currency). ``None``: a single-currency table is taken as
        ``currency`` (nothing to compare it with); a table of several countries fails ``open``.
    """

    # -- BillValidator ---------------------------------------------------------------------------

    async def open(self) -> PowerUpReport:
        if self._link is not None:
            raise CommandRefused(f"{self.name}: already open")
        self._last, self._fault, self._escrow, self._credit = None, None, None, None
        self._pending_ack = self._needs_init = self._enabled = self._gone = False
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
            if self._credit is not None:
                raise CommandRefused(
                    f"{self.name}: {self._credit} waits at VEND VALID: commit it, then ack_credit()"
                )
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
            self._require_open()
            if self._pending_ack or self._needs_init or self._credit is not None:
                return  # at VEND VALID, or not initialised: not accepting anyway
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
                if status not in (Status.RETURNING, *IDLE):
                    raise
            return await self._follow_return(note)

    async def ack_credit(self) -> None:
        """Acknowledge the VEND VALID reported as ``NoteCredited``, once the kiosk committed
        it: ACK (0x50) until the acceptor leaves VEND VALID. Does nothing when none waits."""
        async with self._lock:
            self._require_open()
            if self._credit is None:
                return
            await self._acknowledge_vend_valid("the credit")
            log.info("%s: %s acknowledged", self.name, self._credit)
            self._credit = None

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

    # -- the poll task ---------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            moving = self._last is not None and self._last[0] in _MOVING
            await asyncio.sleep(self._step if moving else self.poll_interval)
            async with self._lock:
                try:
                    await self._poll_once()
                except Exception as exc:  # the poll task must outlive any one bad answer
                    if self._gone:
                        return  # the port vanished: Fault(disconnected) was emitted
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
            if prev not in IN_ESCROW or code != known:
                await self._on_escrow(code)
        elif status is Status.RETURNING or (status in IDLE and prev in IN_ESCROW):
            self._returned_by_device()
        elif status is Status.REJECTING and prev is not Status.REJECTING:
            reason = reject_reason_name(data[0]) if data else "unknown"
            log.info("%s: note rejected (%s)", self.name, reason)
            self._emit(NoteRejected(reason))
        elif status is Status.VEND_VALID:
            if not self._pending_ack and self._credit is None:
                self._unasked_credit()
        elif status is Status.POWER_UP_BILL_IN_ACCEPTOR:
            self._returned_by_device()  # given back while initialising
        if self._needs_init and not self._pending_ack and status not in FAULTS:
            await self._initialise()
        elif self._should_hold(status):
            await self._request(Command.HOLD, self.hold_data)
            self._last_hold = asyncio.get_running_loop().time()

    def _unasked_credit(self) -> None:
        """VEND VALID with no stack() waiting: the note is in the cashbox. Reported, not
        acknowledged: the kiosk commits it and calls ack_credit()."""
        note, self._escrow = self._escrow, None
        if note is None:
            note = Note(0, 0, self.currency)  # VEND VALID carries no denomination
        self._credit = note
        log.error(
            "%s: VEND VALID with no stack() waiting: %s credited, ACK held until ack_credit()",
            self.name,
            note,
        )
        self._emit(NoteCredited(note))

    async def _on_escrow(self, code: int) -> None:
        if code in self._foreign:
            log.error(
                "%s: escrow code 0x%02x is a note of country code 0x%02x, not %s: returned",
                self.name,
                code,
                self._foreign[code],
                self.currency,
            )
            self._escrow, self._refused_code = None, code
            await self._request(Command.RETURN)
            self._emit(NoteRejected("foreign_currency"))
            return
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
            and status in IN_ESCROW
            and asyncio.get_running_loop().time() - self._last_hold >= self.hold_interval
        )
