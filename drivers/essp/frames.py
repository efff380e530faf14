"""SSP frames: bytes ⇄ frozen dataclasses (ITL GA138 "Transport Layer").

Wire format: ``STX(7F) SEQ/ADDR LENGTH DATA… CRCL CRCH``. SEQ/ADDR is the sequence flag
(bit 7) and the slave address (0x00 validators and SMART Payout, 0x10 SMART Hopper; at most
0x7D). The CRC is CRC-16/CMS (poly 0x8005, seed 0xFFFF, not reflected) over SEQ/ADDR, LENGTH
and DATA, sent low byte first and computed before byte stuffing. Every 0x7F after the leading
STX (CRC bytes included) is sent twice.

Above the transport: :class:`Request` (the command byte and its parameters) and
:class:`Reply` (the generic response byte and its data) are a frame's DATA, in the clear or
wrapped by :mod:`drivers.essp.crypto`. Poll replies carry :class:`PollEvent` lists whose
layout depends on the protocol version and on whether the unit is a SMART device (payout or
hopper); :func:`parse_events` and :func:`serialize_events` take both. SETUP REQUEST replies
are :class:`SetupInfo`; GET ALL LEVELS and CASHBOX PAYOUT OPERATION DATA are :class:`Level`
lists.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from drivers.errors import FrameError
from drivers.essp.codes import Event, Response, Route

STX: Final = 0x7F
STEX: Final = 0x7E  # first DATA byte of an encrypted packet
MAX_ADDRESS: Final = 0x7D
SEQ_FLAG: Final = 0x80


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes | bytearray, crc: int = 0xFFFF) -> int:
    """CRC-16/CMS: poly 0x8005, seed 0xFFFF, no reflection (check value 0xAEE7)."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def crc_bytes(data: bytes | bytearray) -> bytes:
    """The CRC as it is sent: low byte first."""
    return crc16(data).to_bytes(2, "little")


# -- transport ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One SSP packet. ``data`` is the command or reply (plain, or STEX + ciphertext)."""

    address: int
    data: bytes
    seq: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.address <= MAX_ADDRESS:
            raise FrameError(f"SSP address {self.address:#x} is not 0..0x7D")
        if not 1 <= len(self.data) <= 255:
            raise FrameError(f"SSP DATA is 1..255 bytes, not {len(self.data)}")

    @property
    def seq_addr(self) -> int:
        return self.address | (SEQ_FLAG if self.seq else 0)

    def serialize(self) -> bytes:
        body = bytes([self.seq_addr, len(self.data)]) + self.data
        body += crc_bytes(body)
        return bytes([STX]) + body.replace(b"\x7f", b"\x7f\x7f")

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Frame, bytes]:
        """The frame at the start of ``data`` and the bytes after it.

        Raises :class:`FrameError` if ``data`` does not start with a valid, complete frame.
        """
        if not data or data[0] != STX:
            raise FrameError("an SSP frame starts with STX 0x7F")
        result = _scan(data, 0)
        if isinstance(result, _Incomplete):
            raise FrameError("incomplete SSP frame")
        if isinstance(result, _Resync):
            raise FrameError("SSP frame cut short by a new STX")
        if isinstance(result, _Bad):
            raise FrameError(result.reason)
        frame, end = result
        return frame, data[end:]


@dataclass(frozen=True, slots=True)
class _Incomplete:
    pass


@dataclass(frozen=True, slots=True)
class _Resync:
    at: int  # index of the STX that starts over


@dataclass(frozen=True, slots=True)
class _Bad:
    reason: str


def _scan(buf: bytes, start: int) -> tuple[Frame, int] | _Incomplete | _Resync | _Bad:
    """Unstuff one frame whose STX is at ``buf[start]``."""
    out = bytearray()
    need = -1
    i = start + 1
    while len(out) != need:
        if i >= len(buf):
            return _Incomplete()
        byte = buf[i]
        if byte == STX:
            if i + 1 >= len(buf):
                return _Incomplete()  # a stuffed pair split across reads, or a new STX
            if buf[i + 1] != STX:
                return _Resync(i)
            i += 2
        else:
            i += 1
        out.append(byte)
        if len(out) == 2:
            need = 2 + out[1] + 2
    body, crc = bytes(out[:-2]), bytes(out[-2:])
    if crc_bytes(body) != crc:
        return _Bad(f"SSP CRC {crc.hex()} != {crc_bytes(body).hex()}")
    address, length = body[0] & 0x7F, body[1]
    if address > MAX_ADDRESS or length == 0:
        return _Bad(f"SSP SEQ/ADDR {body[0]:#04x} LENGTH {length} invalid")
    return Frame(address, body[2:], bool(body[0] & SEQ_FLAG)), i


