"""ID-003 frames: CRC-16/KERMIT, the published vectors (protocols.md §6.1), frame round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import FrameError
from drivers.id003.codes import (
    EUR_ESCROW,
    USD_ESCROW,
    Command,
    RejectReason,
    Status,
    reject_reason_name,
)
from drivers.id003.frames import (
    MAX_DATA,
    CurrencyRecord,
    Frame,
    crc16_kermit,
    currency_record,
    decode_currency_assign,
    denomination_mask,
    encode_currency_assign,
    escrow_values,
    inhibited_codes,
)

# protocols.md §6.1: the invalid "VERSION_REQ_RESP" sample of crc_test.c: LNG 0x2F (47) with only
# 45 bytes given, and its "CRC 32 33" is ASCII text.
INVALID_SAMPLE = bytes.fromhex(
    "FC 2F 88 69 28 45 55 52 35 29 31 30 30 2D 53 53 20 49 44 30 30 33 2D 30 35 56 33 30 30"
    " 2D 34 35 20 32 38 4A 55 4E 32 33 20 37 46 32 33"
)


def nibble_crc(data: bytes) -> int:
    """An independent CRC-16/KERMIT: hackwin ``calcCRC`` (4 bits at a time, 0x1081)."""
    crc = 0
    for c in data:
        q = (crc ^ c) & 0x0F
        crc = (crc >> 4) ^ (q * 0x1081)
        q = (crc ^ (c >> 4)) & 0x0F
        crc = (crc >> 4) ^ (q * 0x1081)
    return crc


def test_crc16_kermit_check_value() -> None:
    assert crc16_kermit(b"123456789") == 0x2189
    assert nibble_crc(b"123456789") == 0x2189


def test_published_status_request_vector() -> None:
    published = bytes.fromhex("FC 05 11 27 56")  # §6.1, P
    assert Frame(Command.STATUS_REQUEST).serialize() == published
    assert Frame.deserialize(published) == (Frame(0x11), b"")
    assert crc16_kermit(published[:3]) == 0x5627


def test_invalid_published_sample_is_refused() -> None:
    assert len(INVALID_SAMPLE) == 45 and INVALID_SAMPLE[1] == 47
    with pytest.raises(FrameError, match="incomplete"):
        Frame.deserialize(INVALID_SAMPLE)
    # Its last two bytes are not the CRC of the rest, whatever length one assumes.
    assert crc16_kermit(INVALID_SAMPLE[:-2]) != int.from_bytes(INVALID_SAMPLE[-2:], "little")
    with pytest.raises(FrameError, match="bad CRC"):
        Frame.deserialize(INVALID_SAMPLE + b"\x00\x00")
    fixed_length = INVALID_SAMPLE[:1] + bytes((45,)) + INVALID_SAMPLE[2:]
    with pytest.raises(FrameError, match="bad CRC"):
        Frame.deserialize(fixed_length)


# The frames the driver builds. "P": the same bytes appear in public ID-003 hosts (a
# lamassu-machine id003rs232.js variant with a table of literal frames, and a C# UBA host);
# every one is also checked against the independent nibble CRC.
COMMAND_FRAMES = [
    (Command.STATUS_REQUEST, b"", "FC 05 11 27 56"),
    (Command.RESET, b"", "FC 05 40 2B 15"),
    (Command.ACK, b"", "FC 05 50 AA 05"),
    (Command.STACK_1, b"", "FC 05 41 A2 04"),
    (Command.STACK_2, b"", "FC 05 42 39 36"),
    (Command.RETURN, b"", "FC 05 43 B0 27"),
    (Command.HOLD, b"\xff", "FC 06 44 FF B8 18"),
    (Command.SET_INHIBIT, b"\x01", "FC 06 C3 01 8D C7"),
    (Command.SET_INHIBIT, b"\x00", "FC 06 C3 00 04 D6"),
    (Command.SET_DENOMINATIONS, b"\x00\x00", "FC 07 C0 00 00 2D B5"),
    (Command.SET_SECURITY, b"\x00\x00", "FC 07 C1 00 00 F1 EF"),
    (Command.SET_COMMUNICATION_MODE, b"\x00", "FC 06 C2 00 DC CF"),
    (Command.SET_OPTIONAL_FUNCTION, b"\x03\x00", "FC 07 C5 03 00 F8 A6"),
    (Command.SET_BARCODE_FUNCTION, b"\x01\x12", "FC 07 C6 01 12 BF 49"),
    (Command.SET_BAR_INHIBIT, b"\xfc", "FC 06 C7 FC 87 8C"),
    (Command.VERSION, b"", "FC 05 88 6F 5F"),
    (Command.CURRENCY_ASSIGN, b"", "FC 05 8A 7D 7C"),
]


@pytest.mark.parametrize(("cmd", "data", "wire"), COMMAND_FRAMES)
def test_command_frames(cmd: Command, data: bytes, wire: str) -> None:
    raw = Frame(cmd, data).serialize()
    assert raw == bytes.fromhex(wire)
    assert raw[1] == len(raw)
    assert nibble_crc(raw[:-2]).to_bytes(2, "little") == raw[-2:]
    assert nibble_crc(raw) == 0  # a whole KERMIT frame (CRC low byte first) checks to zero


def test_denomination_mask_frame() -> None:
    # Inhibit everything but EUR 5 (0x62): bits of 0x61 and 0x63..0x68 set.
    mask = denomination_mask([0x61, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68])
    assert mask == b"\xfd\x00"
    raw = Frame(Command.SET_DENOMINATIONS, mask).serialize()
    assert raw[:5] == bytes.fromhex("FC 07 C0 FD 00")
    assert nibble_crc(raw[:-2]).to_bytes(2, "little") == raw[-2:]
    assert inhibited_codes(mask) == {0x61, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68}
    with pytest.raises(ValueError, match="no inhibit bit"):
        denomination_mask([0x69])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "SYNC"),
        (b"\x05\x11\x27\x56", "SYNC"),
        (b"\xfc", "no LNG"),
        (b"\xfc\x04\x11\x00", "minimum"),
        (b"\xfc\x05\x11\x27", "incomplete"),
        (b"\xfc\x05\x11\x27\x57", "bad CRC"),
    ],
)
def test_deserialize_refuses(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        Frame.deserialize(data)


def test_frame_limits() -> None:
    with pytest.raises(FrameError):
        Frame(0x100)
    with pytest.raises(FrameError):
        Frame(0x88, bytes(MAX_DATA + 1))
    assert Frame(0x88, bytes(MAX_DATA)).serialize()[1] == 0xFF


def test_currency_assign_records() -> None:
    records = tuple(currency_record(c, v, 2) for c, v in sorted(EUR_ESCROW.items()))
    assert records[0] == CurrencyRecord(0x62, 0, 5, 0)
    assert records[-1] == CurrencyRecord(0x68, 0, 5, 2)  # 500 = 5 x 10^2
    data = encode_currency_assign(records)
    assert len(data) == 4 * len(EUR_ESCROW)
    assert decode_currency_assign(data) == records
    assert escrow_values(decode_currency_assign(data + b"\x69\x00"), 2) == EUR_ESCROW
    unassigned = CurrencyRecord(0x61, 0, 0, 0)
    assert escrow_values((unassigned, *records), 2) == EUR_ESCROW
    usd = tuple(currency_record(c, v, 2, country_code=1) for c, v in USD_ESCROW.items())
    assert escrow_values(usd, 2) == USD_ESCROW
    with pytest.raises(ValueError, match="whole number"):
        currency_record(0x61, 250, 2)


def test_reject_reason_names() -> None:
    assert reject_reason_name(RejectReason.INHIBIT) == "inhibit"
    assert reject_reason_name(0x77) == "photo_pattern"
    assert reject_reason_name(0x99) == "reject_0x99"


# -- round trips ----------------------------------------------------------------------------------

_ONE_BYTE = st.binary(min_size=1, max_size=1)
_DATA_FOR: dict[int, st.SearchStrategy[bytes]] = {
    Status.ESCROW: _ONE_BYTE,
    Status.REJECTING: st.sampled_from([bytes((r,)) for r in RejectReason]),
    Status.FAILURE: _ONE_BYTE,
    Command.SET_DENOMINATIONS: st.binary(min_size=2, max_size=2),
    Command.SET_SECURITY: st.binary(min_size=2, max_size=2),
    Command.SET_COMMUNICATION_MODE: st.sampled_from([b"\x00", b"\x01", b"\x02"]),
    Command.SET_INHIBIT: st.sampled_from([b"\x00", b"\x01"]),
    Command.VERSION: st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=MAX_DATA
    ).map(str.encode),
    Command.CURRENCY_ASSIGN: st.lists(
        st.tuples(*[st.integers(0, 255)] * 4), max_size=MAX_DATA // 4
    ).map(lambda rs: encode_currency_assign(CurrencyRecord(*r) for r in rs)),
}
_ALL_CODES = sorted({*map(int, Command), *map(int, Status)})


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    code = draw(st.sampled_from(_ALL_CODES))
    data = draw(_DATA_FOR.get(code, st.binary(max_size=MAX_DATA)))
    return Frame(code, data)


@given(frames(), st.binary(max_size=16))
def test_round_trip_every_frame_type(frame: Frame, rest: bytes) -> None:
    raw = frame.serialize()
    assert raw[0] == 0xFC and raw[1] == len(raw) == len(frame.data) + 5
    assert Frame.deserialize(raw + rest) == (frame, rest)


@given(st.lists(st.tuples(*[st.integers(0, 255)] * 4), max_size=20))
def test_round_trip_currency_records(raw: list[tuple[int, int, int, int]]) -> None:
    records = tuple(CurrencyRecord(*r) for r in raw)
    assert decode_currency_assign(encode_currency_assign(records)) == records


@given(st.sets(st.integers(0x61, 0x68)))
def test_round_trip_denomination_mask(codes: set[int]) -> None:
    assert inhibited_codes(denomination_mask(codes)) == codes
