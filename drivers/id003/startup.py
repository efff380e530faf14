"""Start-up of an ID-003 acceptor: the power-up report, initialisation and the escrow table.

Power-up acknowledgement (the design chosen)
--------------------------------------------
:meth:`~drivers.id003.client.Id003Validator.open` returns the
:class:`~drivers.validator.base.PowerUpReport` and never acknowledges anything the kiosk has
not been told about:

- POWER UP (0x40) → empty report; POWER UP WITH BILL IN ACCEPTOR (0x41) → ``in_escrow`` (value 0:
  the acceptor cannot say which note; it gives it back while initialising); WITH BILL IN STACKER
  (0x42) → ``stacked`` (value 0: the host's journal intent says which). Then RESET, INITIALIZE →
  DISABLE, the escrow table (CURRENCY ASSIGN 0x8A: the kiosk's currency only, see
  ``country_code``), denominations (C0), security (C1), polled mode (C2 00; never an interrupt
  mode) and INHIBIT (C3 01) until ``Id003Validator.enable``. C1 and C2 refused with INVALID
  COMMAND are logged and the acceptor's defaults kept; C0 and C3 refused raise
  ``CommandRefused``.
- A note still in ESCROW (the host restarted while the acceptor kept it) → ``in_escrow`` with its
  value; it is returned (RETURN 0x43) before the RESET.
- VEND VALID repeated (the host crashed inside ``on_credit``, before its ACK) → ``stacked``
  (value 0) and the acceptor is left **un-acknowledged and un-reset**: the kiosk runs its
  recovery (commits the credit), then calls ``Id003Validator.ack_power_up``, which sends the
  ACK and initialises the acceptor (:meth:`Startup._acknowledge_power_up`); ``pending_ack``
  tells whether one is due. If the kiosk never calls it, the first ``enable`` does (the kiosk
  enables only after its recovery).

Siblings: :mod:`~drivers.id003.core` (state, exchanges, status tracking),
:mod:`~drivers.id003.stacking` (following STACK-1 and RETURN) and
:mod:`~drivers.id003.client` (``Id003Validator``: the BillValidator methods and the poll task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from drivers.errors import CommandRefused, DeviceFault, DriverError
from drivers.id003.codes import (
    FAULTS,
    FIRST_DENOMINATION,
    LAST_DENOMINATION,
    TRANSIENT,
    Command,
    Status,
)
from drivers.id003.core import IDLE, IN_ESCROW, Id003Core
from drivers.id003.frames import (
    CurrencyRecord,
    Frame,
    decode_currency_assign,
    denomination_mask,
    escrow_values,
)
from drivers.validator.base import FaultKind, Note, PowerUpReport

log = logging.getLogger("drivers.id003.client")  # one logger for the whole driver


class Startup(Id003Core):
    """The start-up and initialisation of :class:`~drivers.id003.client.Id003Validator`."""

    async def _power_up(self) -> PowerUpReport:
        status, data = await self._settle()
        unknown = Note(channel=0, value=0, currency=self.currency)
        if status is Status.VEND_VALID:
            self._pending_ack = True
            log.warning(
                "%s: VEND VALID from before the restart, not acknowledged: reported as stacked;"
                " waiting for ack_power_up()",
                self.name,
            )
            return PowerUpReport(stacked=unknown)
        report = PowerUpReport()
        if status is Status.POWER_UP_BILL_IN_ACCEPTOR:
            report = PowerUpReport(in_escrow=unknown)
        elif status is Status.POWER_UP_BILL_IN_STACKER:
            report = PowerUpReport(stacked=unknown)
        elif status in IN_ESCROW:
            code = data[0] if status is Status.ESCROW and data else 0
            if code not in self._table:
                with contextlib.suppress(DriverError):
                    await self._load_table()
            note = Note(channel=code, value=self._table.get(code, 0), currency=self.currency)
            report = PowerUpReport(in_escrow=note)
            await self._request(Command.RETURN)
            await self._settle()
        if report.in_escrow is not None or report.stacked is not None:
            log.warning("%s: power-up report %s", self.name, report)
        if status in FAULTS:
            self._needs_init = True  # initialised once the fault clears (poll task)
            return report
        await self._initialise()
        return report

    async def _settle(self) -> tuple[Status | None, bytes]:
        """Poll until the acceptor is out of a passing status (or ``init_timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.init_timeout
        while True:
            status, data = await self._status()
            if status not in TRANSIENT or loop.time() >= deadline:
                return status, data
            await asyncio.sleep(self._step)

    async def _initialise(self) -> None:
        """RESET, wait INITIALIZE → DISABLE, read the escrow table, send the settings, and
        inhibit (or restore what the kiosk enabled)."""
        log.info("%s: initialising", self.name)
        await self._request(Command.RESET)
        status = await self._wait_idle(settings_pending=True)
        await self._load_table()
        await self._set(
            Command.SET_DENOMINATIONS, self._mask(self._accept if self._enabled else None)
        )
        await self._optional_setting(Command.SET_SECURITY, self.security)
        # Polled, never interrupt mode (C2 01/02: the acceptor would wait for the host's ENQ
        # handling, which this driver does not implement). Polled is the power-up default.
        await self._optional_setting(Command.SET_COMMUNICATION_MODE, b"\x00")
        await self._set(Command.SET_INHIBIT, b"\x00" if self._enabled else b"\x01")
        if status is Status.INITIALIZE:
            await self._wait_idle(settings_pending=False)
        self._needs_init = False
        log.info("%s: ready (%s)", self.name, "enabled" if self._enabled else "inhibited")

    async def _optional_setting(self, cmd: Command, data: bytes) -> None:
        """A setting some firmware refuses (INVALID COMMAND): logged, the default stays."""
        try:
            await self._set(cmd, data)
        except CommandRefused as exc:
            log.warning("%s: %s; keeping the acceptor's default", self.name, exc)

    async def _wait_idle(self, *, settings_pending: bool) -> Status:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.init_timeout
        while True:
            status, data = await self._status()
            if status in IDLE:
                assert status is not None
                return status
            if status in FAULTS:
                raise self._device_fault(status, data, "while initialising")
            if loop.time() >= deadline:
                if status is Status.INITIALIZE and settings_pending:
                    # Some firmware waits for the settings before it leaves INITIALIZE.
                    return status
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: still {status.name if status else '?'} {self.init_timeout}s"
                    " after RESET",
                )
            await asyncio.sleep(self._step)

    async def _load_table(self) -> None:
        """The escrow table from CURRENCY ASSIGN, else the configured one."""
        try:
            answer = await self._request(Command.CURRENCY_ASSIGN)
        except CommandRefused:
            table = {}
        else:
            table = await self._own_currency(decode_currency_assign(answer.data))
        if table:
            if table != self._table:
                if self._configured and table != self._configured:
                    log.warning(
                        "%s: the acceptor's escrow table %s differs from the configured %s;"
                        " using the acceptor's",
                        self.name,
                        table,
                        self._configured,
                    )
                log.info("%s: escrow table %s", self.name, table)
            self._table = table
        elif not self._table:
            raise DeviceFault(
                FaultKind.FAILURE.value,
                f"{self.name}: the acceptor does not answer CURRENCY ASSIGN (0x8A) and no"
                " escrow_table is configured: configure escrow code → value",
            )

    async def _own_currency(self, records: tuple[CurrencyRecord, ...]) -> dict[int, int]:
        """The kiosk's notes among the CURRENCY ASSIGN records, by country code: the one
        configured (``country_code``), else the only one the acceptor has. Codes of another
        country are remembered as foreign (returned if escrowed). No note of the kiosk's
        currency → ``DeviceFault``: the acceptor is set up for another currency."""
        assigned = [r for r in records if r.mantissa]
        countries = sorted({r.country_code for r in assigned})
        if not assigned:
            return {}
        ours = self.country_code
        if ours is None:
            if len(countries) > 1:
                raise DeviceFault(
                    FaultKind.FAILURE.value,
                    f"{self.name}: the acceptor holds notes of several currencies (country codes"
                    f" {', '.join(f'0x{c:02X}' for c in countries)}): configure the country"
                    f" code of {self.currency}",
                )
            ours = countries[0]
        self._foreign = {r.escrow_code: r.country_code for r in assigned if r.country_code != ours}
        table = escrow_values((r for r in assigned if r.country_code == ours), self.minor_digits)
        if not table:
            version = await self._version_for_message()
            raise DeviceFault(
                FaultKind.FAILURE.value,
                f"{self.name}: the kiosk's currency is {self.currency} (country code"
                f" 0x{ours:02X}) but the acceptor's currency table has no {self.currency} note:"
                f" it holds the currency of country code(s)"
                f" {', '.join(f'0x{c:02X}' for c in countries)}{version}: fit an acceptor"
                f" (firmware) for {self.currency}",
            )
        return table

    async def _version_for_message(self) -> str:
        try:
            answer = await self._request(Command.VERSION)
        except DriverError:
            return ""
        return f" (acceptor version {answer.data.decode('ascii', 'replace')!r})"

    def _mask(self, accept: frozenset[int] | None) -> bytes:
        allowed = {c for c, v in self._table.items() if accept is None or v in accept}
        if accept is not None and not accept <= set(self._table.values()):
            log.warning(
                "%s: no escrow code for %s", self.name, sorted(accept - set(self._table.values()))
            )
        return denomination_mask(
            c for c in range(FIRST_DENOMINATION, LAST_DENOMINATION + 1) if c not in allowed
        )

    async def _acknowledge_power_up(self) -> None:
        await self._acknowledge_vend_valid("the power-up ACK")
        self._pending_ack = False
        log.info("%s: power-up VEND VALID acknowledged", self.name)
        await self._initialise()

    async def _acknowledge_vend_valid(self, what: str) -> None:
        """ACK (0x50), again while the acceptor repeats VEND VALID, until it has left
        VEND VALID and STACKED."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stack_timeout
        await self._send(Frame(Command.ACK))
        while True:
            status, data = await self._status()
            if status is Status.VEND_VALID:
                await self._send(Frame(Command.ACK))  # our ACK was lost
            elif status in FAULTS:
                raise self._device_fault(status, data, f"after {what}")
            elif status is not Status.STACKED:
                return
            if loop.time() >= deadline:
                raise DeviceFault(
                    FaultKind.FAILURE.value, f"{self.name}: VEND VALID not cleared by ACK"
                )
            await asyncio.sleep(self._step)
