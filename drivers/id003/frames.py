"""JCM ID-003 frames: bytes ⇄ frozen dataclasses (protocols.md §1.1 "Frame").

::

    SYNC(0xFC) LNG CMD [DATA…] CRCL CRCH

``LNG`` is the whole frame's length, SYNC and CRC included (5…255). The CRC is CRC-16/KERMIT
(polynomial 0x1021 reflected = 0x8408, initial value 0, no final XOR) over SYNC…last DATA byte,
sent low byte first. There is no byte stuffing: a 0xFC inside DATA or the CRC is just a byte,
which is why the stream parser (``protocol.FrameParser``) validates LNG + CRC before it trusts
a SYNC.

The same :class:`Frame` carries a host command (``Command``) or an acceptor answer
(``Status``): the direction says which table ``cmd`` belongs to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from drivers.errors import FrameError
from drivers.id003.codes import FIRST_DENOMINATION, LAST_DENOMINATION

SYNC: Final = 0xFC
HEADER: Final = 3  # SYNC, LNG, CMD
OVERHEAD: Final = HEADER + 2  # + CRC
MIN_LENGTH: Final = OVERHEAD
MAX_LENGTH: Final = 0xFF
MAX_DATA: Final = MAX_LENGTH - OVERHEAD


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE: Final = _crc_table()


def crc16_kermit(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/KERMIT: ``crc16_kermit(b"123456789") == 0x2189``."""
    crc = 0
    for byte in bytes(data):
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class Frame:
    """One ID-003 frame: a command or status code and its data bytes."""

    cmd: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.cmd <= 0xFF:
            raise FrameError(f"code 0x{self.cmd:x} does not fit in a byte")
        if len(self.data) > MAX_DATA:
            raise FrameError(f"{len(self.data)} data bytes: at most {MAX_DATA} fit in a frame")

    def serialize(self) -> bytes:
        body = bytes((SYNC, len(self.data) + OVERHEAD, self.cmd)) + bytes(self.data)
        return body + crc16_kermit(body).to_bytes(2, "little")

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Frame, bytes]:
        """The frame at the start of ``data`` and the bytes after it.

        Raises ``FrameError`` if ``data`` does not start with SYNC, is shorter than its LNG
        says, has an LNG below 5 or a CRC that does not match.
        """
        if not data or data[0] != SYNC:
            raise FrameError("a frame starts with SYNC 0xFC")
        if len(data) < 2:
            raise FrameError("incomplete frame: no LNG byte")
        length = data[1]
        if length < MIN_LENGTH:
            raise FrameError(f"LNG {length} is below the minimum frame length {MIN_LENGTH}")
        if len(data) < length:
            raise FrameError(f"incomplete frame: LNG says {length} bytes, {len(data)} given")
        body, crc = data[: length - 2], data[length - 2 : length]
        expected = crc16_kermit(body)
        if int.from_bytes(crc, "little") != expected:
            raise FrameError(
                f"bad CRC {crc.hex(' ')} (expected {expected.to_bytes(2, 'little').hex(' ')})"
            )
        return cls(body[2], bytes(body[3:])), bytes(data[length:])

    def __repr__(self) -> str:
        return f"Frame(0x{self.cmd:02X}, {self.data.hex(' ')!r})"


# -- payloads ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurrencyRecord:
    """One 4-byte record of the CURRENCY ASSIGN (0x8A) answer: the note with ``escrow_code``
    is worth ``mantissa * 10**exponent`` major units. ``country_code`` is JCM's own number
    (not ISO 4217) and is kept as is (lamassu ``_denominations``)."""

    escrow_code: int
    country_code: int
    mantissa: int
    exponent: int

    def __post_init__(self) -> None:
        for name in ("escrow_code", "country_code", "mantissa", "exponent"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise FrameError(f"currency record {name} does not fit in a byte")

    def value(self, minor_digits: int) -> int:
        """The note's value in minor units of a currency with ``minor_digits`` decimals."""
        return int(self.mantissa * 10 ** (self.exponent + minor_digits))


def encode_currency_assign(records: Iterable[CurrencyRecord]) -> bytes:
    return b"".join(bytes((r.escrow_code, r.country_code, r.mantissa, r.exponent)) for r in records)


def decode_currency_assign(data: bytes) -> tuple[CurrencyRecord, ...]:
    """Records of a CURRENCY ASSIGN answer. A trailing partial record is ignored; records with
    mantissa 0 (unassigned codes) are kept, :func:`escrow_values` skips them."""
    return tuple(
        CurrencyRecord(data[i], data[i + 1], data[i + 2], data[i + 3])
        for i in range(0, len(data) - len(data) % 4, 4)
    )


def escrow_values(records: Iterable[CurrencyRecord], minor_digits: int) -> dict[int, int]:
    """Escrow code → value in minor units, without unassigned (mantissa 0) codes."""
    return {r.escrow_code: r.value(minor_digits) for r in records if r.mantissa}


def currency_record(
    escrow_code: int, value: int, minor_digits: int, country_code: int = 0
) -> CurrencyRecord:
    """The record for a note of ``value`` minor units: the smallest mantissa (5, 1, 2…)."""
    if value <= 0 or value % 10**minor_digits:
        raise ValueError(f"{value} minor units is not a whole number of major units")
    mantissa, exponent = value // 10**minor_digits, 0
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    if mantissa > 0xFF:
        raise ValueError(f"{value} minor units has no one-byte mantissa")
    return CurrencyRecord(escrow_code, country_code, mantissa, exponent)


def denomination_mask(inhibited: Iterable[int]) -> bytes:
    """SET_DENOMINATIONS data (d1 d2) inhibiting these escrow codes: bit i of d1 is escrow code
    0x61 + i, 1 = inhibited; d2 is sent as 0 (see ``codes.FIRST_DENOMINATION``)."""
    d1 = 0
    for code in inhibited:
        if not FIRST_DENOMINATION <= code <= LAST_DENOMINATION:
            raise ValueError(f"escrow code 0x{code:02x} has no inhibit bit (0x61..0x68)")
        d1 |= 1 << (code - FIRST_DENOMINATION)
    return bytes((d1, 0))


def inhibited_codes(mask: bytes) -> frozenset[int]:
    """The escrow codes a SET_DENOMINATIONS mask inhibits (inverse of :func:`denomination_mask`)."""
    d1 = mask[0] if mask else 0
    return frozenset(FIRST_DENOMINATION + i for i in range(8) if d1 & (1 << i))
