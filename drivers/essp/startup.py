"""Opening an eSSP unit: what :meth:`~drivers.essp.client.EsspValidator.open` sends, and
the power-up report it returns.

The sequence: SYNC, HOST PROTOCOL VERSION (the configured version, falling back to 6), SETUP
REQUEST (channels and their values), the key exchange when ``encrypted``, SET INHIBITS,
SERIAL NUMBER (logged), ENABLE PAYOUT DEVICE on a SMART Payout, DISABLE, and REJECT (a note
left in escrow by a previous host is given back); then the unit's pending events are drained
into the :class:`~drivers.validator.base.PowerUpReport`:

- NOTE CLEARED FROM FRONT n (after SLAVE RESET) ⇒ ``in_escrow``: the note went back out;
- NOTE CLEARED INTO CASHBOX n, or a CREDIT n still waiting for its EVENT ACK (the previous
  host never acknowledged it) ⇒ ``stacked``;
- a note taken back from escrow by the REJECT above ⇒ ``in_escrow`` with value 0 (the unit
  does not say which note it was);
- INCOMPLETE PAYOUT ⇒ ``EsspValidator.incomplete_payout``.

The notes in that report stay unacknowledged (the unit repeats them and moves no note) until
``EsspValidator.ack_power_up``, which the kiosk calls once its recovery has committed them;
other power-up events (the end of an earlier payout) are acknowledged during open.

Siblings: :mod:`~drivers.essp.core` (state and shared exchanges), :mod:`~drivers.essp.payout`
(the SMART Payout side) and :mod:`~drivers.essp.client` (``EsspValidator`` and its poll task).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from drivers.errors import DeviceFault, FrameError
from drivers.essp.codes import ACK_REQUIRED, Command, Event, Response, UnitType
from drivers.essp.core import LEVEL_FAULTS, MIN_PROTOCOL, PAYOUT_ENDS, EsspCore
from drivers.essp.crypto import HostKeys, aes_key
from drivers.essp.frames import PollEvent, Request, SetupInfo, inhibit_mask, u64le
from drivers.validator.base import FaultKind, Note, PowerUpReport

log = logging.getLogger("drivers.essp")  # one logger for the whole driver

DRAIN_POLLS: Final = 50  # polls at most to settle the power-up events

_SETTLED: Final = frozenset(
    {Event.DISABLED, Event.SLAVE_RESET, Event.CHANNEL_DISABLE, Event.CASHBOX_REPLACED}
    | {Event.FRAUD_ATTEMPT}
    | set(LEVEL_FAULTS)
)
_POWER_UP_NOTES: Final = frozenset(
    {Event.CREDIT, Event.CLEARED_TO_CASHBOX, Event.CLEARED_FROM_FRONT}
)


class Startup(EsspCore):
    """The open sequence of :class:`~drivers.essp.client.EsspValidator`."""

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
                elif e.code in PAYOUT_ENDS:
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