class FrameParser:
    """A byte stream in, whole frames out. Resynchronises on STX: garbage before a frame,
    frames with a bad CRC and frames cut short by a new STX are dropped (and counted)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.garbage = 0  # bytes dropped outside any frame
        self.bad_frames = 0  # frames dropped: bad CRC, bad header or cut short

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            start = self._buf.find(STX)
            if start < 0:
                self.garbage += len(self._buf)
                self._buf.clear()
                return frames
            if start:
                self.garbage += start
                del self._buf[:start]
            result = _scan(bytes(self._buf), 0)
            if isinstance(result, _Incomplete):
                return frames
            if isinstance(result, _Resync):
                self.bad_frames += 1
                del self._buf[: result.at]
            elif isinstance(result, _Bad):
                self.bad_frames += 1
                del self._buf[:1]
            else:
                frame, end = result
                frames.append(frame)
                del self._buf[:end]

    def clear(self) -> None:
        self._buf.clear()


# -- commands and generic replies ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A command: its code and parameter bytes (a frame's DATA before encryption)."""

    code: int
    params: bytes = b""

    def serialize(self) -> bytes:
        return bytes([self.code]) + self.params

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Request, bytes]:
        if not data:
            raise FrameError("empty SSP command")
        return cls(data[0], bytes(data[1:])), b""


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply: the generic response byte (``Response``) and the data after it."""

    status: int
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == Response.OK

    def serialize(self) -> bytes:
        return bytes([self.status]) + self.data

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Reply, bytes]:
        if not data:
            raise FrameError("empty SSP reply")
        return cls(data[0], bytes(data[1:])), b""


def u64le(n: int) -> bytes:
    return n.to_bytes(8, "little")


def inhibit_mask(channels: Iterable[int], n_channels: int) -> bytes:
    """SET INHIBITS parameters: bit n-1 set enables channel n; 2 bytes, 3 above 16 channels."""
    mask = 0
    for ch in channels:
        if not 1 <= ch <= 24:
            raise ValueError(f"channel {ch} is not 1..24")
        mask |= 1 << (ch - 1)
    return mask.to_bytes(3 if n_channels > 16 else 2, "little")


def _country(data: bytes) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError(f"country code {data.hex()} is not ASCII") from exc


def _country_bytes(country: str) -> bytes:
    raw = country.encode("ascii")
    if len(raw) != 3:
        raise ValueError(f"country code {country!r} is not 3 letters")
    return raw


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise FrameError(f"{what}: {len(data)} bytes, {n} needed")


@dataclass(frozen=True, slots=True)
class Amount:
    """A value in minor units of a currency (4 bytes LE + 3 ASCII bytes, protocol >= 6)."""

    value: int
    country: str

    def serialize(self) -> bytes:
        return self.value.to_bytes(4, "little") + _country_bytes(self.country)

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Amount, bytes]:
        _need(data, 7, "amount")
        return cls(int.from_bytes(data[:4], "little"), _country(data[4:7])), data[7:]


@dataclass(frozen=True, slots=True)
class Incomplete:
    """INCOMPLETE PAYOUT / FLOAT data for one currency: what was paid of what was asked."""

    dispensed: int
    requested: int
    country: str

    def serialize(self) -> bytes:
        return (
            self.dispensed.to_bytes(4, "little")
            + self.requested.to_bytes(4, "little")
            + _country_bytes(self.country)
        )

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Incomplete, bytes]:
        _need(data, 11, "incomplete payout")
        d, r = int.from_bytes(data[:4], "little"), int.from_bytes(data[4:8], "little")
        return cls(d, r, _country(data[8:11])), data[11:]


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    """PAYOUT AMOUNT parameters (protocol >= 6): value, country, option (pay 0x58 / test 0x19)."""

    value: int
    country: str
    option: int

    def serialize(self) -> bytes:
        return Amount(self.value, self.country).serialize() + bytes([self.option])

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[PayoutRequest, bytes]:
        _need(data, 8, "payout request")
        amount, rest = Amount.deserialize(data)
        return cls(amount.value, amount.country, rest[0]), rest[1:]


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """SET DENOMINATION ROUTE parameters (protocol >= 6): route, value, country."""

    route: Route
    value: int
    country: str

    def serialize(self) -> bytes:
        return bytes([self.route]) + Amount(self.value, self.country).serialize()

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[RouteRequest, bytes]:
        _need(data, 8, "route request")
        try:
            route = Route(data[0])
        except ValueError as exc:
            raise FrameError(f"route {data[0]} is not 0 (payout) or 1 (cashbox)") from exc
        amount, rest = Amount.deserialize(data[1:])
        return cls(route, amount.value, amount.country), rest


@dataclass(frozen=True, slots=True)
class Level:
    """One denomination in GET ALL LEVELS / CASHBOX PAYOUT OPERATION DATA: count, value."""

    count: int
    value: int
    country: str

    def serialize(self) -> bytes:
        return self.count.to_bytes(2, "little") + Amount(self.value, self.country).serialize()

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Level, bytes]:
        _need(data, 9, "level")
        amount, rest = Amount.deserialize(data[2:])
        return cls(int.from_bytes(data[:2], "little"), amount.value, amount.country), rest


def serialize_levels(levels: Sequence[Level]) -> bytes:
    return bytes([len(levels)]) + b"".join(lv.serialize() for lv in levels)


def parse_levels(data: bytes) -> tuple[Level, ...]:
    """``n`` then ``n`` levels; trailing bytes (some firmware adds a 4-byte count of unknown
    notes after CASHBOX PAYOUT OPERATION DATA) are ignored."""
    _need(data, 1, "levels")
    rest, levels = data[1:], []
    for _ in range(data[0]):
        level, rest = Level.deserialize(rest)
        levels.append(level)
    return tuple(levels)


# -- SETUP REQUEST ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetupInfo:
    """SETUP REQUEST reply of a validator / SMART Payout (GA138 "Setup Request").

    Layout after F0: unit type(1), firmware(4 ASCII), country(3), value multiplier(3 BE),
    n(1), channel values(n), channel security(n), real value multiplier(3 BE), protocol(1);
    protocol >= 6 adds n country codes(3 each) and n expanded values(4 LE each). A channel's
    value in minor units is its expanded value x the real value multiplier (as ITL's SDK
    computes it); ``channels`` holds those minor-unit values, channel 1 first.
    """

    unit_type: int
    firmware: str
    country: str
    protocol: int
    channels: tuple[Amount, ...]
    multiplier: int = 1

    def serialize(self) -> bytes:
        m = self.multiplier
        for ch in self.channels:
            if ch.value % m:
                raise ValueError(f"channel value {ch.value} is not a multiple of {m}")
        n = len(self.channels)
        small = bytes(v if (v := ch.value // m) < 256 else 0 for ch in self.channels)
        out = bytes([self.unit_type]) + self.firmware.encode("ascii")
        out += _country_bytes(self.country) + m.to_bytes(3, "big") + bytes([n]) + small
        out += bytes([2] * n) + m.to_bytes(3, "big") + bytes([self.protocol])
        if self.protocol >= 6:
            out += b"".join(_country_bytes(ch.country) for ch in self.channels)
            out += b"".join((ch.value // m).to_bytes(4, "little") for ch in self.channels)
        return out

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[SetupInfo, bytes]:
        _need(data, 12, "setup request")
        unit_type, firmware, country = data[0], _country(data[1:5]), _country(data[5:8])
        value_multiplier, n = int.from_bytes(data[8:11], "big"), data[11]
        _need(data, 16 + 2 * n, "setup request")
        small = data[12 : 12 + n]
        pos = 12 + 2 * n
        multiplier = int.from_bytes(data[pos : pos + 3], "big")
        protocol = data[pos + 3]
        pos += 4
        if protocol >= 6:
            _need(data, pos + 7 * n, "setup request (protocol >= 6)")
            countries = [_country(data[pos + 3 * i : pos + 3 * i + 3]) for i in range(n)]
            pos += 3 * n
            values = [
                int.from_bytes(data[pos + 4 * i : pos + 4 * i + 4], "little") * multiplier
                for i in range(n)
            ]
            pos += 4 * n
            channels = tuple(Amount(v, c) for v, c in zip(values, countries, strict=True))
        else:
            channels = tuple(Amount(v * value_multiplier, country) for v in small)
            multiplier = value_multiplier
        info = cls(unit_type, firmware, country, protocol, channels, multiplier or 1)
        return info, data[pos:]


# -- poll events --------------------------------------------------------------------------------


class Layout(enum.Enum):
    """How an event's data is laid out (GA138 event tables; kybarg ``utils.js`` parser)."""

    NONE = "none"
    CHANNEL = "channel"  # 1 byte
    AMOUNTS = "amounts"  # n, then n x (value 4, country 3); protocol < 6: value 4
    INCOMPLETE = "incomplete"  # n, then n x (dispensed 4, requested 4, country 3)
    AMOUNT_V6 = "amount_v6"  # value 4 + country 3 from protocol 6, nothing before
    AMOUNT_V8 = "amount_v8"  # value 4 + country 3 from protocol 8, nothing before
    ERROR = "error"  # protocol >= 7: AMOUNTS then an error byte; before: the error byte


