"""The SMART Payout side of :class:`~drivers.essp.client.EsspValidator`: a NoteDispenser.

Payouts (SMART Payout, encrypted links only): one PAYOUT AMOUNT per :meth:`SmartPayout.payout`,
never repeated by the driver (a lost reply is recovered by the transport's same-flag
retransmit, which the unit answers without paying twice); the result follows DISPENSED /
INCOMPLETE PAYOUT / JAMMED / HALTED / TIMEOUT with the exact value paid, as the poll task
hands those events to :meth:`SmartPayout._payout_event`. No end within ``payout_timeout`` ⇒
``DeviceFault`` (the kiosk settles from the levels). Also here: the stored levels, the unit's
own can-pay check, HALT, SMART EMPTY and the denomination routes.

Siblings: :mod:`~drivers.essp.core` (state and shared exchanges), :mod:`~drivers.essp.startup`
(``open``) and :mod:`~drivers.essp.client` (``EsspValidator``, the BillValidator side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from drivers.errors import CommandRefused, DeviceFault
from drivers.essp.codes import PAYOUT_NOW, PAYOUT_TEST, Command, Event, Response, Route
from drivers.essp.core import MAX_AMOUNT, PAYOUT_ENDS, EsspCore, PayoutWait
from drivers.essp.frames import (
    PayoutRequest,
    PollEvent,
    Request,
    RouteRequest,
    inhibit_mask,
    parse_levels,
)
from drivers.validator.base import FaultKind, PayoutResult

log = logging.getLogger("drivers.essp")  # one logger for the whole driver

#: PAYOUT AMOUNT's F5 error bytes that mean "cannot pay this": GA138's 1 (not enough value)
#: and 2 (cannot pay the exact amount), and kybarg's 0 for the first.
_CANNOT_PAY: Final = frozenset({b"\x00", b"\x01", b"\x02"})


class SmartPayout(EsspCore):
    """The NoteDispenser methods of :class:`~drivers.essp.client.EsspValidator`."""

    async def levels(self) -> dict[int, int]:
        self._need_payout("levels", encrypted=False)
        reply = await self._cmd(Command.GET_ALL_LEVELS)
        out: dict[int, int] = {}
        for level in parse_levels(reply.data):
            if level.country == self.currency:
                out[level.value] = out.get(level.value, 0) + level.count
        return out

    async def can_pay(self, amount: int) -> bool:
        """PAYOUT AMOUNT in test mode: False when the unit says it lacks the value or cannot
        make the exact amount (F5 1 / 2; kybarg's 0 too), or the amount does not fit."""
        self._need_payout("can_pay")
        if not 0 < amount <= MAX_AMOUNT:
            return False
        params = PayoutRequest(amount, self.currency, PAYOUT_TEST).serialize()
        async with self._enabled_for_payout():
            reply = await self._proto_or_raise().command(Request(Command.PAYOUT_AMOUNT, params))
        if reply.ok:
            return True
        if reply.status == Response.CANNOT_PROCESS and reply.data[:1] in _CANNOT_PAY:
            return False
        raise self._refusal(Command.PAYOUT_AMOUNT, reply)

    @contextlib.asynccontextmanager
    async def _enabled_for_payout(self) -> AsyncIterator[None]:
        """SMART Payout refuses PAYOUT AMOUNT while the validator is disabled (F5 4, GA973):
        enable it around the command and disable it again if it was disabled. Every channel
        is inhibited first (SET INHIBITS all zero), so no note can go in while the kiosk pays
        out; the next journey's ``enable()`` sets its own channels again."""
        was = self.enabled
        if not was:
            await self._cmd(Command.SET_INHIBITS, inhibit_mask((), self._n_channels()))
            await self._cmd(Command.ENABLE)
            self.enabled = True
        try:
            yield
        finally:
            if not was and not self._s.gone:
                await self._cmd(Command.DISABLE)
                self.enabled = False

    async def payout(self, amount: int) -> PayoutResult:
        self._need_payout("payout")
        if amount <= 0:
            raise ValueError("a payout amount is positive")
        if amount > MAX_AMOUNT:
            raise CommandRefused(
                f"{self.name}: payout of {amount}: more than a payout can carry ({MAX_AMOUNT})"
            )
        async with self._payout_lock, self._enabled_for_payout():
            done: asyncio.Future[PayoutResult] = asyncio.get_running_loop().create_future()
            wait = PayoutWait(amount, done)
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

    # -- payout events (from the poll task) ------------------------------------------------------

    def _payout_event(self, e: PollEvent) -> None:
        """The end or progress of a payout or a SMART empty; other events are ignored here."""
        s = self._s
        code = e.code
        if code in PAYOUT_ENDS:
            paid, detail = e.total(self.currency), PAYOUT_ENDS[code]
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

    def _end_payout(self, result: PayoutResult) -> None:
        wait = self._s.payout
        if wait is not None and not wait.done.done():
            wait.done.set_result(result)

    def _need_payout(self, what: str, *, encrypted: bool = True) -> None:
        if self._link is None:
            raise CommandRefused(f"{self.name}: {what} before open")
        if self._s.gone:
            raise DeviceFault(FaultKind.DISCONNECTED.value, f"{self.name}: the unit is gone")
        if not self.is_payout:
            raise CommandRefused(f"{self.name}: {what}: no SMART Payout fitted")
        if encrypted and not self.encrypted:
            raise CommandRefused(f"{self.name}: {what} needs an encrypted link (encrypted=True)")
