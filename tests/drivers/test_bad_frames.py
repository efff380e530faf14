"""The validators' count of frames dropped on the line (``bad_frames``), read by the kiosk's
garbage watch: 0 when closed, each bad frame the parser dropped counted."""

from __future__ import annotations

from typing import Any

from drivers.essp.client import EsspValidator
from drivers.essp.frames import STX, Frame
from drivers.essp.protocol import HostProtocol
from drivers.id003.client import Id003Validator
from drivers.id003.frames import SYNC
from drivers.id003.protocol import Id003Protocol


class NoLink:
    url = "test://"


def test_essp_counts_the_frames_its_parser_dropped() -> None:
    v = EsspValidator("test://", currency="AED")
    assert v.bad_frames == 0  # closed
    link: Any = NoLink()
    v._proto = HostProtocol(link)
    good = Frame(0, b"\xf0", True).serialize()
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # a CRC that does not match
    frames = v._proto._parser.feed(bytes(bad) + bytes(bad) + good)
    assert len(frames) == 1 and v.bad_frames >= 2  # each bad one (resync may count more)
    assert bad[0] == STX


def test_id003_counts_the_answers_with_a_bad_crc() -> None:
    v = Id003Validator("test://", currency="AED")
    assert v.bad_frames == 0
    link: Any = NoLink()
    v._proto = Id003Protocol(link)
    answer = bytes([SYNC, 0x05, 0x11]) + b"\x00\x00"  # a bad CRC
    v._proto.parser.feed(answer + answer)
    assert v.bad_frames >= 1