_AMOUNT_EVENTS: Final = frozenset(
    {
        Event.DISPENSING,
        Event.DISPENSED,
        Event.JAMMED,
        Event.HALTED,
        Event.FLOATING,
        Event.FLOATED,
        Event.TIMEOUT,
        Event.CASHBOX_PAID,
        Event.SMART_EMPTYING,
        Event.SMART_EMPTIED,
    }
)
_CHANNEL_EVENTS: Final = frozenset(
    {Event.READ, Event.CREDIT, Event.CLEARED_FROM_FRONT, Event.CLEARED_TO_CASHBOX}
)


def layout(code: Event, *, protocol: int, smart: bool) -> Layout:
    """The data layout of event ``code``. ``smart``: a SMART Payout / Hopper unit, whose
    FRAUD ATTEMPT carries values (the published SMART Hopper vector) instead of a channel."""
    if code in _CHANNEL_EVENTS:
        return Layout.CHANNEL
    if code == Event.FRAUD_ATTEMPT:
        return Layout.AMOUNTS if smart else Layout.CHANNEL
    if code in _AMOUNT_EVENTS:
        return Layout.AMOUNTS
    if code in (Event.INCOMPLETE_PAYOUT, Event.INCOMPLETE_FLOAT):
        return Layout.INCOMPLETE
    if code in (Event.NOTE_TRANSFERRED_TO_STACKER, Event.NOTE_DISPENSED_AT_POWER_UP):
        return Layout.AMOUNT_V6 if protocol >= 6 else Layout.NONE
    if code in (
        Event.NOTE_HELD_IN_BEZEL,
        Event.NOTE_PAID_INTO_STACKER_AT_POWER_UP,
        Event.NOTE_PAID_INTO_STORE_AT_POWER_UP,
    ):
        return Layout.AMOUNT_V8 if protocol >= 8 else Layout.NONE
    if code == Event.ERROR_DURING_PAYOUT:
        return Layout.ERROR
    return Layout.NONE


