"""A simulated bill validator with the non-volatile memory of a real one.

Used by ``kiosk --simulate``, the demo and the tests; never by the daemon's hardware path.
The customer's side is played through the control methods (:meth:`SimValidator.insert`,
:meth:`SimValidator.insert_fake`, :meth:`SimValidator.fault`, :meth:`SimValidator.clear_fault`),
directly in tests or through ``drivers.sim.control`` from another process. They must be called
on the event loop's thread.

Events and conventions
----------------------
- ``insert(value)``: an enabled, accepted channel value goes to escrow → ``NoteEscrowed``.
  Otherwise → ``NoteRejected(reason)`` with reason ``disabled`` (not enabled), ``inhibited``
  (value not in the ``accept`` set), ``unknown`` (no channel has that value), ``busy`` (a note
  is already in escrow) or ``fault`` (the device is faulted).
- ``insert_fake()`` → ``NoteRejected("fake")``.
- ``fault(kind)`` → ``Fault(kind)``; notes are refused, and :meth:`stack` and
  :meth:`return_note` raise ``DeviceFault(kind)`` until ``clear_fault()`` → ``FaultCleared``.
  A note in escrow stays there through the fault.
- A note held in escrow longer than ``escrow_timeout`` seconds is given back by the device
  itself → ``NoteReturned``.
- :meth:`return_note` (host-commanded) returns the ``Note`` from the method and emits **no**
  event: the host already knows. Only device-initiated returns emit ``NoteReturned``.

Non-volatile memory (``state_file``)
------------------------------------
A JSON file, rewritten atomically (temp file, fsync, rename, fsync of the directory) on every
change, holding ``escrow`` (the note held), ``stacked`` (a note moved to the cashbox whose credit
the host has not acknowledged: :meth:`stack` sets it before ``on_credit`` and clears it after
``on_credit`` returned) and ``cashbox`` (counts per value). :meth:`open` reads it and reports:
a note left in escrow → ``PowerUpReport.in_escrow`` (given back to the customer, cashbox
unchanged); a stacked but unacknowledged note → ``PowerUpReport.stacked`` (it stays in the
cashbox). Both are cleared once reported, as a real device reports them once. So a test can kill
the process inside ``on_credit`` and check that a fresh simulator on the same file reports it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from drivers.errors import CommandRefused, DeviceFault
from drivers.validator.base import (
    CreditCallback,
    Fault,
    FaultCleared,
    FaultKind,
    Note,
    NoteCredited,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PowerUpReport,
    ValidatorEvent,
)

log = logging.getLogger(__name__)

#: Channel number → value in minor units (EUR 5 … 1000 by default).
DEFAULT_CHANNELS: Final[Mapping[int, int]] = {
    1: 500,
    2: 1000,
    3: 2000,
    4: 5000,
    5: 10000,
    6: 20000,
    7: 50000,
    8: 100000,
}

_STATE_VERSION: Final = 1

_E = TypeVar("_E", NoteEscrowed, NoteRejected, NoteReturned, NoteCredited, Fault, FaultCleared)


def note_to_json(note: Note | None) -> dict[str, Any] | None:
    """A note as a JSON-able dict (``None`` stays ``None``)."""
    if note is None:
        return None
    return {"channel": note.channel, "value": note.value, "currency": note.currency}


def _note_from_json(data: Any) -> Note | None:
    if data is None:
        return None
    return Note(channel=int(data["channel"]), value=int(data["value"]), currency=data["currency"])


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SimValidator:
    """A :class:`~drivers.validator.base.BillValidator` simulator.

    :param currency: ISO code of every note.
    :param channels: channel number → value in minor units.
    :param state_file: where the non-volatile memory lives (JSON); ``None`` keeps it in memory.
    :param escrow_timeout: seconds a note waits in escrow before the device returns it.
    :param stack_time: seconds the transport takes to move a note to the cashbox.
    """

    def __init__(
        self,
        *,
        name: str = "sim-validator",
        currency: str = "EUR",
        channels: Mapping[int, int] = DEFAULT_CHANNELS,
        state_file: Path | None = None,
        escrow_timeout: float = 30.0,
        stack_time: float = 0.0,
    ) -> None:
        if len(set(channels.values())) != len(channels):
            raise ValueError("channel values must be distinct")
        self.name = name
        self.currency = currency
        self.channels: dict[int, int] = dict(channels)
        self.state_file = state_file
        self.escrow_timeout = escrow_timeout
        self.stack_time = stack_time
        self._events: asyncio.Queue[ValidatorEvent] = asyncio.Queue()
        self._open = False
        self._enabled = False
        self._accept: frozenset[int] | None = None
        self._fault: FaultKind | None = None
        self._escrow: Note | None = None
        self._stacked: Note | None = None
        self._stacking = False
        self._cashbox: dict[int, int] = {}
        self._escrow_timer: asyncio.TimerHandle | None = None
        self._credit_waiting: Note | None = None
        self.acked_credits: list[Note] = []
        """Credits :meth:`ack_credit` acknowledged (test hook)."""
        self.fail: dict[str, Exception] = {}
        """Test hook: a method name (``enable``, ``return_note``) → the error it raises once."""

    # -- BillValidator -------------------------------------------------------------------------

    async def open(self) -> PowerUpReport:
        self._load()
        report = PowerUpReport(in_escrow=self._escrow, stacked=self._stacked)
        if report.in_escrow is not None:
            log.info("%s: power-up: returning %s from escrow", self.name, report.in_escrow)
        if report.stacked is not None:
            log.info("%s: power-up: %s stacked, not acknowledged", self.name, report.stacked)
        self._escrow = None
        self._stacked = None
        self._save()
        self._open = True
        self._enabled = False
        return report

    async def close(self) -> None:
        self._cancel_timer()
        self._open = False
        self._enabled = False

    async def enable(self, accept: frozenset[int] | None = None) -> None:
        if "enable" in self.fail:
            raise self.fail.pop("enable")
        if not self._open:
            raise CommandRefused(f"{self.name}: enable before open")
        self._accept = accept
        self._enabled = True

    async def disable(self) -> None:
        self._enabled = False

    async def next_event(self) -> ValidatorEvent:
        return await self._events.get()

    async def stack(self, on_credit: CreditCallback) -> Note:
        note = self._escrowed_for_command("stack")
        self._stacking = True
        self._cancel_timer()
        try:
            if self.stack_time > 0:
                await asyncio.sleep(self.stack_time)
            if self._fault is not None:  # faulted while the transport was moving
                raise DeviceFault(self._fault.value, f"{self.name}: note not stacked")
            self._escrow = None
            self._stacked = note
            self._cashbox[note.value] = self._cashbox.get(note.value, 0) + 1
            self._save()
        finally:
            self._stacking = False
        # Safe credit point: the note is in the cashbox. Acknowledge only after on_credit
        # returned; if it raises or is cancelled the note stays "stacked, not acknowledged".
        await on_credit(note)
        self._stacked = None
        self._save()
        return note

    async def return_note(self) -> Note:
        if "return_note" in self.fail:
            raise self.fail.pop("return_note")
        note = self._escrowed_for_command("return")
        self._cancel_timer()
        self._escrow = None
        self._save()
        return note

    async def ack_credit(self) -> None:
        """Acknowledge the credit :meth:`credit_unasked` emitted (nothing when none waits)."""
        if self._credit_waiting is not None:
            self.acked_credits.append(self._credit_waiting)
            self._credit_waiting = None

    # -- control (the customer and the technician) ----------------------------------------------

    def insert(self, value: int) -> NoteEscrowed | NoteRejected:
        """A customer feeds a note of ``value`` minor units. Returns the event it emitted."""
        reason = self._refusal(value)
        if reason is not None:
            return self._emit(NoteRejected(reason))
        channel = next(ch for ch, v in self.channels.items() if v == value)
        note = Note(channel=channel, value=value, currency=self.currency)
        self._start_timer(note)  # first: it needs the running loop
        self._escrow = note
        self._save()
        return self._emit(NoteEscrowed(note))

    def escrow_unasked(self, value: int) -> NoteEscrowed:
        """A note reaches escrow whatever the device's state (it was already in the
        transport when the host disabled it)."""
        channel = next(ch for ch, v in self.channels.items() if v == value)
        note = Note(channel=channel, value=value, currency=self.currency)
        self._escrow = note
        self._save()
        return self._emit(NoteEscrowed(note))

    def credit_unasked(self, value: int) -> NoteCredited:
        """The device credits a note no :meth:`stack` waits for (the escrowed one, or one of
        ``value`` that a jam left in the transport); it waits for :meth:`ack_credit`."""
        note = self._escrow
        if note is None or note.value != value:
            channel = next(ch for ch, v in self.channels.items() if v == value)
            note = Note(channel=channel, value=value, currency=self.currency)
        self._cancel_timer()
        self._escrow = None
        self._cashbox[note.value] = self._cashbox.get(note.value, 0) + 1
        self._credit_waiting = note
        self._save()
        return self._emit(NoteCredited(note))

    def return_unasked(self, value: int) -> NoteReturned:
        """The device gives a note back by itself (a jam cleared by returning it)."""
        channel = next(ch for ch, v in self.channels.items() if v == value)
        note = Note(channel=channel, value=value, currency=self.currency)
        self._escrow = None
        self._save()
        return self._emit(NoteReturned(note))

    def insert_fake(self) -> NoteRejected:
        """A customer feeds something that is not a genuine note."""
        return self._emit(NoteRejected("fake"))

    def fault(self, kind: FaultKind, detail: str = "") -> Fault:
        """The device enters a fault (jam, cashbox removed...)."""
        self._fault = kind
        self._cancel_timer()
        return self._emit(Fault(kind, detail))

    def clear_fault(self) -> FaultCleared | None:
        """A technician cleared the fault. Returns ``None`` (no event) if there was none."""
        if self._fault is None:
            return None
        self._fault = None
        if self._escrow is not None:
            self._start_timer(self._escrow)
        return self._emit(FaultCleared())

    def cashbox(self) -> dict[int, int]:
        """Notes in the cashbox: value → count."""
        return dict(self._cashbox)

    def empty_cashbox(self) -> dict[int, int]:
        """A technician empties the cashbox; returns what it held."""
        held, self._cashbox = self._cashbox, {}
        self._save()
        return held

    def state(self) -> dict[str, Any]:
        """Everything a test or the control channel may want to see, JSON-able."""
        return {
            "name": self.name,
            "currency": self.currency,
            "channels": {str(ch): v for ch, v in self.channels.items()},
            "open": self._open,
            "enabled": self._enabled,
            "accept": None if self._accept is None else sorted(self._accept),
            "fault": None if self._fault is None else self._fault.value,
            "escrow": note_to_json(self._escrow),
            "stacked": note_to_json(self._stacked),
            "cashbox": {str(v): n for v, n in sorted(self._cashbox.items())},
        }

    # -- internals -----------------------------------------------------------------------------

    def _refusal(self, value: int) -> str | None:
        if self._fault is not None:
            return "fault"
        if not self._open or not self._enabled:
            return "disabled"
        if value not in self.channels.values():
            return "unknown"
        if self._accept is not None and value not in self._accept:
            return "inhibited"
        if self._escrow is not None or self._stacking:
            return "busy"
        return None

    def _escrowed_for_command(self, what: str) -> Note:
        if self._fault is not None:
            raise DeviceFault(self._fault.value, f"{self.name}: cannot {what} while faulted")
        if self._escrow is None or self._stacking:
            raise CommandRefused(f"{self.name}: no note in escrow to {what}")
        return self._escrow

    def _emit(self, event: _E) -> _E:
        log.debug("%s: %s", self.name, event)
        self._events.put_nowait(event)
        return event

    def _start_timer(self, note: Note) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._escrow_timer = loop.call_later(self.escrow_timeout, self._escrow_expired, note)

    def _cancel_timer(self) -> None:
        if self._escrow_timer is not None:
            self._escrow_timer.cancel()
            self._escrow_timer = None

    def _escrow_expired(self, note: Note) -> None:
        self._escrow_timer = None
        if self._escrow is note and not self._stacking and self._fault is None:
            self._escrow = None
            self._save()
            self._emit(NoteReturned(note))

    def _load(self) -> None:
        if self.state_file is None:
            return
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return
        try:
            data = json.loads(raw)
            self._escrow = _note_from_json(data.get("escrow"))
            self._stacked = _note_from_json(data.get("stacked"))
            self._cashbox = {int(v): int(n) for v, n in data.get("cashbox", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeviceFault(
                "failure", f"{self.name}: unreadable memory {self.state_file}: {exc}"
            ) from exc

    def _save(self) -> None:
        if self.state_file is None:
            return
        data = {
            "version": _STATE_VERSION,
            "escrow": note_to_json(self._escrow),
            "stacked": note_to_json(self._stacked),
            "cashbox": {str(v): n for v, n in sorted(self._cashbox.items())},
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_file, json.dumps(data, indent=1).encode())
