"""Opening an eSSP unit: what :meth:`~drivers.essp.client.EsspValidator.open` sends, and
the power-up report it returns.

The sequence (GA138 "Encryption Layer", GA973): SYNC; then, when ``encrypted``, the key
exchange (SET GENERATOR, SET MODULUS, REQUEST KEY EXCHANGE: the only commands, with SYNC, that
a unit whose encryption is mandatory answers before it has keys; everything else gets KEY NOT
SET); then, encrypted from here on, HOST PROTOCOL VERSION (the configured version, falling
back to 6 on FAIL or PARAMETER OUT OF RANGE: firmware differs), SETUP REQUEST (channels and
their values), SET INHIBITS, SERIAL NUMBER (logged), ENABLE PAYOUT DEVICE on a SMART Payout
(with its option byte from firmware 4.16 on, bare before), DISABLE, and REJECT (a note left
in escrow by a previous host is given back); then the unit's pending events are drained into
the :class:`~drivers.validator.base.PowerUpReport`:

- NOTE CLEARED FROM FRONT n (after SLAVE RESET) ⇒ ``in_escrow``: the note went back out;
- NOTE CLEARED INTO CASHBOX n, NOTE PAID INTO STACKER / STORE AT POWER-UP, or a CREDIT n still
  waiting for its EVENT ACK (the previous host never acknowledged it) ⇒ ``stacked``;
- a note taken back from escrow by the REJECT above ⇒ ``in_escrow`` with value 0 (the unit
  does not say which note it was);
- INCOMPLETE PAYOUT (requested, dispensed) ⇒ ``EsspValidator.incomplete_payout``: the kiosk
  settles the payout in flight exactly from it.

Those money events stay unacknowledged (the unit repeats them and moves no note) until
``EsspValidator.ack_power_up``, which the kiosk calls once its recovery has committed them;
the other events needing an ack (the end of an earlier payout, a fraud attempt) are
acknowledged during open.

Siblings: :mod:`~drivers.essp.core` (state and shared exchanges), :mod:`~drivers.essp.payout`
(the SMART Payout side) and :mod:`~drivers.essp.client` (``EsspValidator`` and its poll task).
"""

from __future__ import annotations

import logging
from typing import Final

from drivers.errors import DeviceFault, FrameError
from drivers.essp.codes import ACK_REQUIRED, MONEY_EVENTS, Command, Event, Response, UnitType
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
_STACKED_AT_POWER_UP: Final = frozenset(
    {
        Event.CREDIT,
        Event.CLEARED_TO_CASHBOX,
        Event.NOTE_PAID_INTO_STACKER_AT_POWER_UP,
        Event.NOTE_PAID_INTO_STORE_AT_POWER_UP,
    }
)
_VERSION_REFUSED: Final = frozenset({Response.FAIL, Response.PARAMETER_OUT_OF_RANGE})
PAYOUT_OPTION_FIRMWARE: Final = 416  # ENABLE PAYOUT DEVICE takes its option byte from 4.16


def firmware_number(firmware: str) -> int | None:
    """SETUP REQUEST's firmware ("0416" = 4.16) as 416; None when it is not digits."""
    digits = firmware.strip()
    return int(digits) if digits.isdigit() else None


class Startup(EsspCore):
    """The open sequence of :class:`~drivers.essp.client.EsspValidator`."""

    async def _start(self) -> PowerUpReport:
        proto = self._proto_or_raise()
        reply = await proto.sync()
        if not reply.ok:
            raise self._refusal(Command.SYNC, reply)
        if self.encrypted:
            await self._negotiate_keys()
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
        ours = [ch for ch, n in self.channels.items() if n.currency == self.currency]
        await self._cmd(Command.SET_INHIBITS, inhibit_mask(ours, self._n_channels()))
        serial = (await self._cmd(Command.SERIAL_NUMBER)).data[:4]
        self.serial_number = int.from_bytes(serial, "big")
        if self.is_payout:
            await self._enable_payout_device(info.firmware)
        await self._cmd(Command.DISABLE)
        self.enabled = False
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

    async def _enable_payout_device(self, firmware: str) -> None:
        """ENABLE PAYOUT DEVICE: with its option byte (0: defaults) from firmware 4.16 on,
        bare before (GA138); a unit that refuses the option byte gets the bare command."""
        number = firmware_number(firmware)
        if number is not None and number < PAYOUT_OPTION_FIRMWARE:
            await self._cmd(Command.ENABLE_PAYOUT_DEVICE)
            return
        request = Request(Command.ENABLE_PAYOUT_DEVICE, b"\x00")
        reply = await self._proto_or_raise().command(request)
        if reply.status in (Response.WRONG_PARAMETERS, Response.PARAMETER_OUT_OF_RANGE):
            log.info("%s: ENABLE PAYOUT DEVICE without its option byte", self.name)
            await self._cmd(Command.ENABLE_PAYOUT_DEVICE)
        elif not reply.ok:
            raise self._refusal(Command.ENABLE_PAYOUT_DEVICE, reply)

    async def _negotiate_protocol(self) -> int:
        proto = self._proto_or_raise()
        for version in range(self.protocol_version, MIN_PROTOCOL - 1, -1):
            request = Request(Command.HOST_PROTOCOL_VERSION, bytes([version]))
            reply = await proto.command(request)  # encrypted once the keys exist
            if reply.ok:
                return version
            if reply.status not in _VERSION_REFUSED:
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
                elif e.code in _STACKED_AT_POWER_UP:
                    stacked = (
                        self._note(e.channel)
                        if e.channel is not None
                        else Note(0, e.total(self.currency), self.currency)
                    )
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
            self._track_faults(events, fresh)
            if acks and acks != pending and self.poll_command == Command.POLL_WITH_ACK:
                if any(e.code in MONEY_EVENTS for e in acks):
                    pending = acks  # the report's events: acknowledged by ack_power_up()
                else:
                    await self._ack()
            if all(e.code in _SETTLED or e in pending for e in events):
                break
        s = self._s
        s.unacked, s.hold_ack, s.power_up = pending, bool(pending), bool(pending)
        if stacked is not None:
            log.warning("%s: power-up: %s went into the cashbox", self.name, stacked)
        if in_escrow is not None:
            log.warning("%s: power-up: %s was given back", self.name, in_escrow)
        return PowerUpReport(in_escrow=in_escrow, stacked=stacked)
