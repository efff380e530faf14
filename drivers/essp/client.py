"""ITL NV200 / NV9 / NV4000 (+ SMART Payout) over eSSP: a BillValidator and a NoteDispenser.

Wiring: ``EsspValidator("/dev/kiosk-validator", currency="EUR")`` — the port is a pyserial URL
opened at 9600 8N2 (``ESSP_LINE``); USB units enumerate as ``/dev/ttyACM*``.

:meth:`EsspValidator.open` syncs with the unit, negotiates the protocol and the keys, reads its
channels and drains its pending events into the :class:`~drivers.validator.base.PowerUpReport`
(:mod:`~drivers.essp.startup` gives the sequence and what each event means). The notes in
that report stay unacknowledged (the unit repeats them and moves no note) until
:meth:`EsspValidator.ack_power_up`, which the kiosk calls once its recovery has committed them.

A background task polls every ``poll_interval`` seconds (at most 1 s; 200 ms nominal) with
POLL WITH ACK, encrypted when the link is. While a note waits in escrow it sends HOLD
instead, which keeps the note there (a POLL would accept it; 10 s without either rejects
it). :meth:`EsspValidator.stack` lets the poll accept the note, waits for CREDIT n, awaits
``on_credit(note)`` and only then sends EVENT ACK: the unit repeats the credit until then,
so a host that dies inside ``on_credit`` leaves the credit for the next :meth:`open` to
report. A CREDIT that no :meth:`stack` asked for is never acknowledged: it raises
``Fault(failure)`` and the next :meth:`open` reports it as ``stacked``.

Events: READ n ⇒ ``NoteEscrowed``; REJECTED ⇒ ``NoteRejected`` with LAST REJECT CODE's name
(``"average_fail"``, ``"disabled_by_host"``…), or ``NoteReturned`` if it was the escrowed
note (escrow timeout); jams ⇒ ``Fault(jam)``, FRAUD ATTEMPT ⇒ ``Fault(fraud)``, STACKER
FULL ⇒ ``Fault(cashbox_full)``, CASHBOX REMOVED ⇒ ``Fault(cashbox_removed)``, NOTE PATH
OPEN ⇒ ``Fault(failure, "note path open")``; the first poll with none of them (CASHBOX
REPLACED included) ⇒ ``FaultCleared``. A unit that stops answering (``tries`` sends of one
command) or that restarted under us (SLAVE RESET, KEY NOT SET) ⇒ ``Fault(disconnected)``
and polling stops: :meth:`close` and :meth:`open` again to read its power-up report.

Payouts (SMART Payout, encrypted links only) are one PAYOUT AMOUNT each, never repeated by the
driver: see :mod:`~drivers.essp.payout`.

Layout: this module holds :class:`EsspValidator` — the BillValidator methods and the poll
task — assembled from :mod:`~drivers.essp.core` (constructor, state, shared exchanges, fault
tracking), :mod:`~drivers.essp.startup` (the open sequence and the power-up report) and
:mod:`~drivers.essp.payout` (the NoteDispenser methods and the payout events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from drivers.errors import CommandRefused, DeviceFault, DriverError, FrameError, PortError
from drivers.essp.codes import ACK_REQUIRED, Command, Event, RejectCode, Response
from drivers.essp.core import MIN_POLL_GAP, MIN_PROTOCOL, PollState, Restarted
from drivers.essp.frames import PollEvent, Request, inhibit_mask
from drivers.essp.payout import SmartPayout
from drivers.essp.protocol import HostProtocol
from drivers.essp.startup import DRAIN_POLLS, Startup
from drivers.serialport import open_link
from drivers.validator.base import (
    CreditCallback,
    FaultKind,
    Note,
    NoteCredited,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PowerUpReport,
    ValidatorEvent,
)

__all__ = ["DRAIN_POLLS", "MIN_POLL_GAP", "MIN_PROTOCOL", "EsspValidator"]

log = logging.getLogger("drivers.essp")  # one logger for the whole driver

#: HOLD answers that mean "this unit does not hold notes": polling goes on without it.
_HOLD_UNSUPPORTED: Final = frozenset({Response.UNKNOWN_COMMAND, Response.FAIL})
_KEPT_NOTES: Final = frozenset(
    {
        Event.CLEARED_TO_CASHBOX,
        Event.NOTE_PAID_INTO_STACKER_AT_POWER_UP,
        Event.NOTE_PAID_INTO_STORE_AT_POWER_UP,
    }
)


class EsspValidator(Startup, SmartPayout):
    """An ITL eSSP note validator, with its SMART Payout when one is fitted.

    :param url: the port (pyserial URL), e.g. ``/dev/kiosk-validator``.
    :param currency: ISO code of the notes the kiosk takes and pays (channels of other
        currencies are reported as they are and never enabled).
    :param line: line settings (ITL: 9600 8N2).
    :param address: SSP address (0 for validators and SMART Payout).
    :param encrypted: negotiate eSSP keys at open and encrypt every command after; required
        for payouts and by units configured for encryption.
    :param poll_interval: seconds between polls, 0 < x <= 1 (the unit needs a poll or HOLD
        within 10 s to keep a note in escrow; ITL suggests 200 ms).
    :param protocol_version: the SSP protocol version asked for first (falls back to 6).
    :param reply_timeout: seconds before a command is sent again (GA138: 1 s).
    :param tries: sends of one command before the unit is declared gone (GA138: 20).
    :param fixed_key: the low 64 bits of the AES key (the unit's fixed key).
    :param payout: a SMART Payout is fitted; ``None``: as SETUP REQUEST's unit type says.
    :param stack_timeout: seconds :meth:`stack` waits for the CREDIT.
    :param payout_timeout: seconds :meth:`payout` and :meth:`smart_empty` wait for their end.
    """

    # -- BillValidator -------------------------------------------------------------------------

    async def open(self) -> PowerUpReport:
        if self._link is not None:
            raise CommandRefused(f"{self.name}: already open")
        self._s = PollState()
        while not self._events.empty():  # stale events of the last session
            self._events.get_nowait()
        self.incomplete_payout = None
        self._link = await open_link(self.url, self.line)
        try:
            self._proto = HostProtocol(
                self._link, address=self.address, reply_timeout=self.reply_timeout, tries=self.tries
            )
            report = await self._start()
        except BaseException:
            await self._close_link()
            raise
        self._task = asyncio.create_task(self._poll_loop(), name=f"{self.name}-poll")
        return report

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._proto is not None and not self._s.gone:
            with contextlib.suppress(DriverError, TimeoutError):
                async with asyncio.timeout(2 * self.reply_timeout):
                    await self._proto.command(Request(Command.DISABLE))
        self._fail_waiters(DeviceFault(FaultKind.DISCONNECTED.value, f"{self.name}: closed"))
        await self._close_link()

    async def enable(self, accept: frozenset[int] | None = None) -> None:
        chans = [
            ch
            for ch, note in self.channels.items()
            if note.currency == self.currency and (accept is None or note.value in accept)
        ]
        await self._cmd(Command.SET_INHIBITS, inhibit_mask(chans, self._n_channels()))
        await self._cmd(Command.ENABLE)
        self.enabled = True

    async def disable(self) -> None:
        await self._cmd(Command.DISABLE)
        self.enabled = False

    async def next_event(self) -> ValidatorEvent:
        return await self._events.get()

    async def stack(self, on_credit: CreditCallback) -> Note:
        s = self._s
        note = s.escrow
        if s.gone:
            raise DeviceFault(FaultKind.DISCONNECTED.value, f"{self.name}: the unit is gone")
        if note is None or s.stack is not None:
            raise CommandRefused(f"{self.name}: no note in escrow to stack")
        if s.stray:
            raise CommandRefused(f"{self.name}: a stray credit waits for ack_credit()")
        done: asyncio.Future[Note] = asyncio.get_running_loop().create_future()
        s.stack, s.stacking = done, True
        self._kick.set()
        try:
            async with asyncio.timeout(self.stack_timeout):
                credited = await done
        except TimeoutError:
            s.escrow = None
            raise DeviceFault(
                FaultKind.FAILURE.value,
                f"{self.name}: no credit for {note} in {self.stack_timeout} s",
            ) from None
        finally:
            s.stack, s.stacking = None, False
        # The safe credit point: the kiosk commits the credit, then the unit is acknowledged.
        await on_credit(credited)
        async with self._poll_lock:
            await self._ack()
            s.unacked, s.hold_ack = (), False
        log.debug("%s: %s stacked", self.name, credited)
        return credited

    async def return_note(self) -> Note:
        s = self._s
        note = s.escrow
        if note is None or s.stacking:
            raise CommandRefused(f"{self.name}: no note in escrow to return")
        async with self._poll_lock:
            await self._cmd(Command.REJECT)
            s.escrow, s.host_reject = None, True
        return note

    async def ack_credit(self) -> None:
        """Acknowledge a :class:`NoteCredited` (a credit no :meth:`stack` asked for) once the
        kiosk has committed it. Until then the unit repeats it and moves no note. Does nothing
        when nothing waits."""
        await self._release_held("stray credit", lambda: self._s.stray)

    async def ack_power_up(self) -> None:
        """Acknowledge the notes :meth:`open` reported (EVENT ACK), once the kiosk's recovery
        has committed them. Until then the unit repeats them and moves no note. Does nothing
        when nothing waits."""
        await self._release_held("power-up report", lambda: self._s.power_up)

    async def _release_held(self, what: str, held: Callable[[], bool]) -> None:
        """EVENT ACK for the events held until the kiosk committed them (one EVENT ACK
        acknowledges every pending event)."""
        s = self._s
        async with self._poll_lock:
            if not held():
                return
            await self._ack()
            s.unacked, s.hold_ack, s.stray, s.power_up = (), False, False, False
        log.info("%s: %s acknowledged", self.name, what)

    # -- more of the validator -------------------------------------------------------------------

    async def last_reject_code(self) -> RejectCode | int:
        code = (await self._cmd(Command.LAST_REJECT_CODE)).data[:1]
        if not code:
            raise FrameError(f"{self.name}: empty LAST REJECT CODE reply")
        try:
            return RejectCode(code[0])
        except ValueError:
            return code[0]

    # -- the poll task ---------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        try:
            while True:
                async with self._poll_lock:
                    await self._poll_step()
                # GA973 §7.4: 200..1000 ms between polls, a note on its way included; a
                # kick (stack) may bring the next poll forward to the 200 ms floor only.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._kick.wait()
                self._kick.clear()
        except Restarted as exc:
            self._lost(str(exc))
        except (DeviceFault, PortError) as exc:
            self._lost(str(exc))
        except Exception as exc:
            log.exception("%s: poll task failed", self.name)
            self._lost(f"poll task failed: {exc}")

    async def _poll_step(self) -> None:
        s = self._s
        try:
            if s.escrow is not None and not s.stacking and not s.hold_refused:
                reply = await self._spaced(Request(Command.HOLD))
                if reply.ok:
                    return
                if reply.status == Response.KEY_NOT_SET:
                    raise Restarted(f"{self.name}: the unit lost its keys: it restarted")
                if reply.status in _HOLD_UNSUPPORTED:
                    # Never stop polling for it: the poll accepts the note, whose CREDIT then
                    # reaches the kiosk (stack() or NoteCredited), or the unit rejects it.
                    log.warning(
                        "%s: HOLD refused (%#04x): the note is left to the poll",
                        self.name,
                        reply.status,
                    )
                    s.hold_refused = True
                elif reply.status != Response.CANNOT_PROCESS:
                    raise self._refusal(Command.HOLD, reply)
                # F5: no note in escrow any more: poll to learn what became of it
            events = await self._poll_events()
            await self._handle(events)
        except (CommandRefused, FrameError) as exc:
            if str(exc) != s.problem:
                log.warning("%s: %s", self.name, exc)
                s.problem = str(exc)
            return
        if s.problem:
            log.info("%s: polling again", self.name)
            s.problem = ""

    async def _handle(self, events: tuple[PollEvent, ...]) -> None:
        """One poll's events. Events needing an ack that the unit repeats (not yet
        acknowledged) are handled once; money events wait for the kiosk's commit (stack's
        on_credit, ack_credit), the others are acknowledged at once."""
        s = self._s
        acks = tuple(e for e in events if e.code in ACK_REQUIRED)
        known = len(s.unacked) if acks[: len(s.unacked)] == s.unacked else 0
        new_acks = acks[known:]
        fresh = tuple(e for e in events if e.code not in ACK_REQUIRED) + new_acks
        s.unacked = acks
        for event in fresh:
            await self._event(event)
        self._track_faults(events, fresh)
        if not acks or self.poll_command != Command.POLL_WITH_ACK:
            s.unacked = ()
            return
        if not s.hold_ack:  # set by a credit: acknowledged once the kiosk has committed it
            await self._ack()
            s.unacked = ()

    async def _event(self, e: PollEvent) -> None:
        s = self._s
        code = e.code
        if code == Event.SLAVE_RESET:
            raise Restarted(f"{self.name}: the unit reset (SLAVE RESET)")
        if code == Event.READ and e.channel:
            if s.escrow is None:
                s.escrow, s.hold_refused = self._note(e.channel), False
                self._emit(NoteEscrowed(s.escrow))
        elif code == Event.CREDIT:
            await self._credit(self._note(e.channel))
        elif code in _KEPT_NOTES:  # a note kept at a reset the unit had while we polled
            await self._credit(
                self._note(e.channel)
                if e.channel is not None
                else Note(0, e.total(self.currency), self.currency)
            )
        elif code == Event.REJECTED:
            await self._rejected()
        else:
            self._payout_event(e)

    async def _credit(self, note: Note) -> None:
        s = self._s
        s.hold_ack = True
        self.credit_seen_at = time.perf_counter()
        if s.stack is not None and not s.stack.done():
            s.escrow, s.stacking = None, False
            s.stack.set_result(note)
            return
        # A credit no stack() waits for: a note the poll accepted after HOLD was refused, or
        # one that went on after a fault mid-stack. The kiosk commits it, then ack_credit().
        s.escrow, s.stacking, s.stray = None, False, True
        log.warning("%s: CREDIT %s without a stack command: waiting for the kiosk", self.name, note)
        self._emit(NoteCredited(note))

    async def _rejected(self) -> None:
        s = self._s
        if s.host_reject:
            s.host_reject = False
            return
        if s.stack is not None and not s.stack.done():
            reason = await self._reject_reason()
            s.escrow = None
            s.stack.set_exception(
                DeviceFault(FaultKind.FAILURE.value, f"{self.name}: note rejected ({reason})")
            )
            return
        if s.escrow is not None:
            note, s.escrow = s.escrow, None
            self._emit(NoteReturned(note))
            return
        self._emit(NoteRejected(await self._reject_reason()))

    async def _reject_reason(self) -> str:
        try:
            code = await self.last_reject_code()
        except CommandRefused:
            return "unknown"
        return code.name.lower() if isinstance(code, RejectCode) else f"code_{code:#04x}"
