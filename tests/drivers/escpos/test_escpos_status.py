"""ESC/POS status requests and replies: every protocols.md §6.8 status vector."""

from __future__ import annotations

import pytest
from escpos import constants as oracle_codes  # test-only oracle (python-escpos 3.1)

from drivers.errors import FrameError
from drivers.escpos import status
from drivers.escpos.codes import ErrorBit, OfflineBit, StatusRequest
from drivers.printer.base import PaperState, PrinterStatus

R = StatusRequest
OK = {R.PRINTER: 0x12, R.OFFLINE_CAUSE: 0x12, R.ERROR_CAUSE: 0x12, R.PAPER: 0x12}


def test_request_bytes() -> None:
    assert status.request(R.PRINTER) == bytes.fromhex("10 04 01") == oracle_codes.RT_STATUS_ONLINE
    assert status.request(R.OFFLINE_CAUSE) == bytes.fromhex("10 04 02")
    assert status.request(R.ERROR_CAUSE) == bytes.fromhex("10 04 03")
    assert status.request(R.PAPER) == bytes.fromhex("10 04 04") == oracle_codes.RT_STATUS_PAPER
    assert status.gs_r_request(1) == bytes.fromhex("1D 72 01")


def test_dle_eot_1_online_offline() -> None:
    assert status.online(0x12) is True
    assert status.online(0x1A) is False


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (0x12, OfflineBit(0)),
        (0x16, OfflineBit.COVER_OPEN),
        (0x32, OfflineBit.PAPER_END_STOP),
        (0x52, OfflineBit.ERROR),
    ],
)
def test_dle_eot_2_offline_cause(reply: int, cause: OfflineBit) -> None:
    assert status.offline_cause(reply) == cause


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (0x12, ErrorBit(0)),
        (0x1A, ErrorBit.AUTOCUTTER),
        (0x32, ErrorBit.UNRECOVERABLE),
        (0x52, ErrorBit.AUTO_RECOVERABLE),
    ],
)
def test_dle_eot_3_error_cause(reply: int, cause: ErrorBit) -> None:
    assert status.error_cause(reply) == cause


@pytest.mark.parametrize(
    ("reply", "paper"),
    [
        (0x12, PaperState.OK),
        (0x1E, PaperState.NEAR_END),
        (0x72, PaperState.OUT),
        (0x7E, PaperState.OUT),
    ],
)
def test_dle_eot_4_paper(reply: int, paper: PaperState) -> None:
    assert status.paper(reply) is paper


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ({}, PrinterStatus(True, PaperState.OK)),
        ({R.PRINTER: 0x1A}, PrinterStatus(False, PaperState.OK)),
        ({R.PRINTER: 0x1A, R.OFFLINE_CAUSE: 0x16}, PrinterStatus(False, PaperState.OK, True)),
        ({R.OFFLINE_CAUSE: 0x32}, PrinterStatus(True, PaperState.OUT)),
        ({R.OFFLINE_CAUSE: 0x52}, PrinterStatus(True, PaperState.OK, error=True)),
        ({R.ERROR_CAUSE: 0x1A}, PrinterStatus(True, PaperState.OK, error=True)),
        ({R.ERROR_CAUSE: 0x32}, PrinterStatus(True, PaperState.OK, error=True)),
        ({R.ERROR_CAUSE: 0x52}, PrinterStatus(True, PaperState.OK, error=True)),
        ({R.PAPER: 0x1E}, PrinterStatus(True, PaperState.NEAR_END)),
        ({R.PAPER: 0x72}, PrinterStatus(True, PaperState.OUT)),
        ({R.PAPER: 0x7E}, PrinterStatus(True, PaperState.OUT)),
    ],
)
def test_to_status(replies: dict[StatusRequest, int], expected: PrinterStatus) -> None:
    assert status.to_status({**OK, **replies}) == expected


def test_fault_kinds() -> None:
    assert status.fault_kind(status.to_status({**OK, R.PAPER: 0x1E})) is None  # near end prints
    cover = {**OK, R.PRINTER: 0x1A, R.OFFLINE_CAUSE: 0x16}
    assert status.fault_kind(status.to_status(cover)) == "cover_open"
    out = {**OK, R.PRINTER: 0x1A, R.OFFLINE_CAUSE: 0x32, R.PAPER: 0x7E}
    assert status.fault_kind(status.to_status(out)) == "paper_out"
    assert status.fault_kind(status.to_status({**OK, R.ERROR_CAUSE: 0x1A})) == "error"
    assert status.fault_kind(status.to_status({**OK, R.PRINTER: 0x1A})) == "offline"


def test_missing_reply_is_not_a_status() -> None:
    with pytest.raises(FrameError, match="PAPER"):
        status.to_status({R.PRINTER: 0x12, R.OFFLINE_CAUSE: 0x12, R.ERROR_CAUSE: 0x12})


@pytest.mark.parametrize("byte", [0x00, 0x0C, 0x10, 0x13, 0x11, 0x92, 0x02, 0xFF])
def test_bytes_without_the_fixed_bits_are_not_replies(byte: int) -> None:
    # python-escpos's paper_status() reads 0C as "paper out": here it is not a reply at all
    assert not status.is_dle_eot_reply(byte)
    with pytest.raises(FrameError):
        status.paper(byte)


@pytest.mark.parametrize(
    ("reply", "paper"), [(0x00, PaperState.OK), (0x03, PaperState.NEAR_END), (0x0C, PaperState.OUT)]
)
def test_gs_r_1_paper(reply: int, paper: PaperState) -> None:
    assert status.is_gs_r_reply(reply) and not status.is_dle_eot_reply(reply)
    assert status.gs_r_paper(reply) is paper


def test_gs_r_rejects_dle_eot_reply() -> None:
    with pytest.raises(FrameError):
        status.gs_r_paper(0x12)


@pytest.mark.parametrize(
    ("first", "cover", "online"), [(0x10, False, True), (0x30, True, True), (0x18, False, False)]
)
def test_asb_first_bytes_are_told_apart(first: int, cover: bool, online: bool) -> None:
    # §6.8: GS a 0F -> 4 bytes, byte1 10 idle / 30 cover open / 18 offline
    assert status.is_asb_first(first)
    assert not status.is_dle_eot_reply(first)
    assert not status.is_gs_r_reply(first)
    parsed = status.parse_asb(bytes((first, 0, 0, 0)))
    assert (parsed.cover_open, parsed.online) == (cover, online)


def test_asb_paper_and_error() -> None:
    assert status.parse_asb(bytes.fromhex("10 00 0C 00")).paper is PaperState.OUT
    assert status.parse_asb(bytes.fromhex("10 00 03 00")).paper is PaperState.NEAR_END
    assert status.parse_asb(bytes.fromhex("10 08 00 00")).error
    with pytest.raises(FrameError):
        status.parse_asb(bytes.fromhex("12 00 00 00"))


def test_find_reply_skips_asb_blocks_and_garbage() -> None:
    # an ASB block whose later bytes look like a DLE EOT reply, then garbage, then the reply
    buf = bytes.fromhex("10 12 12 12 0C FF 1E")
    assert status.find_reply(buf, "dle_eot") == (0x1E, 7)
    # an incomplete ASB block waits for its other bytes
    assert status.find_reply(bytes.fromhex("FF 30 00"), "dle_eot") == (None, 1)
    # a GS r reply is found, DLE EOT replies are not GS r replies
    assert status.find_reply(bytes.fromhex("12 1E 03"), "gs_r") == (0x03, 3)
    assert status.find_reply(bytes.fromhex("12 1E"), "gs_r") == (None, 2)
