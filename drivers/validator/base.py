"""The bill validator interface every driver implements (simulator, eSSP, ID-003).

Values are integer minor units of the note's currency, as the device's channel table says.

Money safety lives at this interface: :meth:`BillValidator.stack` calls ``on_credit`` at the
device's *safe credit point* (eSSP CREDIT, ID-003 VEND VALID) and acknowledges the device only
after ``on_credit`` returned, so the kiosk commits the credit to its journal first.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Note:
    """One banknote as the device identifies it."""

    channel: int
    value: int  # minor units of ``currency``
    currency: str


class FaultKind(enum.StrEnum):
    JAM = "jam"
    FRAUD = "fraud"
    CASHBOX_FULL = "cashbox_full"
    CASHBOX_REMOVED = "cashbox_removed"
    FAILURE = "failure"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class NoteEscrowed:
    """A note waits in escrow for :meth:`BillValidator.stack` or :meth:`return_note`."""

    note: Note


@dataclass(frozen=True, slots=True)
class NoteRejected:
    """The device refused a note by itself (unknown, fake, inhibited). Never credited."""

    reason: str


@dataclass(frozen=True, slots=True)
class NoteReturned:
    """A note was given back to the customer from escrow."""

    note: Note


@dataclass(frozen=True, slots=True)
class Fault:
    """The device cannot take notes until the fault is cleared."""

    kind: FaultKind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FaultCleared:
    """The device reports normal operation again."""


@dataclass(frozen=True, slots=True)
class NoteCredited:
    """The device credited a note that no :meth:`BillValidator.stack` was waiting for (a note
    that reached escrow after the journey stopped listening and could not be returned, or a
    credit that came after a fault mid-stack). The device repeats it, and takes no other note,
    until the kiosk has committed it (credited to the transaction whose note was unconfirmed,
    or owed) and called :meth:`BillValidator.ack_credit`. ``value`` 0: the device cannot say
    which note (ID-003)."""

    note: Note


ValidatorEvent = NoteEscrowed | NoteRejected | NoteReturned | NoteCredited | Fault | FaultCleared

CreditCallback = Callable[[Note], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PowerUpReport:
    """What the device says about a note in flight when it (or the host) restarted.

    ``in_escrow``: a note was held and is being returned to the customer (not credited).
    ``stacked``: a note reached the cashbox whose credit the host may not have committed
    (eSSP: a CREDIT event still waiting for its ack; ID-003: POWER UP WITH BILL IN STACKER or
    a VEND VALID repeated until ACK). A ``value`` of 0 means the device cannot say which note
    (ID-003's VEND VALID carries no denomination): the host's own in-flight intent says.
    """

    in_escrow: Note | None = None
    stacked: Note | None = None


class BillValidator(Protocol):
    """A note acceptor. All methods are coroutines on the daemon's event loop."""

    name: str

    async def open(self) -> PowerUpReport:
        """Open the port, reset/sync the device, and report notes in flight at power-up."""
        ...

    async def close(self) -> None: ...

    async def enable(self, accept: frozenset[int] | None = None) -> None:
        """Accept notes whose value is in ``accept`` (all channels when ``None``)."""
        ...

    async def disable(self) -> None: ...

    async def next_event(self) -> ValidatorEvent:
        """Wait for the next event from the device."""
        ...

    async def stack(self, on_credit: CreditCallback) -> Note:
        """Stack the escrowed note. ``on_credit`` runs at the safe credit point, before the
        device is acknowledged. Raises ``DeviceFault`` if the note did not reach the cashbox."""
        ...

    async def return_note(self) -> Note:
        """Give the escrowed note back to the customer."""
        ...

    async def ack_credit(self) -> None:
        """Acknowledge the last :class:`NoteCredited`, once the kiosk committed it. Does
        nothing when no credit waits."""
        ...


@dataclass(frozen=True, slots=True)
class PayoutResult:
    """What a payout command did, as the device reports it (minor units)."""

    requested: int
    dispensed: int
    detail: str = ""  # why it stopped short: "jammed", "halted", "timeout", "error"

    @property
    def complete(self) -> bool:
        return self.dispensed == self.requested


class NoteDispenser(Protocol):
    """A note recycler that pays out (ITL SMART Payout / NV4000).

    A payout is one command, never retried by the driver: the kiosk journals its intent
    first and the dispensed amount after; an incomplete payout is reported exactly.
    """

    async def levels(self) -> dict[int, int]:
        """Notes stored for payout: value (minor units) -> count."""
        ...

    async def can_pay(self, amount: int) -> bool:
        """The device's own check that it can pay ``amount`` exactly (no note moves)."""
        ...

    async def payout(self, amount: int) -> PayoutResult:
        """Pay ``amount`` out and wait until the device reports the end of the payout."""
        ...

    async def halt(self) -> None: ...

    async def smart_empty(self) -> dict[int, int]:
        """Move every stored note to the cashbox, counted: value -> count moved."""
        ...
