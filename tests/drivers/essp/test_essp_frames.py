"""SSP frames: every published vector of protocols.md §6.2, the streaming parser, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import FrameError
from drivers.essp.codes import Command, Event, Response, Route
from drivers.essp.frames import (
    Amount,
    Frame,
    FrameParser,
    Incomplete,
    Layout,
    Level,
    PayoutRequest,
    PollEvent,
    Reply,
    Request,
    RouteRequest,
    SetupInfo,
    crc16,
    crc_bytes,
    inhibit_mask,
    layout,
    parse_events,
    parse_levels,
    serialize_events,
    serialize_levels,
    u64le,
)

P = Command
E = Event


def ev(code: Event, channel: int | None = None) -> PollEvent:
    return PollEvent(code, channel=channel)


# (wire bytes, what the DATA is, the expected decoding). "cmd": Request; "reply": Reply;
# "events": a poll reply (F0 + events) of a validator; "smart": of a SMART device.
VECTORS: list[tuple[str, str, object]] = [
    ("7F 80 01 11 65 82", "cmd", Request(P.SYNC)),
    ("7F 80 01 F0 23 80", "reply", Reply(Response.OK)),
    ("7F 80 01 01 06 02", "cmd", Request(P.RESET)),
    ("7F 80 02 06 08 03 94", "cmd", Request(P.HOST_PROTOCOL_VERSION, b"\x08")),
    ("7F 80 02 06 09 06 14", "cmd", Request(P.HOST_PROTOCOL_VERSION, b"\x09")),
    ("7F 80 01 F8 10 00", "reply", Reply(Response.FAIL)),
    ("7F 80 01 07 12 02", "cmd", Request(P.POLL)),
    ("7F 80 03 F0 F1 E8 BF 8C", "events", (ev(E.SLAVE_RESET), ev(E.DISABLED))),
    ("7F 80 04 F0 EE 01 EB B9 48", "events", (ev(E.CREDIT, 1), ev(E.STACKED))),
    ("7F 80 03 F0 EF 03 C5 CA", "events", (ev(E.READ, 3),)),
    ("7F 80 03 F0 EF 00 CF CA", "events", (ev(E.READ, 0),)),
    ("7F 80 03 F0 EE 04 D7 CC", "events", (ev(E.CREDIT, 4),)),
    ("7F 80 02 F0 ED 51 A2", "events", (ev(E.REJECTING),)),
    ("7F 80 02 F0 EC 54 22", "events", (ev(E.REJECTED),)),
    ("7F 80 02 F0 CC 97 A2", "events", (ev(E.STACKING),)),
    ("7F 80 02 F0 EB 45 A2", "events", (ev(E.STACKED),)),
    ("7F 80 02 F0 E9 4A 22", "events", (ev(E.UNSAFE_JAM),)),
    ("7F 80 02 F0 E8 4F A2", "events", (ev(E.DISABLED),)),
    ("7F 80 03 F0 E6 02 C0 7C", "events", (ev(E.FRAUD_ATTEMPT, 2),)),
    ("7F 80 02 F0 E7 6D A2", "events", (ev(E.STACKER_FULL),)),
    ("7F 80 02 F0 E0 7C 22", "events", (ev(E.NOTE_PATH_OPEN),)),
    ("7F 80 01 0A 3F 82", "cmd", Request(P.ENABLE)),
    ("7F 80 01 09 35 82", "cmd", Request(P.DISABLE)),
    ("7F 80 01 F5 3D 80", "reply", Reply(Response.CANNOT_PROCESS)),
    ("7F 80 03 02 FF FF 25 A4", "cmd", Request(P.SET_INHIBITS, inhibit_mask(range(1, 17), 16))),
    ("7F 80 01 08 30 02", "cmd", Request(P.REJECT)),
    ("7F 80 01 18 53 82", "cmd", Request(P.HOLD)),
    ("7F 80 01 17 71 82", "cmd", Request(P.LAST_REJECT_CODE)),
    ("7F 80 02 F0 08 0C 20", "reply", Reply(Response.OK, b"\x08")),
    ("7F 80 01 0C 2B 82", "cmd", Request(P.SERIAL_NUMBER)),
    ("7F 80 05 F0 00 1C 96 2C D4 97", "reply", Reply(Response.OK, (0x001C962C).to_bytes(4, "big"))),
    ("7F 80 01 56 F7 83", "cmd", Request(P.POLL_WITH_ACK)),
    ("7F 80 04 F0 CC EE 01 62 AA", "events", (ev(E.STACKING), ev(E.CREDIT, 1))),
    ("7F 80 01 57 F2 03", "cmd", Request(P.EVENT_ACK)),
    (
        "7F 80 09 4A C5 05 8F 3A 00 00 00 00 B2 73",
        "cmd",
        Request(P.SET_GENERATOR, u64le(982451653)),
    ),
    ("7F 80 09 4B 8D A6 13 00 00 00 00 00 6C F6", "cmd", Request(P.SET_MODULUS, u64le(1287821))),
    (
        "7F 80 09 4C 79 C8 9C E2 DE 06 00 00 9D 52",
        "cmd",
        Request(P.REQUEST_KEY_EXCHANGE, u64le(7554354432121)),
    ),
    (
        "7F 80 09 F0 23 68 1B FA E5 3C 27 DB 80 8A",
        "reply",
        Reply(Response.OK, u64le(0xDB273CE5FA1B6823)),
    ),
    (
        "7F 80 09 60 67 45 23 01 67 45 23 01 BF 6F",
        "cmd",
        Request(P.SET_FIXED_KEY, u64le(0x0123456701234567)),
    ),
    ("7F 80 03 4D 01 00 E4 27", "cmd", Request(P.SET_BAUD_RATE, b"\x01\x00")),
    (
        "7F 90 0A F0 E6 01 FA 05 00 00 45 55 52 B6 64",
        "smart",
        (PollEvent(E.FRAUD_ATTEMPT, amounts=(Amount(1530, "EUR"),)),),
    ),
]


def _data(kind: str, expected: object) -> bytes:
    if kind in ("cmd", "reply"):
        assert isinstance(expected, Request | Reply)
        return expected.serialize()
    assert isinstance(expected, tuple)
    return bytes([Response.OK]) + serialize_events(expected, protocol=8, smart=kind == "smart")


@pytest.mark.parametrize(("wire", "kind", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_published_vector_encodes_byte_exact(wire: str, kind: str, expected: object) -> None:
    raw = bytes.fromhex(wire)
    address = raw[1] & 0x7F
    assert Frame(address, _data(kind, expected), seq=True).serialize() == raw


@pytest.mark.parametrize(("wire", "kind", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_published_vector_decodes(wire: str, kind: str, expected: object) -> None:
    frame, rest = Frame.deserialize(bytes.fromhex(wire) + b"\xaa")
    assert rest == b"\xaa"
    assert frame.seq is True
    if kind == "cmd":
        assert Request.deserialize(frame.data)[0] == expected
    elif kind == "reply":
        assert Reply.deserialize(frame.data)[0] == expected
    else:
        reply, _ = Reply.deserialize(frame.data)
        assert reply.ok
        smart = kind == "smart"
        assert parse_events(reply.data, protocol=8, smart=smart) == expected


def test_published_vector_meanings() -> None:
    """The numbers the manual gives for its examples."""
    assert int.from_bytes(bytes.fromhex("C5 05 8F 3A 00 00 00 00"), "little") == 982451653
    assert int.from_bytes(bytes.fromhex("8D A6 13 00 00 00 00 00"), "little") == 1287821
    assert int.from_bytes(bytes.fromhex("79 C8 9C E2 DE 06 00 00"), "little") == 7554354432121
    slave = Frame.deserialize(bytes.fromhex("7F 80 09 F0 23 68 1B FA E5 3C 27 DB 80 8A"))[0]
    assert int.from_bytes(slave.data[1:], "little") == 0xDB273CE5FA1B6823
    smart = Frame.deserialize(bytes.fromhex("7F 90 0A F0 E6 01 FA 05 00 00 45 55 52 B6 64"))[0]
    assert smart.address == 0x10
    (fraud,) = parse_events(smart.data[1:], protocol=8, smart=True)
    assert fraud.total("EUR") == 1530  # 15.30 EUR


def test_crc_unit_vector_and_check_value() -> None:
    assert crc_bytes(bytes([1, 2, 3, 4])) == bytes([0x17, 0x9E])  # kybarg utils.test.js
    assert crc16(b"123456789") == 0xAEE7  # CRC-16/CMS check value


# -- the streaming parser -------------------------------------------------------------------------

SYNC = bytes.fromhex("7F 80 01 11 65 82")
OK = bytes.fromhex("7F 80 01 F0 23 80")


def _stuffed_frame() -> tuple[Frame, bytes]:
    """A frame whose CRC contains 0x7F, so the stuffing happens inside the CRC."""
    for n in range(256):
        frame = Frame(0, bytes([Response.OK, n]), seq=False)
        raw = frame.serialize()
        if 0x7F in crc_bytes(bytes([frame.seq_addr, 2, Response.OK, n])):
            return frame, raw
    raise AssertionError("no CRC with 0x7F")


def test_parser_whole_frames() -> None:
    parser = FrameParser()
    frames = parser.feed(SYNC + OK)
    assert [f.data for f in frames] == [b"\x11", b"\xf0"]
    assert parser.garbage == parser.bad_frames == 0


def test_parser_byte_by_byte() -> None:
    parser = FrameParser()
    out: list[Frame] = []
    for b in SYNC + OK:
        out += parser.feed(bytes([b]))
    assert [f.data for f in out] == [b"\x11", b"\xf0"]


def test_parser_in_garbage() -> None:
    parser = FrameParser()
    frames = parser.feed(b"\x00\x13\xff" + SYNC + b"\x42\x42" + OK + b"\x01")
    assert [f.data for f in frames] == [b"\x11", b"\xf0"]
    assert parser.garbage == 6  # 3 before, 2 between, 1 after (no STX: nothing to wait for)
    assert parser.feed(b"") == []


def test_parser_drops_bad_crc_and_resyncs() -> None:
    bad = bytearray(SYNC)
    bad[-1] ^= 0xFF
    parser = FrameParser()
    assert [f.data for f in parser.feed(bytes(bad) + OK)] == [b"\xf0"]
    assert parser.bad_frames == 1


def test_parser_resyncs_on_a_frame_cut_short() -> None:
    parser = FrameParser()
    assert [f.data for f in parser.feed(SYNC[:4] + OK)] == [b"\xf0"]
    assert parser.bad_frames == 1


def test_stuffing_inside_the_crc() -> None:
    frame, raw = _stuffed_frame()
    assert b"\x7f\x7f" in raw[1:]
    assert Frame.deserialize(raw) == (frame, b"")
    parser = FrameParser()
    assert parser.feed(b"\x99" + raw) == [frame]


def test_stuffed_pair_split_across_reads() -> None:
    frame, raw = _stuffed_frame()
    cut = raw.index(b"\x7f\x7f", 1) + 1  # between the two bytes of the stuffed pair
    parser = FrameParser()
    assert parser.feed(raw[:cut]) == []
    assert parser.feed(raw[cut:]) == [frame]


def test_stuffing_of_data_and_address_bytes() -> None:
    frame = Frame(0x10, bytes([0xF0, 0x7F, 0x7F, 0x01]), seq=True)
    raw = frame.serialize()
    assert raw.count(b"\x7f\x7f") >= 2
    assert Frame.deserialize(raw)[0] == frame


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\x80", SYNC[:-1], bytes.fromhex("7F 80 01 11 65 83"), SYNC[:3] + b"\x7f\x01"],
)
def test_deserialize_rejects(raw: bytes) -> None:
    with pytest.raises(FrameError):
        Frame.deserialize(raw)


def test_frame_limits() -> None:
    with pytest.raises(FrameError):
        Frame(0x7E, b"\x11")
    with pytest.raises(FrameError):
        Frame(0, b"")
    with pytest.raises(FrameError):
        Frame(0, bytes(256))


# -- round trips ---------------------------------------------------------------------------------

frames = st.builds(
    Frame,
    address=st.integers(0, 0x7D),
    data=st.binary(min_size=1, max_size=255),
    seq=st.booleans(),
)


@given(frames, st.binary(max_size=20))
def test_frame_round_trip(frame: Frame, tail: bytes) -> None:
    assert Frame.deserialize(frame.serialize() + tail) == (frame, tail)


@given(st.lists(frames, max_size=5), st.integers(1, 7))
def test_parser_round_trip_in_chunks(items: list[Frame], size: int) -> None:
    wire = b"".join(f.serialize() for f in items)
    parser = FrameParser()
    out: list[Frame] = []
    for i in range(0, len(wire), size):
        out += parser.feed(wire[i : i + size])
    assert out == items


@given(st.integers(0, 255), st.binary(max_size=200))
def test_request_and_reply_round_trip(code: int, params: bytes) -> None:
    assert Request.deserialize(Request(code, params).serialize()) == (Request(code, params), b"")
    assert Reply.deserialize(Reply(code, params).serialize()) == (Reply(code, params), b"")


countries = st.sampled_from(["EUR", "GBP", "AED", "USD"])
amounts = st.builds(Amount, value=st.integers(0, 2**32 - 1), country=countries)
incompletes = st.builds(
    Incomplete,
    dispensed=st.integers(0, 2**32 - 1),
    requested=st.integers(0, 2**32 - 1),
    country=countries,
)


@st.composite
def events(draw: st.DrawFn, protocol: int, smart: bool) -> PollEvent:
    code = draw(st.sampled_from(list(Event)))
    kind = layout(code, protocol=protocol, smart=smart)
    if kind is Layout.CHANNEL:
        return PollEvent(code, channel=draw(st.integers(0, 255)))
    if kind is Layout.AMOUNTS:
        return PollEvent(code, amounts=tuple(draw(st.lists(amounts, max_size=3))))
    if kind is Layout.INCOMPLETE:
        return PollEvent(code, incomplete=tuple(draw(st.lists(incompletes, max_size=3))))
    if kind in (Layout.AMOUNT_V6, Layout.AMOUNT_V8):
        return PollEvent(code, amounts=(draw(amounts),))
    if kind is Layout.ERROR:
        values = tuple(draw(st.lists(amounts, max_size=2))) if protocol >= 7 else ()
        return PollEvent(code, amounts=values, error=draw(st.integers(0, 255)))
    return PollEvent(code)


@st.composite
def poll_replies(draw: st.DrawFn) -> tuple[int, bool, tuple[PollEvent, ...]]:
    protocol = draw(st.integers(6, 9))
    smart = draw(st.booleans())
    return protocol, smart, tuple(draw(st.lists(events(protocol, smart), max_size=6)))


@given(poll_replies(), st.booleans())
def test_poll_reply_round_trip(case: tuple[int, bool, tuple[PollEvent, ...]], seq: bool) -> None:
    protocol, smart, items = case
    data = bytes([Response.OK]) + serialize_events(items, protocol=protocol, smart=smart)
    frame = Frame(0, data, seq)
    back, _ = Frame.deserialize(frame.serialize())
    assert parse_events(back.data[1:], protocol=protocol, smart=smart) == items


def test_events_before_protocol_6_carry_plain_values() -> None:
    items = (
        PollEvent(E.DISPENSED, amounts=(Amount(1500, ""),)),
        PollEvent(E.INCOMPLETE_PAYOUT, incomplete=(Incomplete(500, 1500, ""),)),
        PollEvent(E.NOTE_TRANSFERRED_TO_STACKER),
    )
    data = serialize_events(items, protocol=5, smart=True)
    assert len(data) == 5 + 9 + 1
    assert parse_events(data, protocol=5, smart=True) == items


def test_unknown_or_short_event_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        parse_events(b"\x42", protocol=8, smart=False)
    with pytest.raises(FrameError):
        parse_events(bytes([E.CREDIT]), protocol=8, smart=False)
    with pytest.raises(FrameError):
        parse_events(bytes([E.DISPENSED, 1, 0, 0]), protocol=8, smart=True)


setups = st.builds(
    SetupInfo,
    unit_type=st.sampled_from([0, 6]),
    firmware=st.sampled_from(["0430", "0395"]),
    country=countries,
    protocol=st.integers(6, 9),
    channels=st.lists(
        st.builds(Amount, value=st.integers(0, 10**6).map(lambda v: v * 100), country=countries),
        max_size=24,
    ).map(tuple),
    multiplier=st.just(100),
)


@given(setups)
def test_setup_request_round_trip(info: SetupInfo) -> None:
    assert SetupInfo.deserialize(info.serialize()) == (info, b"")


def test_setup_request_layout() -> None:
    info = SetupInfo(6, "0430", "EUR", 8, (Amount(500, "EUR"), Amount(1000, "EUR")), 100)
    raw = info.serialize()
    assert raw[0] == 6 and raw[1:5] == b"0430" and raw[5:8] == b"EUR"
    assert raw[11] == 2  # channels
    assert raw[12:14] == bytes([5, 10])  # the old one-byte values
    assert raw[16:19] == (100).to_bytes(3, "big")  # real value multiplier
    assert raw[19] == 8  # protocol
    assert raw[20:26] == b"EUREUR"
    assert raw[26:] == (5).to_bytes(4, "little") + (10).to_bytes(4, "little")


def test_setup_request_before_protocol_6() -> None:
    raw = bytes([0]) + b"0310GBP" + (100).to_bytes(3, "big") + bytes([2, 5, 10, 2, 2])
    raw += (100).to_bytes(3, "big") + bytes([4])
    info, rest = SetupInfo.deserialize(raw)
    assert rest == b""
    assert info.channels == (Amount(500, "GBP"), Amount(1000, "GBP"))


levels = st.lists(
    st.builds(
        Level, count=st.integers(0, 65535), value=st.integers(0, 2**32 - 1), country=countries
    ),
    max_size=10,
)


@given(levels)
def test_levels_round_trip(items: list[Level]) -> None:
    assert parse_levels(serialize_levels(items)) == tuple(items)
    assert parse_levels(serialize_levels(items) + bytes(4)) == tuple(items)  # unknown-notes count


@given(st.integers(1, 2**32 - 1), countries, st.sampled_from([0x58, 0x19]))
def test_payout_request_round_trip(value: int, country: str, option: int) -> None:
    req = PayoutRequest(value, country, option)
    assert PayoutRequest.deserialize(req.serialize()) == (req, b"")
    assert len(req.serialize()) == 8


@given(st.sampled_from(list(Route)), st.integers(0, 2**32 - 1), countries)
def test_route_request_round_trip(route: Route, value: int, country: str) -> None:
    req = RouteRequest(route, value, country)
    assert RouteRequest.deserialize(req.serialize()) == (req, b"")


def test_inhibit_mask() -> None:
    assert inhibit_mask([1, 3], 7) == b"\x05\x00"
    assert inhibit_mask([17], 20) == b"\x00\x00\x01"
    with pytest.raises(ValueError):
        inhibit_mask([0], 7)
