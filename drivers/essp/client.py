"""ITL NV200 / NV9 / NV4000 (+ SMART Payout) over eSSP: a BillValidator and a NoteDispenser.

Wiring: ``EsspValidator("/dev/kiosk-validator", currency="EUR")`` — the port is a pyserial URL
opened at 9600 8N2 (``ESSP_LINE``); USB units enumerate as ``/dev/ttyACM*``.

:meth:`EsspValidator.open` runs SYNC, HOST PROTOCOL VERSION (the configured version, falling
back to 6), SETUP REQUEST (channels and their values), the key exchange when ``encrypted``,
SET INHIBITS, SERIAL NUMBER (logged), ENABLE PAYOUT DEVICE on a SMART Payout, DISABLE, and
REJECT (a note left in escrow by a previous host is given back); then it drains the unit's
pending events into the :class:`~drivers.validator.base.PowerUpReport`:

- NOTE CLEARED FROM FRONT n (after SLAVE RESET) ⇒ ``in_escrow``: the note went back out;
- NOTE CLEARED INTO CASHBOX n, or a CREDIT n still waiting for its EVENT ACK (the previous
  host never acknowledged it) ⇒ ``stacked``;
- a note taken back from escrow by the REJECT above ⇒ ``in_escrow`` with value 0 (the unit
  does not say which note it was);
- INCOMPLETE PAYOUT ⇒ :attr:`EsspValidator.incomplete_payout`.

The notes in that report stay unacknowledged (the unit repeats them and moves no note) until
:meth:`EsspValidator.ack_power_up`, which the kiosk calls once its recovery has committed
them; other power-up events (the end of an earlier payout) are acknowledged during open.

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

Payouts (SMART Payout, encrypted links only): one PAYOUT AMOUNT per :meth:`payout`, never
repeated by the driver (a lost reply is recovered by the transport's same-flag retransmit,
which the unit answers without paying twice); the result follows DISPENSED / INCOMPLETE
PAYOUT / JAMMED / HALTED / TIMEOUT with the exact value paid. No end within
``payout_timeout`` ⇒ ``DeviceFault`` (the kiosk settles from the levels).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final

from drivers.errors import CommandRefused, DeviceFault, DriverError, FrameError, PortError
from drivers.essp.codes import (
    ACK_REQUIRED,
    PAYOUT_NOW,
    PAYOUT_TEST,
    Command,
    Event,
    PayoutError,
    RejectCode,
    Response,
    Route,
    UnitType,
)
from drivers.essp.crypto import DEFAULT_FIXED_KEY, HostKeys, aes_key
from drivers.essp.frames import (
    PayoutRequest,
    PollEvent,
    Reply,
    Request,
    RouteRequest,
    SetupInfo,
    inhibit_mask,
    parse_events,
    parse_levels,
    u64le,
)
from drivers.essp.protocol import REPLY_TIMEOUT, TRIES, HostProtocol
from drivers.serialport import ESSP_LINE, LineSettings, Link, open_link
from drivers.validator.base import (
    CreditCallback,
    Fault,
    FaultCleared,
    FaultKind,
    Note,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PayoutResult,
    PowerUpReport,
    ValidatorEvent,
)

log = logging.getLogger("drivers.essp")

MIN_PROTOCOL: Final = 6  # 4-byte values and country codes
DRAIN_POLLS: Final = 50  # polls at most to settle the power-up events

_LEVEL_FAULTS: Final = {
    Event.UNSAFE_JAM: (FaultKind.JAM, "unsafe jam"),
    Event.SAFE_JAM: (FaultKind.JAM, "safe jam"),
    Event.STACKER_FULL: (FaultKind.CASHBOX_FULL, "stacker full"),
    Event.CASHBOX_REMOVED: (FaultKind.CASHBOX_REMOVED, "cashbox removed"),
    Event.NOTE_PATH_OPEN: (FaultKind.FAILURE, "note path open"),
}
_SETTLED: Final = frozenset(
    {Event.DISABLED, Event.SLAVE_RESET, Event.CHANNEL_DISABLE, Event.CASHBOX_REPLACED}
    | {Event.FRAUD_ATTEMPT}
    | set(_LEVEL_FAULTS)
)
#: Events of a note on its way through the unit: while they show, poll back-to-back.
_MOVING: Final = frozenset({Event.STACKING, Event.REJECTING, Event.CREDIT})
MOVING_POLL_S: Final = 0.002  # gap between polls while a note moves (idle: poll_interval)
_POWER_UP_NOTES: Final = frozenset(
    {Event.CREDIT, Event.CLEARED_TO_CASHBOX, Event.CLEARED_FROM_FRONT}
)
_PAYOUT_ERRORS: Final = frozenset(e.value for e in PayoutError)
_RESPONSES: Final = frozenset(r.value for r in Response)
_PAYOUT_ENDS: Final = {
    Event.DISPENSED: "",
    Event.JAMMED: "jammed",
    Event.HALTED: "halted",
    Event.TIMEOUT: "timeout",
}


@dataclass
class _PayoutWait:
    requested: int
    done: asyncio.Future[PayoutResult]
    dispensed: int = 0
    error: bool = False


@dataclass
class _State:
    """What the poll task knows between polls (reset by each open)."""

    escrow: Note | None = None
    stacking: bool = False
    moving: bool = False  # the last poll showed a note on its way (reading, stacking...)
    stack: asyncio.Future[Note] | None = None
    host_reject: bool = False
    unacked: tuple[PollEvent, ...] = ()
    hold_ack: bool = False  # the unacked events wait: on_credit, an orphan credit, recovery
    power_up: bool = False  # they are the power-up report, waiting for ack_power_up()
    faults: frozenset[FaultKind] = frozenset()
    fraud: bool = False
    payout: _PayoutWait | None = None
    empty: asyncio.Future[None] | None = None
    gone: bool = False
    problem: str = ""


class EsspValidator:
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
        if not 0 < poll_interval <= 1.0:
            raise ValueError("poll_interval must be in (0, 1] seconds")
        if protocol_version < MIN_PROTOCOL:
            raise ValueError(f"protocol_version must be >= {MIN_PROTOCOL}")
        self.url, self.currency, self.line, self.address = url, currency, line, address
        self.encrypted, self.poll_interval = encrypted, poll_interval
        self.protocol_version = protocol_version
        self.reply_timeout, self.tries, self.fixed_key = reply_timeout, tries, fixed_key
        self.stack_timeout, self.payout_timeout = stack_timeout, payout_timeout
        self.name = name
        self._payout_option = payout
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
        self._s = _State()

    # -- BillValidator -------------------------------------------------------------------------

    async def open(self) -> PowerUpReport:
        if self._link is not None:
            raise CommandRefused(f"{self.name}: already open")
        self._s = _State()
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

    async def disable(self) -> None:
        await self._cmd(Command.DISABLE)

    async def next_event(self) -> ValidatorEvent:
        return await self._events.get()

    async def stack(self, on_credit: CreditCallback) -> Note:
        s = self._s
        note = s.escrow
        if s.gone:
            raise DeviceFault(FaultKind.DISCONNECTED.value, f"{self.name}: the unit is gone")
        if note is None or s.stack is not None:
            raise CommandRefused(f"{self.name}: no note in escrow to stack")
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

    async def ack_power_up(self) -> None:
        """Acknowledge the notes :meth:`open` reported (EVENT ACK), once the kiosk's recovery
        has committed them. Until then the unit repeats them and moves no note. Does nothing
        when nothing waits."""
        s = self._s
        async with self._poll_lock:
            if not s.power_up:
                return
            await self._ack()
            s.unacked, s.hold_ack, s.power_up = (), False, False
        log.info("%s: power-up report acknowledged", self.name)

    # -- more of the validator -------------------------------------------------------------------

    async def last_reject_code(self) -> RejectCode | int:
        code = (await self._cmd(Command.LAST_REJECT_CODE)).data[:1]
        if not code:
            raise FrameError(f"{self.name}: empty LAST REJECT CODE reply")
        try:
            return RejectCode(code[0])
        except ValueError:
            return code[0]

    # -- NoteDispenser ---------------------------------------------------------------------------

    async def levels(self) -> dict[int, int]:
        self._need_payout("levels", encrypted=False)
        reply = await self._cmd(Command.GET_ALL_LEVELS)
        out: dict[int, int] = {}
        for level in parse_levels(reply.data):
            if level.country == self.currency:
                out[level.value] = out.get(level.value, 0) + level.count
        return out

    async def can_pay(self, amount: int) -> bool:
        self._need_payout("can_pay")
        if amount <= 0:
            return False
        params = PayoutRequest(amount, self.currency, PAYOUT_TEST).serialize()
        reply = await self._proto_or_raise().command(Request(Command.PAYOUT_AMOUNT, params))
        if reply.ok:
            return True
        if reply.status == Response.CANNOT_PROCESS and reply.data[:1] in (b"\x00", b"\x01"):
            return False
        raise self._refusal(Command.PAYOUT_AMOUNT, reply)

    async def payout(self, amount: int) -> PayoutResult:
        self._need_payout("payout")
        if amount <= 0:
            raise ValueError("a payout amount is positive")
        async with self._payout_lock:
            done: asyncio.Future[PayoutResult] = asyncio.get_running_loop().create_future()
            wait = _PayoutWait(amount, done)
            self._s.payout = wait
            try:
                params = PayoutRequest(amount, self.currency, PAYOUT_NOW).serialize()
                await self._cmd(Command.PAYOUT_AMOUNT, params)
                log.info("%s: paying out %d %s", self.name, amount, self.currency)
                async with asyncio.timeout(self.payout_timeout):
                    result = await done
            except TimeoutError:
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: payout of {amount}: no end reported in {self.payout_timeout} s"
                    f" (last DISPENSING {wait.dispensed})",
                ) from None
            finally:
                self._s.payout = None
        if result.complete:
            log.info("%s: paid out %d", self.name, result.dispensed)
        else:
            log.warning("%s: payout stopped: %s", self.name, result)
        return result

    async def halt(self) -> None:
        self._need_payout("halt")
        await self._cmd(Command.HALT_PAYOUT)

    async def smart_empty(self) -> dict[int, int]:
        self._need_payout("smart_empty")
        async with self._payout_lock:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._s.empty = done
            try:
                await self._cmd(Command.SMART_EMPTY)
                log.info("%s: SMART empty started", self.name)
                async with asyncio.timeout(self.payout_timeout):
                    await done
            except TimeoutError:
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: SMART empty not finished in {self.payout_timeout} s",
                ) from None
            finally:
                self._s.empty = None
        reply = await self._cmd(Command.CASHBOX_PAYOUT_OPERATION_DATA)
        moved: dict[int, int] = {}
        for level in parse_levels(reply.data):
            if level.country == self.currency and level.count:
                moved[level.value] = moved.get(level.value, 0) + level.count
        log.info("%s: SMART emptied %s", self.name, moved)
        return moved

    async def set_route(self, value: int, route: Route) -> None:
        """Recycle notes of ``value`` for payouts (``Route.PAYOUT``) or send them to the
        cashbox (``Route.CASHBOX``)."""
        self._need_payout("set_route")
        await self._cmd(
            Command.SET_DENOMINATION_ROUTE, RouteRequest(route, value, self.currency).serialize()
        )

    # -- open ------------------------------------------------------------------------------------

    async def _start(self) -> PowerUpReport:
        proto = self._proto_or_raise()
        reply = await proto.sync()
        if not reply.ok:
            raise self._refusal(Command.SYNC, reply)
        self.protocol = await self._negotiate_protocol()
        info, _ = SetupInfo.deserialize((await self._cmd(Command.SETUP_REQUEST)).data)
        self.setup = info
        self.channels = {
            i: Note(i, a.value, a.country) for i, a in enumerate(info.channels, 1) if a.value
        }
        if not any(n.currency == self.currency for n in self.channels.values()):
            raise DeviceFault(
                FaultKind.FAILURE.value,
                f"{self.name}: the unit's dataset ({info.country}) has no {self.currency} note",
            )
        self.is_payout = (
            info.unit_type == UnitType.SMART_PAYOUT
            if self._payout_option is None
            else self._payout_option
        )
        if self.encrypted:
            await self._negotiate_keys()
        ours = [ch for ch, n in self.channels.items() if n.currency == self.currency]
        await self._cmd(Command.SET_INHIBITS, inhibit_mask(ours, self._n_channels()))
        serial = (await self._cmd(Command.SERIAL_NUMBER)).data[:4]
        self.serial_number = int.from_bytes(serial, "big")
        if self.is_payout:
            await self._cmd(Command.ENABLE_PAYOUT_DEVICE, b"\x00")
        await self._cmd(Command.DISABLE)
        log.info(
            "%s: %s unit %#04x serial %d firmware %s protocol %d, %d channels, %s",
            self.name,
            self.url,
            info.unit_type,
            self.serial_number,
            info.firmware,
            self.protocol,
            len(self.channels),
            "encrypted" if self.encrypted else "in the clear",
        )
        return await self._drain()

    async def _negotiate_protocol(self) -> int:
        proto = self._proto_or_raise()
        for version in range(self.protocol_version, MIN_PROTOCOL - 1, -1):
            request = Request(Command.HOST_PROTOCOL_VERSION, bytes([version]))
            reply = await proto.command(request, encrypt=False)
            if reply.ok:
                return version
            if reply.status != Response.FAIL:
                raise self._refusal(Command.HOST_PROTOCOL_VERSION, reply)
        raise DeviceFault(
            FaultKind.FAILURE.value, f"{self.name}: the unit speaks no SSP protocol >= 6"
        )

    async def _negotiate_keys(self) -> None:
        keys = HostKeys.generate()
        await self._cmd(Command.SET_GENERATOR, u64le(keys.generator), encrypt=False)
        await self._cmd(Command.SET_MODULUS, u64le(keys.modulus), encrypt=False)
        reply = await self._cmd(
            Command.REQUEST_KEY_EXCHANGE, u64le(keys.intermediate), encrypt=False
        )
        if len(reply.data) < 8:
            raise FrameError(f"{self.name}: key exchange reply of {len(reply.data)} bytes")
        negotiated = keys.negotiated(int.from_bytes(reply.data[:8], "little"))
        self._proto_or_raise().start_encryption(aes_key(self.fixed_key, negotiated))

    async def _drain(self) -> PowerUpReport:
        """Settle the unit's pending events into the power-up report."""
        in_escrow: Note | None = None
        stacked: Note | None = None
        reply = await self._proto_or_raise().command(Request(Command.REJECT))
        if reply.ok:
            log.warning("%s: a note was held in escrow at open: given back", self.name)
            in_escrow = Note(0, 0, self.currency)
        pending: tuple[PollEvent, ...] = ()
        for _ in range(DRAIN_POLLS):
            events = await self._poll_events()
            acks = tuple(e for e in events if e.code in ACK_REQUIRED)
            fresh = events if acks != pending else tuple(e for e in events if e not in acks)
            for e in fresh:
                if e.code == Event.CLEARED_FROM_FRONT:
                    in_escrow = self._note(e.channel)
                elif e.code in (Event.CLEARED_TO_CASHBOX, Event.CREDIT):
                    stacked = self._note(e.channel)
                elif e.code == Event.INCOMPLETE_PAYOUT:
                    self.incomplete_payout = self._incomplete(e, None)
                    log.warning("%s: power-up: %s", self.name, self.incomplete_payout)
                elif e.code == Event.READ and e.channel:
                    await self._proto_or_raise().command(Request(Command.REJECT))
                elif e.code in _PAYOUT_ENDS:
                    paid = e.total(self.currency)
                    log.warning(
                        "%s: power-up: last payout ended %s, %d", self.name, e.code.name, paid
                    )
            self._track_faults(events)
            if acks and acks != pending:
                if any(e.code in _POWER_UP_NOTES for e in acks):
                    pending = acks  # the report's events: acknowledged by ack_power_up()
                else:
                    await self._ack()
            if all(e.code in _SETTLED or e in pending for e in events):
                break
            await asyncio.sleep(self.poll_interval)
        s = self._s
        s.unacked, s.hold_ack, s.power_up = pending, bool(pending), bool(pending)
        if stacked is not None:
            log.warning("%s: power-up: %s went into the cashbox", self.name, stacked)
        if in_escrow is not None:
            log.warning("%s: power-up: %s was given back", self.name, in_escrow)
        return PowerUpReport(in_escrow=in_escrow, stacked=stacked)

    # -- the poll task ---------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        try:
            while True:
                async with self._poll_lock:
                    await self._poll_step()
                if self._s.stacking or self._s.moving:
                    # A note is on its way: its next step matters now (the credit point, a
                    # rejection). Poll again at once; the idle cycle resumes when it settles.
                    await asyncio.sleep(MOVING_POLL_S)
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._kick.wait()
                self._kick.clear()
        except _Restarted as exc:
            self._lost(str(exc))
        except (DeviceFault, PortError) as exc:
            self._lost(str(exc))
        except Exception as exc:
            log.exception("%s: poll task failed", self.name)
            self._lost(f"poll task failed: {exc}")

    async def _poll_step(self) -> None:
        s = self._s
        try:
            if s.escrow is not None and not s.stacking:
                reply = await self._proto_or_raise().command(Request(Command.HOLD))
                if reply.ok:
                    return
                if reply.status == Response.KEY_NOT_SET:
                    raise _Restarted(f"{self.name}: the unit lost its keys: it restarted")
                if reply.status != Response.CANNOT_PROCESS:
                    raise self._refusal(Command.HOLD, reply)  # never POLL: it would accept
                # F5: no note in escrow any more: poll to learn what became of it
            events = await self._poll_events()
            s.moving = any(e.code in _MOVING for e in events) or (
                any(e.code == Event.READ and not e.channel for e in events)
            )
            await self._handle(events)
        except (CommandRefused, FrameError) as exc:
            if str(exc) != s.problem:
                log.warning("%s: %s", self.name, exc)
                s.problem = str(exc)
            return
        if s.problem:
            log.info("%s: polling again", self.name)
            s.problem = ""

    async def _poll_events(self) -> tuple[PollEvent, ...]:
        reply = await self._proto_or_raise().command(Request(Command.POLL_WITH_ACK))
        if reply.status == Response.KEY_NOT_SET and self._task is not None:
            raise _Restarted(f"{self.name}: the unit lost its keys: it restarted")
        if not reply.ok:
            raise self._refusal(Command.POLL_WITH_ACK, reply)
        smart = self.setup is not None and self.setup.unit_type in (
            UnitType.SMART_PAYOUT,
            UnitType.SMART_HOPPER,
        )
        return parse_events(reply.data, protocol=self.protocol, smart=smart or self.is_payout)

    async def _handle(self, events: tuple[PollEvent, ...]) -> None:
        s = self._s
        ack_events = tuple(e for e in events if e.code in ACK_REQUIRED)
        if ack_events and ack_events == s.unacked:
            fresh = [e for e in events if e.code not in ACK_REQUIRED]  # the unit repeats them
        else:
            fresh, s.unacked = list(events), ack_events
        for event in fresh:
            await self._event(event)
        self._track_faults(events)
        if s.unacked and not s.hold_ack:
            await self._ack()
            s.unacked = ()

    async def _event(self, e: PollEvent) -> None:
        s = self._s
        code = e.code
        if code == Event.SLAVE_RESET:
            raise _Restarted(f"{self.name}: the unit reset (SLAVE RESET)")
        if code == Event.READ and e.channel:
            if s.escrow is None:
                s.escrow = self._note(e.channel)
                self._emit(NoteEscrowed(s.escrow))
        elif code == Event.CREDIT:
            await self._credit(self._note(e.channel))
        elif code == Event.REJECTED:
            await self._rejected()
        elif code in _PAYOUT_ENDS:
            paid, detail = e.total(self.currency), _PAYOUT_ENDS[code]
            if s.payout is None:
                log.warning("%s: %s %d with no payout waiting", self.name, code.name, paid)
                return
            if code == Event.DISPENSED and paid != s.payout.requested:
                detail = "error"
            self._end_payout(PayoutResult(s.payout.requested, paid, detail))
        elif code == Event.DISPENSING and s.payout is not None:
            s.payout.dispensed = e.total(self.currency)
        elif code == Event.INCOMPLETE_PAYOUT:
            result = self._incomplete(e, s.payout)
            if s.payout is not None:
                self._end_payout(result)
            else:
                self.incomplete_payout = result
                log.warning("%s: %s", self.name, result)
        elif code == Event.ERROR_DURING_PAYOUT:
            log.warning("%s: error during payout (cause %s)", self.name, e.error)
            if s.payout is not None:
                s.payout.error = True
        elif code == Event.SMART_EMPTIED and s.empty is not None and not s.empty.done():
            s.empty.set_result(None)

    async def _credit(self, note: Note) -> None:
        s = self._s
        s.hold_ack = True
        if s.stack is not None and not s.stack.done():
            s.escrow, s.stacking = None, False
            s.stack.set_result(note)
            return
        log.error("%s: CREDIT %s without a stack command: left unacknowledged", self.name, note)
        self._emit(
            Fault(
                FaultKind.FAILURE,
                f"credit of {note.value} {note.currency} not asked for: reopen to report it",
            )
        )

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

    def _track_faults(self, events: tuple[PollEvent, ...]) -> None:
        s = self._s
        current: dict[FaultKind, str] = {}
        for e in events:
            if e.code in _LEVEL_FAULTS:
                kind, detail = _LEVEL_FAULTS[e.code]
                current.setdefault(kind, detail)
        frauds = [e for e in events if e.code == Event.FRAUD_ATTEMPT]
        for kind, detail in current.items():
            if kind not in s.faults:
                log.warning("%s: %s", self.name, detail)
                self._emit(Fault(kind, detail))
        for e in frauds:
            detail = (
                f"fraud attempt on channel {e.channel}"
                if e.channel is not None
                else f"fraud attempt ({e.total(self.currency)} {self.currency})"
            )
            log.warning("%s: %s", self.name, detail)
            self._emit(Fault(FaultKind.FRAUD, detail))
        if (s.faults or s.fraud) and not current and not frauds:
            log.info("%s: faults cleared", self.name)
            self._emit(FaultCleared())
        if (current or frauds) and s.stack is not None and not s.stack.done():
            kind = FaultKind.FRAUD if frauds else next(iter(current))
            s.escrow = None
            s.stack.set_exception(DeviceFault(kind.value, f"{self.name}: note not stacked"))
        s.faults, s.fraud = frozenset(current), bool(frauds)

    def _end_payout(self, result: PayoutResult) -> None:
        wait = self._s.payout
        if wait is not None and not wait.done.done():
            wait.done.set_result(result)

    def _incomplete(self, e: PollEvent, wait: _PayoutWait | None) -> PayoutResult:
        parts = [i for i in e.incomplete if i.country == self.currency]
        dispensed = sum(i.dispensed for i in parts)
        requested = sum(i.requested for i in parts) if wait is None else wait.requested
        return PayoutResult(requested, dispensed, "incomplete")

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

    # -- helpers ---------------------------------------------------------------------------------

    async def _cmd(
        self, code: Command, params: bytes = b"", *, encrypt: bool | None = None
    ) -> Reply:
        reply = await self._proto_or_raise().command(Request(code, params), encrypt=encrypt)
        if not reply.ok:
            raise self._refusal(code, reply)
        return reply

    async def _ack(self) -> None:
        reply = await self._proto_or_raise().command(Request(Command.EVENT_ACK))
        if not reply.ok and reply.status != Response.CANNOT_PROCESS:
            raise self._refusal(Command.EVENT_ACK, reply)

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
            if code == Command.PAYOUT_AMOUNT and err in _PAYOUT_ERRORS:
                return CommandRefused(f"{what}: {PayoutError(err).name.lower()}")
            return CommandRefused(f"{what}: cannot be processed now (error {err})")
        if status == Response.SOFTWARE_ERROR:
            return DeviceFault(FaultKind.FAILURE.value, f"{what}: software error")
        if status in _RESPONSES:
            return CommandRefused(f"{what}: {Response(status).name.lower()}")
        return FrameError(f"{what}: unknown generic response {status:#04x}")

    def _need_payout(self, what: str, *, encrypted: bool = True) -> None:
        if self._link is None:
            raise CommandRefused(f"{self.name}: {what} before open")
        if self._s.gone:
            raise DeviceFault(FaultKind.DISCONNECTED.value, f"{self.name}: the unit is gone")
        if not self.is_payout:
            raise CommandRefused(f"{self.name}: {what}: no SMART Payout fitted")
        if encrypted and not self.encrypted:
            raise CommandRefused(f"{self.name}: {what} needs an encrypted link (encrypted=True)")

    def _note(self, channel: int | None) -> Note:
        note = self.channels.get(channel or 0)
        return note if note is not None else Note(channel or 0, 0, self.currency)

    def _n_channels(self) -> int:
        return len(self.setup.channels) if self.setup is not None else 16

    def _emit(self, event: ValidatorEvent) -> None:
        self._events.put_nowait(event)

    def _proto_or_raise(self) -> HostProtocol:
        if self._proto is None:
            raise CommandRefused(f"{self.name}: not open")
        return self._proto

    async def _close_link(self) -> None:
        link, self._link, self._proto = self._link, None, None
        if link is not None:
            await link.close()


class _Restarted(DriverError):
    """The unit restarted under the driver (SLAVE RESET or KEY NOT SET while polling)."""
