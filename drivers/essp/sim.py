"""A byte-exact ITL NV200 + SMART Payout simulator, built from the driver's own frame classes.

:class:`EsspSimulator` is the device: :meth:`EsspSimulator.handle` takes one command frame
and returns the reply frame (or ``None``: powered off, another address, a packet it
discards). :func:`serve` runs it on the master side of a :class:`~drivers.pty.DevicePort`;
:func:`run_simulator` is what ``kiosk sim validator --protocol essp --link PATH`` runs.
Used by tests and ``kiosk sim``, never by the daemon's hardware path.

Layout: :mod:`~drivers.essp.sim_device` (the unit's state and its movement on each poll),
:mod:`~drivers.essp.sim_commands` (the wire, encryption and command handlers), and this module
(:class:`EsspSimulator` with its scripting methods and :meth:`~EsspSimulator.state`, plus
:func:`serve` and :func:`run_simulator`).

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from drivers.essp.codes import Event, RejectCode, Route
from drivers.essp.frames import Amount, FrameParser, PollEvent
from drivers.essp.sim_commands import SimCommands
from drivers.essp.sim_device import (
    DEFAULT_CHANNELS,
    DEFAULT_SERIAL,
    NoteInFlight,
    Phase,
    fewest_notes,
)
from drivers.pty import DevicePort
from drivers.validator.base import Note

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_SERIAL",
    "EsspSimulator",
    "Phase",
    "SimState",
    "fewest_notes",
    "run_simulator",
    "serve",
]


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


class EsspSimulator(SimCommands):
    """An NV200 validator with an optional SMART Payout, answering like the real unit.

    :param currency: ISO code of every channel.
    :param channels: channel number (1..24) → value in minor units.
    :param address: the SSP address it answers on.
    :param payout: a SMART Payout is fitted (unit type 0x06) — else a plain validator (0x00).
    :param serial: the SERIAL NUMBER reply.
    :param max_protocol: the highest HOST PROTOCOL VERSION accepted.
    :param version_refusal: the answer above it: FAIL (0xF8, GA138's example) or PARAMETER OUT
        OF RANGE (0xF4), as some firmware gives.
    :param poll_with_ack: False: POLL WITH ACK and EVENT ACK are unknown (F2), as on older
        firmware; plain POLL then gives each event once.
    :param require_encryption: answer KEY NOT SET until keys are negotiated.
    :param escrow_timeout: seconds a held note waits for HOLD before it is rejected (GA138: 10).
    :param levels: stored notes at start, value → count (payout units).
    :param routes: value → route; every denomination goes to the payout by default.
    :param clock: monotonic seconds (tests may pass a fake clock).
    :param random: random bytes for packing and the DH secret (tests may make them fixed).
    """

    # -- the customer, the technician (power: SimDevice.power_cut / power_on) ----------------------

    def insert(self, value: int) -> bool:
        """A note of ``value`` is fed. False if the unit does not take it in (off, disabled,
        busy, faulted). Unknown values and inhibited channels are read, then rejected."""
        if not self._can_take_note():
            return False
        channel = self._channel_of(value)
        if channel is None:
            self._note = NoteInFlight(0, reject=RejectCode.AVERAGE_FAIL)
        elif not self._inhibits >> (channel - 1) & 1:
            self._note = NoteInFlight(channel, reject=RejectCode.DISABLED_BY_HOST)
        else:
            self._note = NoteInFlight(channel)
        return True

    def insert_fake(self, reject: RejectCode = RejectCode.AVERAGE_FAIL) -> bool:
        """Something that is not a genuine note: read, then rejected with ``reject``."""
        if not self._can_take_note():
            return False
        self._note = NoteInFlight(0, reject=reject)
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
