"""A byte-exact JCM ID-003 acceptor, for tests, the demo and ``kiosk sim validator``.

Never used by the daemon's hardware path. :class:`Id003Simulator` is the device's state
machine, built from the same :mod:`~drivers.id003.frames` as the driver; :func:`serve` puts it
on the master end of a pty (:class:`~drivers.pty.DevicePort`) and :func:`run_simulator` links
that pty at a stable path. The customer and the technician are played from Python on the event
loop's thread (:meth:`Id003Simulator.insert`, :meth:`~Id003Simulator.jam`, …).

State machine (one status answered per STATUS REQUEST)::

    POWER UP (40/41/42) --RESET--> INITIALIZE --> DISABLE <--C3--> IDLING
    IDLING --insert--> ACCEPTING --> ESCROW(code) | REJECTING(reason) --> idle
    ESCROW/HOLDING --STACK-1/2--> STACKING --> VEND VALID (repeated until ACK)
                                                 --ACK--> STACKED --> idle
    ESCROW/HOLDING --RETURN--> RETURNING --> idle;  --HOLD--> HOLDING

A passing status (ACCEPTING, STACKING, STACKED, REJECTING, RETURNING, INITIALIZE) is answered at
least once before the next one, so a poller sees every step; ``step_time``/``stack_time`` make
them last longer. Faults (jam, stacker full/open, cheated, failure) are answered instead of the
status underneath until cleared. The note counts in the cashbox when it reaches VEND VALID.

COMMUNICATION MODE (C2 n): 0 (polled) is echoed like any setting; the interrupt modes (1, 2,
where a real unit sends ENQ 0x05 for the host to poll) are not simulated and are refused with
INVALID COMMAND, so a host never waits for an ENQ. A vanished port is simulated by closing the
:class:`~drivers.pty.DevicePort` (the pty hangs up: the driver's reads fail).

Power (:meth:`~Id003Simulator.power_cut`): a cut device answers nothing. At
:meth:`~Id003Simulator.power_on` it reports POWER UP WITH BILL IN ACCEPTOR (41) if a note was in
the acceptor (it is given back at the next RESET, never counted) or WITH BILL IN STACKER (42) if
it was stacking or at VEND VALID (it counts in the cashbox), else POWER UP (40).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from drivers.id003.codes import (
    ESCROW_TABLES,
    OPERATIONS,
    SETTINGS,
    Command,
    FailureCode,
    RejectReason,
    Status,
)
from drivers.id003.frames import (
    Frame,
    currency_record,
    encode_currency_assign,
    inhibited_codes,
)
from drivers.id003.protocol import FrameParser
from drivers.pty import DevicePort

log = logging.getLogger(__name__)

#: Setting values after power-up and RESET: every denomination enabled, acceptor inhibited.
DEFAULT_SETTINGS: Final[Mapping[Command, bytes]] = {
    Command.SET_DENOMINATIONS: b"\x00\x00",
    Command.SET_SECURITY: b"\x00\x00",
    Command.SET_COMMUNICATION_MODE: b"\x00",
    Command.SET_INHIBIT: b"\x01",
    Command.SET_DIRECTION: b"\x00",
    Command.SET_OPTIONAL_FUNCTION: b"\x00\x00",
    Command.SET_BARCODE_FUNCTION: b"\x01\x12",
    Command.SET_BAR_INHIBIT: b"\x00",
}

#: Statuses with a note in the acceptor's transport: only SET_INHIBIT is taken then.
_BUSY: Final = frozenset(
    {
        Status.ACCEPTING,
        Status.ESCROW,
        Status.HOLDING,
        Status.STACKING,
        Status.VEND_VALID,
        Status.STACKED,
        Status.REJECTING,
        Status.RETURNING,
    }
)
_IN_STACKER: Final = frozenset({Status.STACKING, Status.VEND_VALID, Status.STACKED})
_IN_ESCROW: Final = frozenset({Status.ESCROW, Status.HOLDING})


@dataclass(frozen=True, slots=True)
class SimState:
    """What the simulated device holds, for tests and the control channel."""

    status: Status  # what a STATUS REQUEST answers now (the fault, if any)
    data: bytes  # its data byte(s)
    powered: bool
    escrow: int | None  # value (minor units) of the note in the acceptor, if any
    cashbox: Mapping[int, int]  # value → count
    inhibited: bool  # SET_INHIBIT 01
    denominations: bytes  # SET_DENOMINATIONS d1 d2
    pending_ack: bool  # at VEND VALID, waiting for the host's ACK
    vend_valid_reports: int  # VEND VALID answers since the last STACK command
    fault: Status | None


class Id003Simulator:
    """The acceptor's side of ID-003.

    :param currency: ISO code; picks the escrow table when ``escrow_table`` is not given
        (EUR 0x62..0x68 = 5..500, USD 0x61/0x63..0x67 = 1..100).
    :param escrow_table: escrow code → value in minor units, answered to CURRENCY ASSIGN.
    :param minor_digits: decimals of the currency (records carry major units).
    :param country_code: the JCM country byte put in each CURRENCY ASSIGN record.
    :param foreign_table: escrow code → value of notes of a second currency the acceptor also
        takes (multi-currency firmware), answered with ``foreign_country`` in CURRENCY ASSIGN
        and fed with ``insert(value, foreign=True)``.
    :param foreign_country: the JCM country byte of ``foreign_table``.
    :param answers_currency_assign: ``False`` answers 0x8A with INVALID COMMAND (old firmware).
    :param escrow_timeout: seconds a note waits in escrow (HOLD/WAIT restart it) before the
        device returns it by itself; ``None`` waits for ever.
    :param step_time: seconds each passing status lasts at least.
    :param stack_time: seconds STACKING lasts at least.
    :param init_polls: status requests answered with INITIALIZE after a RESET.
    :param cashbox_capacity: notes after which the device reports STACKER FULL.
    """

    def __init__(
        self,
        *,
        currency: str = "EUR",
        escrow_table: Mapping[int, int] | None = None,
        minor_digits: int = 2,
        country_code: int = 0,
        foreign_table: Mapping[int, int] | None = None,
        foreign_country: int = 1,
        answers_currency_assign: bool = True,
        version: str = "",
        boot_version: str = "BOOT-SIM V1.00",
        escrow_timeout: float | None = None,
        step_time: float = 0.0,
        stack_time: float = 0.0,
        init_polls: int = 1,
        cashbox_capacity: int | None = None,
    ) -> None:
        if escrow_table is None:
            if currency not in ESCROW_TABLES:
                raise ValueError(f"no built-in ID-003 escrow table for {currency}: pass one")
            escrow_table = ESCROW_TABLES[currency]
        self.currency = currency
        self.escrow_table: dict[int, int] = dict(escrow_table)
        self.foreign_table: dict[int, int] = dict(foreign_table or {})
        self._values = {**self.foreign_table, **self.escrow_table}  # code → value, any currency
        self.records = tuple(
            currency_record(code, value, minor_digits, country)
            for table, country in (
                (self.escrow_table, country_code),
                (self.foreign_table, foreign_country),
            )
            for code, value in sorted(table.items())
        )
        self.answers_currency_assign = answers_currency_assign
        self.version = version or f"i({currency})100-SS ID003-05V000-00 SIMULATOR"
        self.boot_version = boot_version
        self.escrow_timeout = escrow_timeout
        self.step_time = step_time
        self.stack_time = stack_time
        self.init_polls = max(1, init_polls)
        self.cashbox_capacity = cashbox_capacity
        #: Every frame the host sent, in order (for tests that check what was sent when).
        self.received: list[Frame] = []
        self.vend_valid_reports = 0
        self._settings: dict[Command, bytes] = dict(DEFAULT_SETTINGS)
        self._cashbox: dict[int, int] = {}
        self._powered = True
        self._status = Status.POWER_UP
        self._data = b""
        self._entered = time.monotonic()
        self._reported = 0
        self._after_accepting: tuple[Status, bytes] = (Status.IDLING, b"")
        self._bill: int | None = None  # escrow code of the note in the machine
        self._counted = False
        self._escrow_since = 0.0
        self._fault: tuple[Status, bytes] | None = None
        self._pause_left = 0
        self._glitch: tuple[Status, int] | None = None

    # -- the wire --------------------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return self._powered

    def handle(self, frame: Frame) -> Frame | None:
        """The answer to one frame from the host (``None``: no answer)."""
        self.received.append(frame)
        if not self._powered:
            return None
        if self._glitch is not None:
            code, left = self._glitch
            self._glitch = (code, left - 1) if left > 1 else None
            return Frame(code)
        try:
            cmd = Command(frame.cmd)
        except ValueError:
            return Frame(Status.INVALID_COMMAND)
        if cmd is Command.STATUS_REQUEST:
            return self._report()
        if cmd is Command.ACK:
            self._host_ack()
            return None
        if cmd in OPERATIONS:
            return self._operation(cmd)
        if cmd in SETTINGS:
            return self._setting(cmd, frame.data)
        for setting, getter in SETTINGS.items():
            if cmd is getter:
                return Frame(cmd, self._settings[setting])
        if cmd is Command.VERSION:
            return Frame(cmd, self.version.encode("ascii"))
        if cmd is Command.BOOT_VERSION:
            return Frame(cmd, self.boot_version.encode("ascii"))
        if cmd is Command.CURRENCY_ASSIGN and self.answers_currency_assign:
            return Frame(cmd, encode_currency_assign(self.records))
        return Frame(Status.INVALID_COMMAND)

    def communication_error(self) -> Frame | None:
        """The answer to a frame that arrived with a bad CRC."""
        return Frame(Status.COMMUNICATION_ERROR) if self._powered else None

    # -- the customer and the technician ---------------------------------------------------------

    def insert(self, value: int, *, foreign: bool = False) -> bool:
        """A customer feeds a note of ``value`` minor units (of the ``foreign_table``
        currency with ``foreign``). ``False`` if the acceptor does not draw it in (inhibited,
        busy, faulted, off). An unknown value is rejected (0x76), an inhibited denomination
        too (0x79)."""
        if not self._can_draw_in():
            return False
        table = self.foreign_table if foreign else self.escrow_table
        code = next((c for c, v in sorted(table.items()) if v == value), None)
        if code is None:
            self._after_accepting = (Status.REJECTING, bytes((RejectReason.DISCRIMINATION,)))
        elif code in inhibited_codes(self._settings[Command.SET_DENOMINATIONS]):
            self._after_accepting = (Status.REJECTING, bytes((RejectReason.INHIBIT,)))
        else:
            self._after_accepting = (Status.ESCROW, bytes((code,)))
            self._bill, self._counted = code, False
        self._enter(Status.ACCEPTING)
        return True

    def insert_fake(self, reason: int = RejectReason.DISCRIMINATION) -> bool:
        """Something that is not a genuine note: rejected with ``reason``."""
        if not self._can_draw_in():
            return False
        self._after_accepting = (Status.REJECTING, bytes((reason,)))
        self._enter(Status.ACCEPTING)
        return True

    def pause(self, polls: int = 1) -> None:
        """A second note is pushed in: PAUSE for the next ``polls`` status requests."""
        self._pause_left = polls

    def jam(self, in_stacker: bool = False) -> None:
        self._fault = (Status.JAM_IN_STACKER if in_stacker else Status.JAM_IN_ACCEPTOR, b"")

    def fraud(self) -> None:
        self._fault = (Status.CHEATED, b"")

    def stacker_full(self) -> None:
        self._fault = (Status.STACKER_FULL, b"")

    def stacker_open(self) -> None:
        self._fault = (Status.STACKER_OPEN, b"")

    def stacker_closed(self) -> None:
        if self._fault is not None and self._fault[0] is Status.STACKER_OPEN:
            self.clear_fault()

    def failure(self, code: int = FailureCode.STACK_MOTOR) -> None:
        self._fault = (Status.FAILURE, bytes((code,)))

    def clear_fault(self) -> None:
        """A technician cleared the fault; the status underneath carries on."""
        self._fault = None
        self._entered = time.monotonic()

    def empty_cashbox(self) -> dict[int, int]:
        """A technician empties the cashbox (clears STACKER FULL); returns what it held."""
        held, self._cashbox = self._cashbox, {}
        if self._fault is not None and self._fault[0] is Status.STACKER_FULL:
            self.clear_fault()
        return held

    def glitch(self, code: int = Status.COMMUNICATION_ERROR, count: int = 1) -> None:
        """Answer the next ``count`` frames with ``code`` (4A COMMUNICATION ERROR, 4B INVALID
        COMMAND) instead of handling them."""
        self._glitch = (Status(code), count) if count > 0 else None

    def power_cut(self) -> None:
        """The device loses power: it stops answering; see the module doc for the note."""
        if not self._powered:
            return
        self._powered = False
        power_up = Status.POWER_UP
        if self._bill is not None:
            if self._status in _IN_STACKER:
                self._count()
                self._bill = None
                power_up = Status.POWER_UP_BILL_IN_STACKER
            else:
                power_up = Status.POWER_UP_BILL_IN_ACCEPTOR
        self._settings = dict(DEFAULT_SETTINGS)
        self._pause_left, self._glitch = 0, None
        self._enter(power_up)

    def power_on(self) -> None:
        self._powered = True

    def cashbox(self) -> dict[int, int]:
        return dict(self._cashbox)

    def state(self) -> SimState:
        status, data = self._fault if self._fault is not None else (self._status, self._data)
        return SimState(
            status=status,
            data=data,
            powered=self._powered,
            escrow=None if self._bill is None else self._values[self._bill],
            cashbox=dict(self._cashbox),
            inhibited=self._inhibited,
            denominations=self._settings[Command.SET_DENOMINATIONS],
            pending_ack=self._status is Status.VEND_VALID,
            vend_valid_reports=self.vend_valid_reports,
            fault=None if self._fault is None else self._fault[0],
        )

    # -- the state machine -----------------------------------------------------------------------

    @property
    def _inhibited(self) -> bool:
        return self._settings[Command.SET_INHIBIT] != b"\x00"

    def _can_draw_in(self) -> bool:
        return self._powered and self._fault is None and self._status is Status.IDLING

    def _enter(self, status: Status, data: bytes = b"") -> None:
        if status is not self._status or data != self._data:
            log.debug("id003 sim: %s -> %s %s", self._status.name, status.name, data.hex())
        self._status, self._data = status, data
        self._entered, self._reported = time.monotonic(), 0
        if status is Status.ESCROW:
            self._escrow_since = self._entered

    def _idle(self) -> None:
        self._enter(Status.DISABLE if self._inhibited else Status.IDLING)

    def _report(self) -> Frame:
        self._expire_escrow()
        if self._fault is not None:
            return Frame(*self._fault)
        if self._pause_left > 0:
            self._pause_left -= 1
            return Frame(Status.PAUSE)
        answer = Frame(self._status, self._data)
        self._reported += 1
        if self._status is Status.VEND_VALID:
            self.vend_valid_reports += 1
        self._advance()
        return answer

    def _expire_escrow(self) -> None:
        if (
            self.escrow_timeout is not None
            and self._status in _IN_ESCROW
            and time.monotonic() - self._escrow_since >= self.escrow_timeout
        ):
            self._enter(Status.RETURNING)

    def _advance(self) -> None:
        status = self._status
        needed = self.init_polls if status is Status.INITIALIZE else 1
        lasts = self.stack_time if status is Status.STACKING else self.step_time
        if self._reported < needed or time.monotonic() - self._entered < lasts:
            return
        if status is Status.ACCEPTING:
            self._enter(*self._after_accepting)
        elif status is Status.STACKING:
            self._count()
            self._enter(Status.VEND_VALID)
        elif status is Status.STACKED:
            self._bill = None
            self._idle()
            capacity = self.cashbox_capacity
            if capacity is not None and sum(self._cashbox.values()) >= capacity:
                self.stacker_full()
        elif status in (Status.REJECTING, Status.RETURNING):
            self._bill = None
            self._idle()
        elif status is Status.INITIALIZE:
            self._idle()

    def _operation(self, cmd: Command) -> Frame:
        if cmd is Command.RESET:
            self._reset()
            return Frame(Status.ACK)
        if self._fault is not None or self._status not in _IN_ESCROW:
            return Frame(Status.INVALID_COMMAND)
        if cmd in (Command.STACK_1, Command.STACK_2):
            self.vend_valid_reports = 0
            self._enter(Status.STACKING)
        elif cmd is Command.RETURN:
            self._enter(Status.RETURNING)
        elif cmd is Command.HOLD:
            self._enter(Status.HOLDING)
            self._escrow_since = self._entered
        else:  # WAIT: keep it in escrow a while longer
            self._escrow_since = time.monotonic()
        return Frame(Status.ACK)

    def _setting(self, cmd: Command, data: bytes) -> Frame:
        if len(data) != len(DEFAULT_SETTINGS[cmd]):
            return Frame(Status.INVALID_COMMAND)
        if cmd is not Command.SET_INHIBIT and self._status in _BUSY:
            return Frame(Status.INVALID_COMMAND)
        if cmd is Command.SET_COMMUNICATION_MODE and data != b"\x00":
            # Interrupt modes (1, 2: the acceptor sends ENQ 0x05 for the host to poll) are not
            # simulated: refused, so a host never waits for an ENQ that does not come.
            return Frame(Status.INVALID_COMMAND)
        self._settings[cmd] = bytes(data)
        if cmd is Command.SET_INHIBIT and self._status in (Status.IDLING, Status.DISABLE):
            self._idle()
        return Frame(cmd, data)

    def _host_ack(self) -> None:
        if self._status is Status.VEND_VALID and self._fault is None:
            self._enter(Status.STACKED)

    def _reset(self) -> None:
        if self._bill is not None and self._status in _IN_STACKER:
            self._count()  # the note is in the stacker: it stays there
        self._bill = None  # a note in the acceptor is given back while initializing
        self._settings = dict(DEFAULT_SETTINGS)
        self._pause_left = 0
        self._enter(Status.INITIALIZE)

    def _count(self) -> None:
        if self._bill is not None and not self._counted:
            value = self._values[self._bill]
            self._cashbox[value] = self._cashbox.get(value, 0) + 1
            self._counted = True


async def serve(sim: Id003Simulator, port: DevicePort, *, gap: float = 0.05) -> None:
    """Answer the host on ``port`` (started) until cancelled. A partial frame followed by
    ``gap`` seconds of silence is dropped (a corrupted LNG must not hold the device)."""
    parser = FrameParser()
    while True:
        data = await port.read_some(gap if parser.pending else None)
        if not data:
            parser.clear()
            continue
        if not sim.powered:
            parser.clear()
            continue
        errors = parser.crc_errors
        frames = parser.feed(data)
        if not frames and parser.crc_errors > errors:
            answer = sim.communication_error()
            if answer is not None:
                port.write(answer.serialize())
        for frame in frames:
            answer = sim.handle(frame)
            if answer is not None:
                port.write(answer.serialize())


async def run_simulator(
    link_path: Path,
    *,
    currency: str = "EUR",
    escrow_table: Mapping[int, int] | None = None,
    sim: Id003Simulator | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve a simulated ID-003 acceptor on a pty linked at ``link_path`` until cancelled.

    Pass ``sim`` to script it from elsewhere (a control socket); ``ready`` is set once the
    link exists. The driver opens ``link_path`` like a real port.
    """
    if sim is None:
        sim = Id003Simulator(currency=currency, escrow_table=escrow_table)
    port = DevicePort()
    try:
        port.start()
        port.link(link_path)
        log.info("id003 sim: %s on %s (%s)", sim.currency, link_path, port.path)
        if ready is not None:
            ready.set()
        await serve(sim, port)
    finally:
        with contextlib.suppress(Exception):
            port.close()
