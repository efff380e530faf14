"""A byte-exact ITL NV200 + SMART Payout simulator, built from the driver's own frame classes.

:class:`EsspSimulator` is the device: :meth:`EsspSimulator.handle` takes one command frame
and returns the reply frame (or ``None``: powered off, another address, a packet it
discards). :func:`serve` runs it on the master side of a :class:`~drivers.pty.DevicePort`;
:func:`run_simulator` is what ``kiosk sim validator --protocol essp --link PATH`` runs.
Used by tests and ``kiosk sim``, never by the daemon's hardware path.

Behaviour (GA138 unless marked *sim*):

- Transport: a repeated sequence flag gets the last reply again without executing the
  command; SYNC (in the clear) always executes and expects the next flag clear.
- Encryption: with ``require_encryption`` the unit answers KEY NOT SET (FA) to everything
  but SYNC, RESET, HOST PROTOCOL VERSION, SETUP REQUEST, SERIAL NUMBER, SET BAUD RATE and
  the three key-exchange commands until keys are negotiated (*sim*: that list). Payout
  commands (PAYOUT AMOUNT, HALT, SET ROUTE, SMART EMPTY, SET FIXED KEY) are refused with FA
  unless encrypted. Encrypted commands get encrypted replies; a poll reply carrying credit
  or payout values is encrypted even for a plain command once keys exist. A packet whose
  eCOUNT or CRC is wrong is discarded (no reply). Commands not listed in this docstring
  (EMPTY ALL, FLOAT, UNIT DATA…) answer UNKNOWN COMMAND (F2) (*sim*).
- Notes move one step per poll: READ 0, READ n (escrow), then the next POLL accepts it:
  STACKING, STACKING + CREDIT n, then STACKED (cashbox) or NOTE STORED IN PAYOUT (recycled,
  when the denomination is routed to the payout and the payout is enabled). HOLD keeps a
  note in escrow and restarts its timer; after ``escrow_timeout`` seconds without HOLD the
  note is rejected (reject code ESCROW TIMEOUT). REJECT returns it (REJECT BY HOST).
- POLL WITH ACK repeats CREDIT, NOTE CLEARED FROM FRONT / INTO CASHBOX and the end-of-payout
  events (:data:`~drivers.essp.codes.ACK_REQUIRED`) until EVENT ACK, and nothing moves on
  (notes, payouts) meanwhile; POLL reports them once. EVENT ACK with nothing to acknowledge
  answers F5 (*sim*).
- Level conditions (jam, stacker full, cashbox removed, note path open) are reported on every
  poll until cleared; DISABLED on every poll while disabled; FRAUD ATTEMPT and CASHBOX
  REPLACED once.
- Payouts pay one note per poll (DISPENSING with the running total, then DISPENSED); the
  notes are the fewest that make the amount exactly. :meth:`payout_stop_after` makes the next
  payout stop after ``n`` notes with INCOMPLETE PAYOUT (dispensed, requested). SMART EMPTY
  moves one stored note per poll to the cashbox (SMART EMPTYING, SMART EMPTIED) and keeps
  the per-denomination counts for CASHBOX PAYOUT OPERATION DATA.
- Power: :meth:`power_cut` stops all answers and forgets keys, protocol version, enables and
  queued events; :meth:`power_on` then reports SLAVE RESET, plus NOTE CLEARED FROM FRONT n
  for a note that was being read or held in escrow (returned to the customer), NOTE CLEARED
  INTO CASHBOX n for a note being stacked or credited but not acknowledged (*sim*: it is
  counted in the cashbox), and INCOMPLETE PAYOUT for a payout cut short. RESET does the same.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from drivers.errors import FrameError
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
from drivers.essp.crypto import DEFAULT_FIXED_KEY, Cipher, aes_key, is_prime, slave_exchange
from drivers.essp.frames import (
    STEX,
    Amount,
    Frame,
    FrameParser,
    Incomplete,
    Level,
    PayoutRequest,
    PollEvent,
    Reply,
    Request,
    RouteRequest,
    SetupInfo,
    serialize_events,
    serialize_levels,
    u64le,
)
from drivers.pty import DevicePort
from drivers.validator.base import Note

#: Channel → value in minor units (EUR 5 … 500, as an NV200 EUR dataset).
DEFAULT_CHANNELS: Final[Mapping[int, int]] = {
    1: 500,
    2: 1000,
    3: 2000,
    4: 5000,
    5: 10000,
    6: 20000,
    7: 50000,
}
DEFAULT_SERIAL: Final = 0x001C962C  # the GA138 example serial number

_BEFORE_KEYS: Final = frozenset(
    {
        Command.SYNC,
        Command.RESET,
        Command.HOST_PROTOCOL_VERSION,
        Command.SETUP_REQUEST,
        Command.SERIAL_NUMBER,
        Command.SET_BAUD_RATE,
        Command.SET_GENERATOR,
        Command.SET_MODULUS,
        Command.REQUEST_KEY_EXCHANGE,
    }
)
_ENCRYPTED_ONLY: Final = frozenset(
    {
        Command.PAYOUT_AMOUNT,
        Command.HALT_PAYOUT,
        Command.SET_DENOMINATION_ROUTE,
        Command.SMART_EMPTY,
        Command.SET_FIXED_KEY,
    }
)
_PAYOUT_ONLY: Final = frozenset(
    {
        Command.GET_ALL_LEVELS,
        Command.PAYOUT_AMOUNT,
        Command.HALT_PAYOUT,
        Command.SET_DENOMINATION_ROUTE,
        Command.GET_DENOMINATION_ROUTE,
        Command.SMART_EMPTY,
        Command.CASHBOX_PAYOUT_OPERATION_DATA,
        Command.DISABLE_PAYOUT_DEVICE,
    }
)
_CREDIT_EVENTS: Final = ACK_REQUIRED | {Event.DISPENSING, Event.SMART_EMPTYING}


class Phase(enum.Enum):
    READING = "reading"
    ESCROW = "escrow"
    STACKING = "stacking"
    CREDITED = "credited"
    REJECTING = "rejecting"
    REJECTED = "rejected"


@dataclass
class _NoteInFlight:
    channel: int  # 0 while unknown (a fake)
    phase: Phase = Phase.READING
    reject: RejectCode | None = None  # set when the note will be (is being) rejected
    reported: bool = False  # READ n given to the host
    held_at: float = 0.0
    stored: bool = False  # credited into the payout store, not the cashbox


@dataclass
class _Payout:
    requested: int
    notes: list[int]
    stop_after: int | None
    dispensed: int = 0
    paid: int = 0
    halt: bool = False


@dataclass
class _Empty:
    notes: list[int]
    moved: dict[int, int] = field(default_factory=dict)
    total: int = 0


@dataclass(frozen=True, slots=True)
class SimState:
    """A snapshot of the simulated device, for tests and ``kiosk sim``."""

    powered: bool
    enabled: bool
    payout_enabled: bool
    encrypted: bool
    protocol: int
    escrow: Note | None
    note_phase: str | None
    cashbox: dict[int, int]
    levels: dict[int, int]
    routes: dict[int, Route]
    faults: frozenset[str]
    pending_events: tuple[PollEvent, ...]
    unacked: tuple[PollEvent, ...]
    last_reject: RejectCode
    paying_out: bool


class EsspSimulator:
    """An NV200 validator with an optional SMART Payout, answering like the real unit.

    :param currency: ISO code of every channel.
    :param channels: channel number (1..24) → value in minor units.
    :param address: the SSP address it answers on.
    :param payout: a SMART Payout is fitted (unit type 0x06) — else a plain validator (0x00).
    :param serial: the SERIAL NUMBER reply.
    :param max_protocol: the highest HOST PROTOCOL VERSION accepted (FAIL above).
    :param require_encryption: answer KEY NOT SET until keys are negotiated.
    :param escrow_timeout: seconds a held note waits for HOLD before it is rejected (GA138: 10).
    :param levels: stored notes at start, value → count (payout units).
    :param routes: value → route; every denomination goes to the payout by default.
    :param clock: monotonic seconds (tests may pass a fake clock).
    :param random: random bytes for packing and the DH secret (tests may make them fixed).
    """

    _protocol: int
    _enabled: bool
    _payout_enabled: bool
    _inhibits: int
    _last_seq: bool | None
    _last_reply: Frame | None
    _generator: int | None
    _modulus: int | None
    _cipher: Cipher | None
    _pending_key: bytes | None
    _count: int
    _unacked: list[PollEvent]
    _last_events: list[PollEvent]
    _note: _NoteInFlight | None
    _payout: _Payout | None
    _empty: _Empty | None

    def __init__(
        self,
        *,
        currency: str = "EUR",
        channels: Mapping[int, int] = DEFAULT_CHANNELS,
        address: int = 0,
        payout: bool = True,
        serial: int = DEFAULT_SERIAL,
        firmware: str = "0430",
        max_protocol: int = 8,
        require_encryption: bool = True,
        escrow_timeout: float = 10.0,
        levels: Mapping[int, int] | None = None,
        routes: Mapping[int, Route] | None = None,
        fixed_key: int = DEFAULT_FIXED_KEY,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(set(channels.values())) != len(channels):
            raise ValueError("channel values must be distinct")
        self.currency, self.address, self.payout = currency, address, payout
        self.channels = dict(sorted(channels.items()))
        self.serial, self.firmware, self.max_protocol = serial, firmware, max_protocol
        self.require_encryption, self.escrow_timeout = require_encryption, escrow_timeout
        self.clock, self.random = clock, random
        self.fixed_key = fixed_key
        values = list(self.channels.values())
        self.levels = {v: 0 for v in values} | dict(levels or {})
        self.routes = {v: Route.PAYOUT for v in values} | dict(routes or {})
        self.cashbox: dict[int, int] = {}
        self.received: list[int] = []  # commands executed (retransmissions excluded)
        self.retransmissions = 0  # repeated sequence flags answered from the last reply
        self.on_command: Callable[[int], None] | None = None
        self._drop: list[int | None] = []
        self.frames: deque[Frame] = deque(maxlen=512)  # every frame received, repeats included
        self._last_code = 0
        self._jam = self._stacker_full = self._cashbox_out = self._path_open = False
        self._stop_after: int | None = None
        self._last_op: dict[int, int] = {}
        self._last_reject = RejectCode.NOTE_ACCEPTED
        self._powered = True
        self._volatile_reset()
        self._queue: list[PollEvent] = [PollEvent(Event.SLAVE_RESET)]

    # -- the customer, the technician, the power ---------------------------------------------

    def insert(self, value: int) -> bool:
        """A note of ``value`` is fed. False if the unit does not take it in (off, disabled,
        busy, faulted). Unknown values and inhibited channels are read, then rejected."""
        if not self._can_take_note():
            return False
        channel = self._channel_of(value)
        if channel is None:
            self._note = _NoteInFlight(0, reject=RejectCode.AVERAGE_FAIL)
        elif not self._inhibits >> (channel - 1) & 1:
            self._note = _NoteInFlight(channel, reject=RejectCode.DISABLED_BY_HOST)
        else:
            self._note = _NoteInFlight(channel)
        return True

    def insert_fake(self, reject: RejectCode = RejectCode.AVERAGE_FAIL) -> bool:
        """Something that is not a genuine note: read, then rejected with ``reject``."""
        if not self._can_take_note():
            return False
        self._note = _NoteInFlight(0, reject=reject)
        return True

    def jam(self) -> None:
        """An unsafe jam (E9) on every poll until :meth:`clear_faults`."""
        self._jam = True

    def fraud(self, channel: int) -> None:
        """A fraud attempt on ``channel`` (E6), reported once; a note in flight is rejected."""
        if self.payout:
            amounts = (Amount(self.channels.get(channel, 0), self.currency),)
            self._queue.append(PollEvent(Event.FRAUD_ATTEMPT, amounts=amounts))
        else:
            self._queue.append(PollEvent(Event.FRAUD_ATTEMPT, channel=channel))
        if self._note is not None and self._note.phase in (Phase.READING, Phase.ESCROW):
            self._note.phase, self._note.reject = Phase.REJECTING, RejectCode.FRAUD_CHANNEL

    def cashbox_full(self) -> None:
        """STACKER FULL (E7) on every poll until :meth:`clear_faults` (the cashbox emptied)."""
        self._stacker_full = True

    def cashbox_removed(self) -> None:
        """CASHBOX REMOVED (E3) on every poll until :meth:`cashbox_replaced`."""
        self._cashbox_out = True

    def cashbox_replaced(self, *, emptied: bool = True) -> None:
        """CASHBOX REPLACED (E4) once; an emptied cashbox also clears STACKER FULL."""
        if self._cashbox_out:
            self._cashbox_out = False
            self._queue.append(PollEvent(Event.CASHBOX_REPLACED))
        if emptied:
            self.cashbox.clear()
            self._stacker_full = False

    def note_path_open(self) -> None:
        """NOTE PATH OPEN (E0) on every poll until :meth:`clear_faults`."""
        self._path_open = True

    def clear_faults(self) -> None:
        """A technician cleared the jam, emptied the stacker and closed the note path."""
        self._jam = self._stacker_full = self._path_open = False

    def power_cut(self) -> None:
        """The unit loses power: no more answers; volatile state is lost."""
        if not self._powered:
            return
        events = self._power_up_report()
        self._powered = False
        self._volatile_reset()
        self._queue = events

    def power_on(self) -> None:
        """Power comes back: SLAVE RESET, then what the unit found in its note path."""
        self._powered = True

    def payout_stop_after(self, notes: int) -> None:
        """The next payout stops after ``notes`` notes with INCOMPLETE PAYOUT."""
        self._stop_after = notes

    def drop_replies(self, n: int = 1, *, command: int | None = None) -> None:
        """Lose the next ``n`` replies on the wire (to ``command`` only, if given); the
        commands themselves are executed."""
        self._drop += [command] * n

    def state(self) -> SimState:
        note = self._note
        escrow = None
        if note is not None and note.phase is Phase.ESCROW and note.channel:
            escrow = Note(note.channel, self.channels[note.channel], self.currency)
        faults = {
            name
            for name, on in (
                ("jam", self._jam),
                ("stacker_full", self._stacker_full),
                ("cashbox_removed", self._cashbox_out),
                ("note_path_open", self._path_open),
            )
            if on
        }
        return SimState(
            powered=self._powered,
            enabled=self._enabled,
            payout_enabled=self._payout_enabled,
            encrypted=self._cipher is not None,
            protocol=self._protocol,
            escrow=escrow,
            note_phase=None if note is None else note.phase.value,
            cashbox={v: n for v, n in self.cashbox.items() if n},
            levels=dict(self.levels),
            routes=dict(self.routes),
            faults=frozenset(faults),
            pending_events=tuple(self._queue),
            unacked=tuple(self._unacked),
            last_reject=self._last_reject,
            paying_out=self._payout is not None,
        )

    # -- the wire --------------------------------------------------------------------------------

    def handle(self, frame: Frame) -> Frame | None:
        """One command frame in, its reply out (``None``: no answer)."""
        if not self._powered or frame.address != self.address:
            return None
        self.frames.append(frame)
        if frame.data == bytes([Command.SYNC]):
            self._record(Command.SYNC)
            self._last_seq = True  # the next command must come with the flag clear
            reply = Frame(self.address, Reply(Response.OK).serialize(), frame.seq)
            self._last_reply, self._last_code = reply, Command.SYNC
            return self._send(reply)
        if frame.seq == self._last_seq and self._last_reply is not None:
            self.retransmissions += 1
            return self._send(self._last_reply)
        self._check_escrow_timeout()
        before = len(self.received)
        data, reboot = self._execute_wire(frame.data)
        if data is None:
            return None  # discarded: the host will send it again with the same flag
        self._last_seq = frame.seq
        reply = Frame(self.address, data, frame.seq)
        self._last_reply = reply
        self._last_code = self.received[before] if len(self.received) > before else 0
        if reboot:
            self.power_cut()
            self.power_on()
            return reply
        return self._send(reply)

    def _send(self, reply: Frame) -> Frame | None:
        for i, target in enumerate(self._drop):
            if target is None or target == self._last_code:
                del self._drop[i]
                return None
        return reply

    def _execute_wire(self, data: bytes) -> tuple[bytes | None, bool]:
        if data[0] == STEX:
            if self._cipher is None:
                return Reply(Response.KEY_NOT_SET).serialize(), False
            try:
                count, inner = self._cipher.unwrap(data)
            except FrameError:
                return None, False
            if count != self._count:
                return None, False
            self._count += 1
            request, _ = Request.deserialize(inner)
            reply = self._execute(request, encrypted=True)
            wrapped = self._cipher.wrap(reply.serialize(), self._count)
            self._use_new_key()
            return wrapped, request.code == Command.RESET
        request, _ = Request.deserialize(data)
        if request.code in _ENCRYPTED_ONLY or (
            self.require_encryption and self._cipher is None and request.code not in _BEFORE_KEYS
        ):
            self._record(request.code)
            return Reply(Response.KEY_NOT_SET).serialize(), False
        reply = self._execute(request, encrypted=False)
        if self._cipher is not None and self._carries_credit(request, reply):
            wrapped = self._cipher.wrap(reply.serialize(), self._count)
            self._count += 1
            return wrapped, False
        self._use_new_key()
        return reply.serialize(), request.code == Command.RESET

    def _use_new_key(self) -> None:
        """Keys negotiated by REQUEST KEY EXCHANGE apply after its reply; eCOUNT restarts."""
        if self._pending_key is not None:
            self._cipher = Cipher(self._pending_key, random=self.random)
            self._pending_key, self._count = None, 0

    def _carries_credit(self, request: Request, reply: Reply) -> bool:
        if request.code not in (Command.POLL, Command.POLL_WITH_ACK) or not reply.ok:
            return False
        return any(e.code in _CREDIT_EVENTS for e in self._last_events)

    def _record(self, code: int) -> None:
        self.received.append(code)
        if self.on_command is not None:
            self.on_command(code)

    # -- commands --------------------------------------------------------------------------------

    def _execute(self, request: Request, *, encrypted: bool) -> Reply:
        self._record(request.code)
        try:
            code = Command(request.code)
        except ValueError:
            return Reply(Response.UNKNOWN_COMMAND)
        if code in _PAYOUT_ONLY and not self.payout:
            return Reply(Response.UNKNOWN_COMMAND)
        handler = self._handlers().get(code)
        if handler is None:
            return Reply(Response.UNKNOWN_COMMAND)
        return handler(request.params)

    def _handlers(self) -> dict[Command, Callable[[bytes], Reply]]:
        return {
            Command.SYNC: self._ok_if_empty,
            Command.RESET: self._ok_if_empty,
            Command.SET_INHIBITS: self._set_inhibits,
            Command.SETUP_REQUEST: self._setup_request,
            Command.HOST_PROTOCOL_VERSION: self._host_protocol,
            Command.POLL: functools.partial(self._poll, ack=False),
            Command.POLL_WITH_ACK: functools.partial(self._poll, ack=True),
            Command.EVENT_ACK: self._event_ack,
            Command.REJECT: self._reject,
            Command.HOLD: self._hold,
            Command.DISABLE: functools.partial(self._enable, on=False),
            Command.ENABLE: functools.partial(self._enable, on=True),
            Command.SERIAL_NUMBER: self._serial_number,
            Command.LAST_REJECT_CODE: self._last_reject_code,
            Command.GET_ALL_LEVELS: self._get_all_levels,
            Command.PAYOUT_AMOUNT: self._payout_amount,
            Command.HALT_PAYOUT: self._halt,
            Command.SET_DENOMINATION_ROUTE: self._set_route,
            Command.GET_DENOMINATION_ROUTE: self._get_route,
            Command.SMART_EMPTY: self._smart_empty,
            Command.CASHBOX_PAYOUT_OPERATION_DATA: self._payout_operation_data,
            Command.ENABLE_PAYOUT_DEVICE: functools.partial(self._payout_device, on=True),
            Command.DISABLE_PAYOUT_DEVICE: functools.partial(self._payout_device, on=False),
            Command.SET_GENERATOR: functools.partial(self._set_prime, which="generator"),
            Command.SET_MODULUS: functools.partial(self._set_prime, which="modulus"),
            Command.REQUEST_KEY_EXCHANGE: self._key_exchange,
            Command.SET_BAUD_RATE: self._set_baud_rate,
            Command.SET_FIXED_KEY: self._set_fixed_key,
            Command.RESET_FIXED_KEY: self._reset_fixed_key,
        }

    def _ok_if_empty(self, params: bytes) -> Reply:
        return Reply(Response.OK) if not params else Reply(Response.WRONG_PARAMETERS)

    def _set_inhibits(self, params: bytes) -> Reply:
        if not 2 <= len(params) <= 3:
            return Reply(Response.WRONG_PARAMETERS)
        self._inhibits = int.from_bytes(params, "little")
        return Reply(Response.OK)

    def _setup_request(self, params: bytes) -> Reply:
        values = list(self.channels.values())
        multiplier = 100 if all(v % 100 == 0 for v in values) else 1
        n = max(self.channels, default=0)
        channels = tuple(Amount(self.channels.get(i, 0), self.currency) for i in range(1, n + 1))
        info = SetupInfo(
            UnitType.SMART_PAYOUT if self.payout else UnitType.VALIDATOR,
            self.firmware,
            self.currency,
            self._protocol,
            channels,
            multiplier,
        )
        return Reply(Response.OK, info.serialize())

    def _host_protocol(self, params: bytes) -> Reply:
        if len(params) != 1:
            return Reply(Response.WRONG_PARAMETERS)
        if not 1 <= params[0] <= self.max_protocol:
            return Reply(Response.FAIL)
        self._protocol = params[0]
        return Reply(Response.OK)

    def _enable(self, params: bytes, *, on: bool) -> Reply:
        self._enabled = on
        return Reply(Response.OK)

    def _serial_number(self, params: bytes) -> Reply:
        return Reply(Response.OK, self.serial.to_bytes(4, "big"))

    def _last_reject_code(self, params: bytes) -> Reply:
        return Reply(Response.OK, bytes([self._last_reject]))

    def _reject(self, params: bytes) -> Reply:
        note = self._note
        if note is None or note.phase is not Phase.ESCROW:
            return Reply(Response.CANNOT_PROCESS)
        note.phase, note.reject = Phase.REJECTING, RejectCode.REJECT_BY_HOST
        return Reply(Response.OK)

    def _hold(self, params: bytes) -> Reply:
        note = self._note
        if note is None or note.phase is not Phase.ESCROW or not note.reported:
            return Reply(Response.CANNOT_PROCESS)
        note.held_at = self.clock()
        return Reply(Response.OK)

    def _event_ack(self, params: bytes) -> Reply:
        if not self._unacked:
            return Reply(Response.CANNOT_PROCESS)
        self._unacked.clear()
        return Reply(Response.OK)

    # -- keys ------------------------------------------------------------------------------------

    def _set_prime(self, params: bytes, *, which: str) -> Reply:
        if len(params) != 8:
            return Reply(Response.WRONG_PARAMETERS)
        n = int.from_bytes(params, "little")
        if not is_prime(n):
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        if which == "generator":
            self._generator = n
        else:
            self._modulus = n
        return Reply(Response.OK)

    def _key_exchange(self, params: bytes) -> Reply:
        if len(params) != 8:
            return Reply(Response.WRONG_PARAMETERS)
        if self._generator is None or self._modulus is None:
            return Reply(Response.CANNOT_PROCESS)
        secret = int.from_bytes(self.random(8), "little") % (self._modulus - 3) + 2
        inter, negotiated = slave_exchange(
            self._generator, self._modulus, int.from_bytes(params, "little"), secret
        )
        self._pending_key = aes_key(self.fixed_key, negotiated)
        return Reply(Response.OK, u64le(inter))

    def _set_baud_rate(self, params: bytes) -> Reply:
        if len(params) != 2:
            return Reply(Response.WRONG_PARAMETERS)
        if params[0] > 2 or params[1] > 1:
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        return Reply(Response.OK)  # a pty has no baud rate to change

    def _set_fixed_key(self, params: bytes) -> Reply:
        if len(params) != 8:
            return Reply(Response.WRONG_PARAMETERS)
        self.fixed_key = int.from_bytes(params, "little")
        return Reply(Response.OK)

    def _reset_fixed_key(self, params: bytes) -> Reply:
        self.fixed_key = DEFAULT_FIXED_KEY
        return Reply(Response.OK)

    # -- payout ----------------------------------------------------------------------------------

    def _get_all_levels(self, params: bytes) -> Reply:
        levels = [Level(self.levels.get(v, 0), v, self.currency) for v in self.channels.values()]
        return Reply(Response.OK, serialize_levels(levels))

    def _payout_device(self, params: bytes, *, on: bool) -> Reply:
        if not self.payout:
            return Reply(Response.CANNOT_PROCESS, bytes([1]))  # no device connected
        if on and len(params) > 1:
            return Reply(Response.WRONG_PARAMETERS)
        self._payout_enabled = on
        return Reply(Response.OK)

    def _payout_amount(self, params: bytes) -> Reply:
        try:
            req, rest = PayoutRequest.deserialize(params)
        except FrameError:
            return Reply(Response.WRONG_PARAMETERS)
        if rest or req.option not in (PAYOUT_NOW, PAYOUT_TEST) or req.value <= 0:
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        if req.country != self.currency:
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        if not self._payout_enabled:
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.DISABLED]))
        if self._payout is not None or self._empty is not None or self._note_moving():
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.BUSY]))
        if sum(v * n for v, n in self.levels.items()) < req.value:
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.NOT_ENOUGH_VALUE]))
        notes = fewest_notes(req.value, self.levels)
        if notes is None:
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.CANNOT_PAY_EXACT]))
        if req.option == PAYOUT_NOW:
            self._payout = _Payout(req.value, notes, self._stop_after)
            self._stop_after = None
        return Reply(Response.OK)

    def _halt(self, params: bytes) -> Reply:
        if self._payout is None:
            return Reply(Response.CANNOT_PROCESS)
        self._payout.halt = True
        return Reply(Response.OK)

    def _set_route(self, params: bytes) -> Reply:
        try:
            req, rest = RouteRequest.deserialize(params)
        except FrameError:
            return Reply(Response.WRONG_PARAMETERS)
        if rest or req.country != self.currency or req.value not in self.routes:
            return Reply(Response.CANNOT_PROCESS, bytes([2]))  # invalid currency/value
        self.routes[req.value] = req.route
        return Reply(Response.OK)

    def _get_route(self, params: bytes) -> Reply:
        try:
            amount, rest = Amount.deserialize(params)
        except FrameError:
            return Reply(Response.WRONG_PARAMETERS)
        if rest or amount.country != self.currency or amount.value not in self.routes:
            return Reply(Response.CANNOT_PROCESS, bytes([2]))
        return Reply(Response.OK, bytes([self.routes[amount.value]]))

    def _smart_empty(self, params: bytes) -> Reply:
        if self._payout is not None or self._empty is not None:
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.BUSY]))
        notes = [v for v, n in sorted(self.levels.items()) for _ in range(n)]
        self._empty = _Empty(notes, {v: 0 for v in self.channels.values()})
        return Reply(Response.OK)

    def _payout_operation_data(self, params: bytes) -> Reply:
        levels = [Level(self._last_op.get(v, 0), v, self.currency) for v in self.channels.values()]
        return Reply(Response.OK, serialize_levels(levels))

    # -- polls -----------------------------------------------------------------------------------

    def _poll(self, params: bytes, *, ack: bool) -> Reply:
        events: list[PollEvent] = list(self._unacked) if ack else []
        paused = ack and bool(self._unacked)
        held = [e for e in self._queue if paused and e.code in ACK_REQUIRED]
        fresh = [e for e in self._queue if not (paused and e.code in ACK_REQUIRED)]
        self._queue = held
        if not paused:
            fresh += self._note_step()
            fresh += self._payout_step()
            fresh += self._empty_step()
        for on, code in (
            (self._jam, Event.UNSAFE_JAM),
            (self._stacker_full, Event.STACKER_FULL),
            (self._cashbox_out, Event.CASHBOX_REMOVED),
            (self._path_open, Event.NOTE_PATH_OPEN),
        ):
            if on:
                fresh.append(PollEvent(code))
        if not self._enabled:
            fresh.append(PollEvent(Event.DISABLED))
        if ack:
            self._unacked += [e for e in fresh if e.code in ACK_REQUIRED]
        events += fresh
        self._last_events = events
        smart = self.payout
        return Reply(Response.OK, serialize_events(events, protocol=self._protocol, smart=smart))

    def _note_step(self) -> list[PollEvent]:
        note = self._note
        if note is None or self._jam:
            return []
        ch = note.channel
        if note.phase is Phase.READING:
            note.phase = Phase.REJECTING if note.reject is not None else Phase.ESCROW
            return [PollEvent(Event.READ, channel=0)]
        if note.phase is Phase.ESCROW:
            if not note.reported:
                note.reported, note.held_at = True, self.clock()
                return [PollEvent(Event.READ, channel=ch)]
            note.phase = Phase.STACKING  # a poll after READ n accepts the note
            return [PollEvent(Event.STACKING)]
        if note.phase is Phase.STACKING:
            self._credit(note)
            note.phase = Phase.CREDITED
            return [PollEvent(Event.STACKING), PollEvent(Event.CREDIT, channel=ch)]
        if note.phase is Phase.CREDITED:
            self._note = None
            self._last_reject = RejectCode.NOTE_ACCEPTED
            if note.stored:
                return [PollEvent(Event.NOTE_STORED_IN_PAYOUT)]
            return [PollEvent(Event.STACKED)]
        if note.phase is Phase.REJECTING:
            note.phase = Phase.REJECTED
            return [PollEvent(Event.REJECTING)]
        self._note = None  # REJECTED
        self._last_reject = note.reject or RejectCode.NOTE_ACCEPTED
        return [PollEvent(Event.REJECTED)]

    def _credit(self, note: _NoteInFlight) -> None:
        value = self.channels[note.channel]
        if self._payout_enabled and self.routes.get(value) is Route.PAYOUT:
            self.levels[value] = self.levels.get(value, 0) + 1
            note.stored = True
        else:
            self.cashbox[value] = self.cashbox.get(value, 0) + 1

    def _payout_step(self) -> list[PollEvent]:
        p = self._payout
        if p is None:
            return []
        amounts = (Amount(p.dispensed, self.currency),)
        if p.halt:
            self._payout = None
            return [PollEvent(Event.HALTED, amounts=amounts)]
        if p.stop_after is not None and p.paid >= p.stop_after:
            self._payout = None
            part = Incomplete(p.dispensed, p.requested, self.currency)
            return [PollEvent(Event.INCOMPLETE_PAYOUT, incomplete=(part,))]
        if not p.notes:
            self._payout = None
            return [PollEvent(Event.DISPENSED, amounts=amounts)]
        value = p.notes.pop(0)
        self.levels[value] -= 1
        p.dispensed, p.paid = p.dispensed + value, p.paid + 1
        return [PollEvent(Event.DISPENSING, amounts=(Amount(p.dispensed, self.currency),))]

    def _empty_step(self) -> list[PollEvent]:
        e = self._empty
        if e is None:
            return []
        if not e.notes:
            self._empty, self._last_op = None, dict(e.moved)
            return [PollEvent(Event.SMART_EMPTIED, amounts=(Amount(e.total, self.currency),))]
        value = e.notes.pop()
        self.levels[value] -= 1
        self.cashbox[value] = self.cashbox.get(value, 0) + 1
        e.moved[value] = e.moved.get(value, 0) + 1
        e.total += value
        return [PollEvent(Event.SMART_EMPTYING, amounts=(Amount(e.total, self.currency),))]

    # -- internals -------------------------------------------------------------------------------

    def _volatile_reset(self) -> None:
        self._protocol = 6
        self._enabled = self._payout_enabled = False
        self._inhibits = 0
        self._last_seq = None
        self._last_reply = None
        self._generator = self._modulus = None
        self._cipher = self._pending_key = None
        self._count = 0
        self._unacked = []
        self._last_events = []
        self._note = self._payout = self._empty = None

    def _power_up_report(self) -> list[PollEvent]:
        events = [PollEvent(Event.SLAVE_RESET)]
        note = self._note
        if note is not None:
            if note.phase in (Phase.READING, Phase.ESCROW, Phase.REJECTING, Phase.REJECTED):
                events.append(PollEvent(Event.CLEARED_FROM_FRONT, channel=note.channel))
            elif note.phase is Phase.STACKING:
                value = self.channels[note.channel]
                self.cashbox[value] = self.cashbox.get(value, 0) + 1
                events.append(PollEvent(Event.CLEARED_TO_CASHBOX, channel=note.channel))
            elif any(e.code == Event.CREDIT for e in self._unacked):
                events.append(PollEvent(Event.CLEARED_TO_CASHBOX, channel=note.channel))
        p = self._payout
        if p is not None:
            part = Incomplete(p.dispensed, p.requested, self.currency)
            events.append(PollEvent(Event.INCOMPLETE_PAYOUT, incomplete=(part,)))
        return events

    def _can_take_note(self) -> bool:
        busy = self._note is not None or self._payout is not None or self._empty is not None
        faulted = self._jam or self._stacker_full or self._cashbox_out or self._path_open
        return self._powered and self._enabled and not busy and not faulted

    def _note_moving(self) -> bool:
        """A note between the bezel and the credit (once credited it no longer blocks)."""
        return self._note is not None and self._note.phase is not Phase.CREDITED

    def _channel_of(self, value: int) -> int | None:
        return next((ch for ch, v in self.channels.items() if v == value), None)

    def _check_escrow_timeout(self) -> None:
        note = self._note
        if (
            note is not None
            and note.phase is Phase.ESCROW
            and note.reported
            and self.clock() - note.held_at > self.escrow_timeout
        ):
            note.phase, note.reject = Phase.REJECTING, RejectCode.ESCROW_TIMEOUT


def fewest_notes(amount: int, levels: Mapping[int, int]) -> list[int] | None:
    """The fewest notes (largest first) from ``levels`` (value → count) making ``amount``."""
    values = sorted((v for v, n in levels.items() if n > 0 and v > 0), reverse=True)

    @functools.cache
    def best(i: int, left: int) -> tuple[int, ...] | None:
        if left == 0:
            return ()
        if i == len(values):
            return None
        v = values[i]
        found: tuple[int, ...] | None = None
        for k in range(min(levels[v], left // v), -1, -1):
            rest = best(i + 1, left - k * v)
            if rest is not None and (found is None or k + len(rest) < len(found)):
                found = (v,) * k + rest
        return found

    result = best(0, amount)
    return None if result is None else list(result)


async def serve(sim: EsspSimulator, port: DevicePort) -> None:
    """Answer the driver on ``port`` until cancelled (starts the port's reader)."""
    port.start()
    parser = FrameParser()
    while True:
        data = await port.read_some()
        for frame in parser.feed(data):
            reply = sim.handle(frame)
            if reply is not None:
                port.write(reply.serialize())


async def run_simulator(
    link_path: Path,
    *,
    currency: str = "EUR",
    channels: Mapping[int, int] = DEFAULT_CHANNELS,
    payout: bool = True,
    require_encryption: bool = True,
    levels: Mapping[int, int] | None = None,
    sim: EsspSimulator | None = None,
) -> None:
    """``kiosk sim validator --protocol essp --link PATH``: a simulated NV200 (+ SMART Payout)
    on a new pty, with ``link_path`` a symlink to it, serving until cancelled. Pass ``sim`` to
    keep a handle for scripting (``insert``, ``jam``...)."""
    device = sim or EsspSimulator(
        currency=currency,
        channels=channels,
        payout=payout,
        require_encryption=require_encryption,
        levels=levels,
    )
    port = DevicePort()
    try:
        port.link(link_path)
        await serve(device, port)
    finally:
        with contextlib.suppress(Exception):
            port.close()
