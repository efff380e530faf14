"""Stacking and returning on an ID-003 acceptor: following STACK-1 and RETURN to their end.

:meth:`Stacking._follow_stack` polls STACKING → VEND VALID → STACKED; VEND VALID is the safe
credit point: ``on_credit(note)`` is awaited there and the ACK (0x50) is written only after it
returned (again on every VEND VALID, if the acceptor missed it). A restart with the note in the
stacker counts as stacked. :meth:`Stacking._follow_return` polls RETURNING until the acceptor
is idle. A fault, an unexpected status or ``stack_timeout`` ⇒ ``DeviceFault``.

Siblings: :mod:`~drivers.id003.core` (state, exchanges, status tracking),
:mod:`~drivers.id003.startup` (power-up report, initialisation) and
:mod:`~drivers.id003.client` (``Id003Validator``: the BillValidator methods and the poll task).
"""

from __future__ import annotations

import asyncio
import logging
import time

from drivers.errors import DeviceFault
from drivers.id003.codes import FAULTS, Command, Status
from drivers.id003.core import IDLE, IN_ESCROW, Id003Core
from drivers.id003.frames import Frame
from drivers.validator.base import CreditCallback, FaultKind, Note

log = logging.getLogger("drivers.id003.client")  # one logger for the whole driver


class Stacking(Id003Core):
    """Stack and return following for :class:`~drivers.id003.client.Id003Validator`."""

    async def _follow_stack(self, note: Note, on_credit: CreditCallback) -> Note:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stack_timeout
        credited = False
        while True:
            status, data = await self._status()
            if status is Status.VEND_VALID:
                if not credited:
                    self.credit_seen_at = time.perf_counter()
                    self._escrow = None
                    log.debug("%s: %s at VEND VALID: credit, then ACK", self.name, note)
                    await on_credit(note)  # the kiosk commits first: only then the ACK
                    credited = True
                await self._send(Frame(Command.ACK))  # again if the acceptor missed it
            elif status is Status.STACKED or (credited and status in IDLE):
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
            elif status not in (Status.STACKING, Status.PAUSE, *IN_ESCROW) and status:
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
            if status in IDLE or status is Status.POWER_UP_BILL_IN_ACCEPTOR:
                self._escrow = None
                log.debug("%s: %s returned", self.name, note)
                return note
            if status in FAULTS:
                raise self._device_fault(status, data, f"{note} not returned")
            if status not in (Status.RETURNING, Status.PAUSE, *IN_ESCROW):
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: returning {note}: the acceptor reports"
                    f" {status.name if status else '?'}",
                )
            if loop.time() >= deadline:
                raise DeviceFault(FaultKind.FAILURE.value, f"{self.name}: {note} not returned")
            await asyncio.sleep(self._step)
