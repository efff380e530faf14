"""The wire side of the simulated eSSP unit and its command handlers.

:class:`SimCommands` adds to :class:`~drivers.essp.sim_device.SimDevice` what a command frame
meets: :meth:`SimCommands.handle` (sequence flag and retransmission, SYNC, dropped replies),
the eSSP packet layer (which commands need keys, encrypted replies, eCOUNT), and one handler
per command — setup, enabling, escrow, events, the key exchange and the SMART Payout commands.
The behaviour is specified in :mod:`~drivers.essp.sim`.

Siblings: :mod:`~drivers.essp.sim_device` (state and movement on polls) and
:mod:`~drivers.essp.sim` (``EsspSimulator``: scripting, snapshot, serving on a pty).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final

from drivers.errors import FrameError
from drivers.essp.codes import (
    ACK_REQUIRED,
    PAYOUT_NOW,
    PAYOUT_TEST,
    Command,
    Event,
    PayoutError,
    RejectCode,
    Response,
    UnitType,
)
from drivers.essp.crypto import (
    DEFAULT_FIXED_KEY,
    KEY_LIMIT,
    Cipher,
    aes_key,
    is_prime,
    slave_exchange,
)
from drivers.essp.frames import (
    STEX,
    Amount,
    Frame,
    Level,
    PayoutRequest,
    Reply,
    Request,
    RouteRequest,
    SetupInfo,
    serialize_levels,
    u64le,
)
from drivers.essp.sim_device import EmptyInFlight, PayoutInFlight, Phase, SimDevice, fewest_notes

_BEFORE_KEYS: Final = frozenset(
    {
        Command.SYNC,
        Command.RESET,
        Command.HOST_PROTOCOL_VERSION,
        Command.SETUP_REQUEST,
        Command.SERIAL_NUMBER,
        Command.SET_BAUD_RATE,
        Command.SET_GENERATOR,
        Command.SET_MODULUS,
        Command.REQUEST_KEY_EXCHANGE,
    }
)
_ENCRYPTED_ONLY: Final = frozenset(
    {
        Command.PAYOUT_AMOUNT,
        Command.HALT_PAYOUT,
        Command.SET_DENOMINATION_ROUTE,
        Command.SMART_EMPTY,
        Command.SET_FIXED_KEY,
    }
)
_PAYOUT_ONLY: Final = frozenset(
    {
        Command.GET_ALL_LEVELS,
        Command.PAYOUT_AMOUNT,
        Command.HALT_PAYOUT,
        Command.SET_DENOMINATION_ROUTE,
        Command.GET_DENOMINATION_ROUTE,
        Command.SMART_EMPTY,
        Command.CASHBOX_PAYOUT_OPERATION_DATA,
        Command.DISABLE_PAYOUT_DEVICE,
    }
)
_CREDIT_EVENTS: Final = ACK_REQUIRED | {Event.DISPENSING, Event.SMART_EMPTYING}


class SimCommands(SimDevice):
    """The wire and the command handlers of :class:`~drivers.essp.sim.EsspSimulator`."""

    # -- the wire --------------------------------------------------------------------------------

    def handle(self, frame: Frame) -> Frame | None:
        """One command frame in, its reply out (``None``: no answer)."""
        if not self._powered or frame.address != self.address:
            return None
        self.frames.append(frame)
        if frame.data == bytes([Command.SYNC]):
            self._record(Command.SYNC)
            self._last_seq = True  # the next command must come with the flag clear
            reply = Frame(self.address, Reply(Response.OK).serialize(), frame.seq)
            self._last_reply, self._last_code = reply, Command.SYNC
            return self._send(reply)
        if frame.seq == self._last_seq and self._last_reply is not None:
            self.retransmissions += 1
            return self._send(self._last_reply)
        self._check_escrow_timeout()
        before = len(self.received)
        data, reboot = self._execute_wire(frame.data)
        if data is None:
            return None  # discarded: the host will send it again with the same flag
        self._last_seq = frame.seq
        reply = Frame(self.address, data, frame.seq)
        self._last_reply = reply
        self._last_code = self.received[before] if len(self.received) > before else 0
        if reboot:
            self.power_cut()
            self.power_on()
            return reply
        return self._send(reply)

    def _send(self, reply: Frame) -> Frame | None:
        for i, target in enumerate(self._drop):
            if target is None or target == self._last_code:
                del self._drop[i]
                return None
        return reply

    def _execute_wire(self, data: bytes) -> tuple[bytes | None, bool]:
        if data[0] == STEX:
            if self._cipher is None:
                return Reply(Response.KEY_NOT_SET).serialize(), False
            try:
                count, inner = self._cipher.unwrap(data)
            except FrameError:
                return None, False
            if count != self._count:
                return None, False
            self._count += 1
            request, _ = Request.deserialize(inner)
            reply = self._execute(request, encrypted=True)
            wrapped = self._cipher.wrap(reply.serialize(), self._count)
            self._use_new_key()
            return wrapped, request.code == Command.RESET
        request, _ = Request.deserialize(data)
        if request.code in _ENCRYPTED_ONLY or (
            self.require_encryption and self._cipher is None and request.code not in _BEFORE_KEYS
        ):
            self._record(request.code)
            return Reply(Response.KEY_NOT_SET).serialize(), False
        reply = self._execute(request, encrypted=False)
        if self._cipher is not None and self._carries_credit(request, reply):
            wrapped = self._cipher.wrap(reply.serialize(), self._count)
            self._count += 1
            return wrapped, False
        self._use_new_key()
        return reply.serialize(), request.code == Command.RESET

    def _use_new_key(self) -> None:
        """Keys negotiated by REQUEST KEY EXCHANGE apply after its reply; eCOUNT restarts."""
        if self._pending_key is not None:
            self._cipher = Cipher(self._pending_key, random=self.random)
            self._pending_key, self._count = None, 0

    def _carries_credit(self, request: Request, reply: Reply) -> bool:
        if request.code not in (Command.POLL, Command.POLL_WITH_ACK) or not reply.ok:
            return False
        return any(e.code in _CREDIT_EVENTS for e in self._last_events)

    def _record(self, code: int) -> None:
        if code in (Command.POLL, Command.POLL_WITH_ACK, Command.HOLD):
            # GA973 §7.4: 200..1000 ms between polls; a host that polls sooner is counted
            now = self.clock()
            if now - self._last_poll_at < 0.2:
                self.fast_polls += 1
            self._last_poll_at = now
        self.received.append(code)
        if self.on_command is not None:
            self.on_command(code)

    # -- commands --------------------------------------------------------------------------------

    def _execute(self, request: Request, *, encrypted: bool) -> Reply:
        self._record(request.code)
        try:
            code = Command(request.code)
        except ValueError:
            return Reply(Response.UNKNOWN_COMMAND)
        if code in _PAYOUT_ONLY and not self.payout:
            return Reply(Response.UNKNOWN_COMMAND)
        handler = self._handlers().get(code)
        if not self.poll_with_ack and code in (Command.POLL_WITH_ACK, Command.EVENT_ACK):
            handler = None  # older firmware: the commands do not exist
        if handler is None:
            return Reply(Response.UNKNOWN_COMMAND)
        return handler(request.params)

    def _handlers(self) -> dict[Command, Callable[[bytes], Reply]]:
        return {
            Command.SYNC: self._ok_if_empty,
            Command.RESET: self._ok_if_empty,
            Command.SET_INHIBITS: self._set_inhibits,
            Command.SETUP_REQUEST: self._setup_request,
            Command.HOST_PROTOCOL_VERSION: self._host_protocol,
            Command.POLL: functools.partial(self._poll, ack=False),
            Command.POLL_WITH_ACK: functools.partial(self._poll, ack=True),
            Command.EVENT_ACK: self._event_ack,
            Command.REJECT: self._reject,
            Command.HOLD: self._hold,
            Command.DISABLE: functools.partial(self._enable, on=False),
            Command.ENABLE: functools.partial(self._enable, on=True),
            Command.SERIAL_NUMBER: self._serial_number,
            Command.LAST_REJECT_CODE: self._last_reject_code,
            Command.GET_ALL_LEVELS: self._get_all_levels,
            Command.PAYOUT_AMOUNT: self._payout_amount,
            Command.HALT_PAYOUT: self._halt,
            Command.SET_DENOMINATION_ROUTE: self._set_route,
            Command.GET_DENOMINATION_ROUTE: self._get_route,
            Command.SMART_EMPTY: self._smart_empty,
            Command.CASHBOX_PAYOUT_OPERATION_DATA: self._payout_operation_data,
            Command.ENABLE_PAYOUT_DEVICE: functools.partial(self._payout_device, on=True),
            Command.DISABLE_PAYOUT_DEVICE: functools.partial(self._payout_device, on=False),
            Command.SET_GENERATOR: functools.partial(self._set_prime, which="generator"),
            Command.SET_MODULUS: functools.partial(self._set_prime, which="modulus"),
            Command.REQUEST_KEY_EXCHANGE: self._key_exchange,
            Command.SET_BAUD_RATE: self._set_baud_rate,
            Command.SET_FIXED_KEY: self._set_fixed_key,
            Command.RESET_FIXED_KEY: self._reset_fixed_key,
        }

    def _ok_if_empty(self, params: bytes) -> Reply:
        return Reply(Response.OK) if not params else Reply(Response.WRONG_PARAMETERS)

    def _set_inhibits(self, params: bytes) -> Reply:
        if not 2 <= len(params) <= 3:
            return Reply(Response.WRONG_PARAMETERS)
        self._inhibits = int.from_bytes(params, "little")
        return Reply(Response.OK)

    def _setup_request(self, params: bytes) -> Reply:
        values = list(self.channels.values())
        multiplier = 100 if all(v % 100 == 0 for v in values) else 1
        n = max(self.channels, default=0)
        channels = tuple(Amount(self.channels.get(i, 0), self.currency) for i in range(1, n + 1))
        info = SetupInfo(
            UnitType.SMART_PAYOUT if self.payout else UnitType.VALIDATOR,
            self.firmware,
            self.currency,
            self._protocol,
            channels,
            multiplier,
        )
        return Reply(Response.OK, info.serialize())

    def _host_protocol(self, params: bytes) -> Reply:
        if len(params) != 1:
            return Reply(Response.WRONG_PARAMETERS)
        if not 1 <= params[0] <= self.max_protocol:
            return Reply(Response(self.version_refusal))
        self._protocol = params[0]
        return Reply(Response.OK)

    def _enable(self, params: bytes, *, on: bool) -> Reply:
        self._enabled = on
        return Reply(Response.OK)

    def _serial_number(self, params: bytes) -> Reply:
        return Reply(Response.OK, self.serial.to_bytes(4, "big"))

    def _last_reject_code(self, params: bytes) -> Reply:
        return Reply(Response.OK, bytes([self._last_reject]))

    def _reject(self, params: bytes) -> Reply:
        note = self._note
        if note is None or note.phase is not Phase.ESCROW:
            return Reply(Response.CANNOT_PROCESS)
        note.phase, note.reject = Phase.REJECTING, RejectCode.REJECT_BY_HOST
        return Reply(Response.OK)

    def _hold(self, params: bytes) -> Reply:
        note = self._note
        if note is None or note.phase is not Phase.ESCROW or not note.reported:
            return Reply(Response.CANNOT_PROCESS)
        note.held_at = self.clock()
        return Reply(Response.OK)

    def _event_ack(self, params: bytes) -> Reply:
        if not self._unacked:
            return Reply(Response.CANNOT_PROCESS)
        self._unacked.clear()
        return Reply(Response.OK)

    # -- keys ------------------------------------------------------------------------------------

    def _set_prime(self, params: bytes, *, which: str) -> Reply:
        if len(params) != 8:
            return Reply(Response.WRONG_PARAMETERS)
        n = int.from_bytes(params, "little")
        if not is_prime(n) or n >= KEY_LIMIT:
            # ITL's firmware computes the exchange in 64-bit integers: numbers from 2**31 on
            # would overflow there (see drivers.essp.crypto.KEY_LIMIT)
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        if which == "generator":
            self._generator = n
        else:
            self._modulus = n
        return Reply(Response.OK)

    def _key_exchange(self, params: bytes) -> Reply:
        if len(params) != 8:
            return Reply(Response.WRONG_PARAMETERS)
        if self._generator is None or self._modulus is None:
            return Reply(Response.CANNOT_PROCESS)
        secret = int.from_bytes(self.random(8), "little") % (self._modulus - 3) + 2
        inter, negotiated = slave_exchange(
            self._generator, self._modulus, int.from_bytes(params, "little"), secret
        )
        self._pending_key = aes_key(self.fixed_key, negotiated)
        return Reply(Response.OK, u64le(inter))

    def _set_baud_rate(self, params: bytes) -> Reply:
        if len(params) != 2:
            return Reply(Response.WRONG_PARAMETERS)
        if params[0] > 2 or params[1] > 1:
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        return Reply(Response.OK)  # a pty has no baud rate to change

    def _set_fixed_key(self, params: bytes) -> Reply:
        if len(params) != 8:
            return Reply(Response.WRONG_PARAMETERS)
        self.fixed_key = int.from_bytes(params, "little")
        return Reply(Response.OK)

    def _reset_fixed_key(self, params: bytes) -> Reply:
        self.fixed_key = DEFAULT_FIXED_KEY
        return Reply(Response.OK)

    # -- payout ----------------------------------------------------------------------------------

    def _get_all_levels(self, params: bytes) -> Reply:
        levels = [Level(self.levels.get(v, 0), v, self.currency) for v in self.channels.values()]
        return Reply(Response.OK, serialize_levels(levels))

    def _payout_device(self, params: bytes, *, on: bool) -> Reply:
        if not self.payout:
            return Reply(Response.CANNOT_PROCESS, bytes([1]))  # no device connected
        if on and len(params) > 1:
            return Reply(Response.WRONG_PARAMETERS)
        if on and params and self.firmware.isdigit() and int(self.firmware) < 416:
            return Reply(Response.WRONG_PARAMETERS)  # GA138: the option byte came with 4.16
        self._payout_enabled = on
        return Reply(Response.OK)

    def _payout_amount(self, params: bytes) -> Reply:
        try:
            req, rest = PayoutRequest.deserialize(params)
        except FrameError:
            return Reply(Response.WRONG_PARAMETERS)
        if rest or req.option not in (PAYOUT_NOW, PAYOUT_TEST) or req.value <= 0:
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        if req.country != self.currency:
            return Reply(Response.PARAMETER_OUT_OF_RANGE)
        if not self._payout_enabled or not self._enabled:
            # GA973: a SMART Payout refuses PAYOUT AMOUNT (test mode too) while disabled
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.DISABLED]))
        if self._payout is not None or self._empty is not None or self._note_moving():
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.BUSY]))
        if sum(v * n for v, n in self.levels.items()) < req.value:
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.NOT_ENOUGH_VALUE]))
        notes = fewest_notes(req.value, self.levels)
        if notes is None:
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.CANNOT_PAY_EXACT]))
        if req.option == PAYOUT_NOW:
            self._payout = PayoutInFlight(req.value, notes, self._stop_after)
            self._stop_after = None
        return Reply(Response.OK)

    def _halt(self, params: bytes) -> Reply:
        if self._payout is None:
            return Reply(Response.CANNOT_PROCESS)
        self._payout.halt = True
        return Reply(Response.OK)

    def _set_route(self, params: bytes) -> Reply:
        try:
            req, rest = RouteRequest.deserialize(params)
        except FrameError:
            return Reply(Response.WRONG_PARAMETERS)
        if rest or req.country != self.currency or req.value not in self.routes:
            return Reply(Response.CANNOT_PROCESS, bytes([2]))  # invalid currency/value
        self.routes[req.value] = req.route
        return Reply(Response.OK)

    def _get_route(self, params: bytes) -> Reply:
        try:
            amount, rest = Amount.deserialize(params)
        except FrameError:
            return Reply(Response.WRONG_PARAMETERS)
        if rest or amount.country != self.currency or amount.value not in self.routes:
            return Reply(Response.CANNOT_PROCESS, bytes([2]))
        return Reply(Response.OK, bytes([self.routes[amount.value]]))

    def _smart_empty(self, params: bytes) -> Reply:
        if self._payout is not None or self._empty is not None:
            return Reply(Response.CANNOT_PROCESS, bytes([PayoutError.BUSY]))
        notes = [v for v, n in sorted(self.levels.items()) for _ in range(n)]
        self._empty = EmptyInFlight(notes, {v: 0 for v in self.channels.values()})
        return Reply(Response.OK)

    def _payout_operation_data(self, params: bytes) -> Reply:
        levels = [Level(self._last_op.get(v, 0), v, self.currency) for v in self.channels.values()]
        return Reply(Response.OK, serialize_levels(levels))
