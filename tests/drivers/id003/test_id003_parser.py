"""The ID-003 stream parser: whole, byte by byte, in garbage, bad CRC, 0xFC inside frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.id003.codes import Status
from drivers.id003.frames import MAX_DATA, Frame
from drivers.id003.protocol import FrameParser

STATUS_REQUEST = bytes.fromhex("FC 05 11 27 56")
ESCROW_EUR_10 = Frame(Status.ESCROW, b"\x63")
# Published (a C# UBA host): SET BAR INHIBIT with data 0xFC.
FC_IN_DATA = bytes.fromhex("FC 06 C7 FC 87 8C")
INVALID_SAMPLE = bytes.fromhex(
    "FC 2F 88 69 28 45 55 52 35 29 31 30 30 2D 53 53 20 49 44 30 30 33 2D 30 35 56 33 30 30"
    " 2D 34 35 20 32 38 4A 55 4E 32 33 20 37 46 32 33"
)


def feed_all(parser: FrameParser, *chunks: bytes) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def test_whole_frames_in_one_chunk() -> None:
    p = FrameParser()
    assert p.feed(STATUS_REQUEST + ESCROW_EUR_10.serialize()) == [Frame(0x11), ESCROW_EUR_10]
    assert p.pending == 0 and p.discarded == 0


def test_byte_by_byte() -> None:
    p = FrameParser()
    raw = ESCROW_EUR_10.serialize() + STATUS_REQUEST
    got = feed_all(p, *(raw[i : i + 1] for i in range(len(raw))))
    assert got == [ESCROW_EUR_10, Frame(0x11)]


def test_inside_garbage() -> None:
    p = FrameParser()
    # Lone bytes, SYNCs with impossible lengths, a frame-shaped run with a wrong CRC.
    garbage = b"\x00\x13\xfc\x01\xfc\x03\x99\xfc\x05\x11\x00\x00"
    got = p.feed(garbage + STATUS_REQUEST + b"\xaa\xfc\x00" + ESCROW_EUR_10.serialize() + b"\xfc")
    assert got == [Frame(0x11), ESCROW_EUR_10]
    assert p.pending == 1  # a lone trailing SYNC waits for its LNG


def test_bad_crc_is_skipped_and_counted() -> None:
    p = FrameParser()
    bad = bytearray(ESCROW_EUR_10.serialize())
    bad[-1] ^= 0x01
    assert p.feed(bytes(bad) + STATUS_REQUEST) == [Frame(0x11)]
    assert p.crc_errors == 1


def test_sync_inside_data_and_crc() -> None:
    p = FrameParser()
    # EUR escrow code 0x16 would give a CRC with 0xFC in it: 13 16 -> CRC 88 FC.
    crc_fc = Frame(Status.ESCROW, b"\x16")
    assert crc_fc.serialize()[-1] == 0xFC
    version = Frame(0x88, b"\xfc\x05\x11\x27\x56 a frame inside data")
    stream = FC_IN_DATA + crc_fc.serialize() + version.serialize() + STATUS_REQUEST
    assert p.feed(stream) == [Frame(0xC7, b"\xfc"), crc_fc, version, Frame(0x11)]
    # Byte by byte too (the nested "frame" must not be taken while the outer one is incomplete).
    p = FrameParser()
    assert feed_all(p, *(stream[i : i + 1] for i in range(len(stream)))) == [
        Frame(0xC7, b"\xfc"),
        crc_fc,
        version,
        Frame(0x11),
    ]


def test_corrupted_length_holds_until_cleared() -> None:
    p = FrameParser()
    corrupt = b"\xfc\xff\x11\x27\x56"  # LNG 255: waits for 250 more bytes
    assert p.feed(corrupt + STATUS_REQUEST) == []
    assert p.pending == 10
    p.clear()  # the host before each request, the simulator after a silent gap
    assert p.feed(STATUS_REQUEST) == [Frame(0x11)]


def test_invalid_published_sample_yields_no_frame() -> None:
    p = FrameParser()
    assert p.feed(INVALID_SAMPLE) == []
    # What comes next shows it was not a frame; the next real frame is still found.
    assert p.feed(STATUS_REQUEST) == [Frame(0x11)]
    p = FrameParser()
    assert p.feed(INVALID_SAMPLE + b"\x00\x00") == []
    assert p.crc_errors >= 1


def test_length_below_minimum_slides() -> None:
    p = FrameParser()
    assert p.feed(b"\xfc\x02\xfc\x00" + STATUS_REQUEST) == [Frame(0x11)]


_frame = st.builds(
    Frame, st.integers(0, 255), st.binary(max_size=MAX_DATA).filter(lambda d: len(d) < 40)
)


@given(st.lists(_frame, max_size=6), st.data())
def test_any_chunking_yields_the_same_frames(frames: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(f.serialize() for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert feed_all(FrameParser(), *chunks) == frames


@given(st.binary(max_size=40), _frame)
def test_frame_after_garbage_without_sync_is_found(garbage: bytes, frame: Frame) -> None:
    garbage = garbage.replace(b"\xfc", b"")
    assert FrameParser().feed(garbage + frame.serialize()) == [frame]