@dataclass(frozen=True, slots=True)
class PollEvent:
    """One event of a POLL / POLL WITH ACK reply."""

    code: Event
    channel: int | None = None
    amounts: tuple[Amount, ...] = ()
    incomplete: tuple[Incomplete, ...] = ()
    error: int | None = None

    def total(self, country: str) -> int:
        """The sum of this event's values in ``country`` (minor units)."""
        return sum(a.value for a in self.amounts if a.country == country)

    def serialize(self, *, protocol: int, smart: bool) -> bytes:
        kind = layout(self.code, protocol=protocol, smart=smart)
        out = bytes([self.code])
        if kind is Layout.CHANNEL:
            out += bytes([self.channel or 0])
        elif kind is Layout.AMOUNTS or (kind is Layout.ERROR and protocol >= 7):
            out += _amounts(self.amounts, protocol)
        elif kind is Layout.INCOMPLETE:
            out += _incomplete(self.incomplete, protocol)
        elif kind in (Layout.AMOUNT_V6, Layout.AMOUNT_V8):
            out += self.amounts[0].serialize()
        if kind is Layout.ERROR:
            out += bytes([self.error or 0])
        return out

    @classmethod
    def deserialize(cls, data: bytes, *, protocol: int, smart: bool) -> tuple[PollEvent, bytes]:
        try:
            code = Event(data[0])
        except ValueError as exc:
            raise FrameError(f"unknown SSP event {data[0]:#04x}") from exc
        kind, rest = layout(code, protocol=protocol, smart=smart), data[1:]
        if kind is Layout.CHANNEL:
            _need(rest, 1, code.name)
            return cls(code, channel=rest[0]), rest[1:]
        if kind is Layout.AMOUNTS:
            amounts, rest = _parse_amounts(rest, protocol, code)
            return cls(code, amounts=amounts), rest
        if kind is Layout.INCOMPLETE:
            incomplete, rest = _parse_incomplete(rest, protocol, code)
            return cls(code, incomplete=incomplete), rest
        if kind in (Layout.AMOUNT_V6, Layout.AMOUNT_V8):
            amount, rest = Amount.deserialize(rest)
            return cls(code, amounts=(amount,)), rest
        if kind is Layout.ERROR:
            values: tuple[Amount, ...] = ()
            if protocol >= 7:
                values, rest = _parse_amounts(rest, protocol, code)
            _need(rest, 1, code.name)
            return cls(code, amounts=values, error=rest[0]), rest[1:]
        return cls(code), rest


