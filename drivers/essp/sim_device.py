"""The simulated eSSP unit's state and how it moves on each poll.

:class:`SimDevice` is the state half of :class:`~drivers.essp.sim.EsspSimulator`: the
constructor, the note in flight (:class:`Phase`), the payout and SMART empty in progress, the
queued and unacknowledged events, power cuts, and the poll that moves a note, a payout or an
empty one step and reports the level conditions. :func:`fewest_notes` picks a payout's notes.
The behaviour is specified in :mod:`~drivers.essp.sim`.

Siblings: :mod:`~drivers.essp.sim_commands` (the wire and the command handlers) and
:mod:`~drivers.essp.sim` (``EsspSimulator``: scripting, snapshot, serving on a pty).
"""

from __future__ import annotations

import enum
import functools
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from drivers.essp.codes import ACK_REQUIRED, Event, RejectCode, Response, Route
from drivers.essp.crypto import DEFAULT_FIXED_KEY, Cipher
from drivers.essp.frames import Amount, Frame, Incomplete, PollEvent, Reply, serialize_events

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


class Phase(enum.Enum):
    """Where the note in flight is on its way through the unit."""

    READING = "reading"
    ESCROW = "escrow"
    STACKING = "stacking"
    CREDITED = "credited"
    REJECTING = "rejecting"
    REJECTED = "rejected"


@dataclass
class NoteInFlight:
    """The note between the bezel and the cashbox (or back out)."""

    channel: int  # 0 while unknown (a fake)
    phase: Phase = Phase.READING
    reject: RejectCode | None = None  # set when the note will be (is being) rejected
    reported: bool = False  # READ n given to the host
    held_at: float = 0.0
    stored: bool = False  # credited into the payout store, not the cashbox


@dataclass
class PayoutInFlight:
    """A PAYOUT AMOUNT being paid, one note per poll."""

    requested: int
    notes: list[int]
    stop_after: int | None
    dispensed: int = 0
    paid: int = 0
    halt: bool = False


@dataclass
class EmptyInFlight:
    """A SMART EMPTY in progress, one stored note per poll to the cashbox."""

    notes: list[int]
    moved: dict[int, int] = field(default_factory=dict)
    total: int = 0


class SimDevice:
    """The state of :class:`~drivers.essp.sim.EsspSimulator`, whose docstring gives the
    parameters, and its movement on polls. Not used on its own."""

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
    _note: NoteInFlight | None
    _payout: PayoutInFlight | None
    _empty: EmptyInFlight | None

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
        version_refusal: int = 0xF8,
        poll_with_ack: bool = True,
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
        self.version_refusal = version_refusal  # FAIL (GA138's example) or F4 on some firmware
        self.poll_with_ack = poll_with_ack  # False: POLL WITH ACK / EVENT ACK unknown (F2)
        self.require_encryption, self.escrow_timeout = require_encryption, escrow_timeout
        self.clock, self.random = clock, random
        self.fixed_key = fixed_key
        values = list(self.channels.values())
        self.levels = {v: 0 for v in values} | dict(levels or {})
        self.routes = {v: Route.PAYOUT for v in values} | dict(routes or {})
        self.cashbox: dict[int, int] = {}
        self.received: list[int] = []  # commands executed (retransmissions excluded)
        self.fast_polls = 0  # polls (POLL, POLL WITH ACK, HOLD) < 200 ms after the last one
        self._last_poll_at = float("-inf")
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

    # -- the power -------------------------------------------------------------------------------

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

    def _credit(self, note: NoteInFlight) -> None:
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
        # GA138: NOTE TRANSFERRED TO STACKER for every note a SMART EMPTY moves (acked)
        return [
            PollEvent(Event.SMART_EMPTYING, amounts=(Amount(e.total, self.currency),)),
            PollEvent(Event.NOTE_TRANSFERRED_TO_STACKER, amounts=(Amount(value, self.currency),)),
        ]

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