def _amounts(amounts: tuple[Amount, ...], protocol: int) -> bytes:
    if protocol < 6:
        return (amounts[0].value if amounts else 0).to_bytes(4, "little")
    return bytes([len(amounts)]) + b"".join(a.serialize() for a in amounts)


def _incomplete(items: tuple[Incomplete, ...], protocol: int) -> bytes:
    if protocol < 6:
        first = items[0] if items else Incomplete(0, 0, "")
        return first.dispensed.to_bytes(4, "little") + first.requested.to_bytes(4, "little")
    return bytes([len(items)]) + b"".join(i.serialize() for i in items)


def _parse_amounts(data: bytes, protocol: int, code: Event) -> tuple[tuple[Amount, ...], bytes]:
    if protocol < 6:
        _need(data, 4, code.name)
        return (Amount(int.from_bytes(data[:4], "little"), ""),), data[4:]
    _need(data, 1, code.name)
    rest, out = data[1:], []
    for _ in range(data[0]):
        amount, rest = Amount.deserialize(rest)
        out.append(amount)
    return tuple(out), rest


def _parse_incomplete(
    data: bytes, protocol: int, code: Event
) -> tuple[tuple[Incomplete, ...], bytes]:
    if protocol < 6:
        _need(data, 8, code.name)
        d, r = int.from_bytes(data[:4], "little"), int.from_bytes(data[4:8], "little")
        return (Incomplete(d, r, ""),), data[8:]
    _need(data, 1, code.name)
    rest, out = data[1:], []
    for _ in range(data[0]):
        item, rest = Incomplete.deserialize(rest)
        out.append(item)
    return tuple(out), rest


def parse_events(data: bytes, *, protocol: int, smart: bool) -> tuple[PollEvent, ...]:
    """The events of a poll reply's data (after the F0). Raises ``FrameError`` on an unknown
    event code or a short event: the rest of the reply cannot be delimited."""
    events, rest = [], data
    while rest:
        event, rest = PollEvent.deserialize(rest, protocol=protocol, smart=smart)
        events.append(event)
    return tuple(events)


def serialize_events(events: Iterable[PollEvent], *, protocol: int, smart: bool) -> bytes:
    return b"".join(e.serialize(protocol=protocol, smart=smart) for e in events)
