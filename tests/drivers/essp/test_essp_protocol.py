"""The host transport over a real pty: sequence flag, retransmission, addresses, eCOUNT."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from drivers.errors import DeviceFault
from drivers.essp.codes import Command, Response
from drivers.essp.crypto import Cipher
from drivers.essp.frames import Frame, FrameParser, Reply, Request
from drivers.essp.protocol import HostProtocol
from drivers.pty import DevicePort
from drivers.serialport import ESSP_LINE, open_link

T = TypeVar("T")
OK = Reply(Response.OK).serialize()
KEY = bytes(range(16))

# respond(frame, index of the frame) -> bytes to write back (b"" = stay silent)
Responder = Callable[[Frame, int], bytes]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def device(port: DevicePort, respond: Responder, seen: list[Frame]) -> None:
    port.start()
    parser = FrameParser()
    while True:
        for frame in parser.feed(await port.read_some()):
            seen.append(frame)
            out = respond(frame, len(seen) - 1)
            if out:
                port.write(out)


def answer(frame: Frame, data: bytes = OK, *, address: int | None = None) -> bytes:
    addr = frame.address if address is None else address
    return Frame(addr, data, frame.seq).serialize()


async def with_device(
    respond: Responder,
    body: Callable[[HostProtocol, list[Frame]], Coroutine[Any, Any, T]],
    *,
    tries: int = 4,
) -> T:
    port = DevicePort()
    seen: list[Frame] = []
    task = asyncio.create_task(device(port, respond, seen))
    link = await open_link(str(port.path), ESSP_LINE)
    try:
        return await body(HostProtocol(link, reply_timeout=0.05, tries=tries), seen)
    finally:
        await link.close()
        task.cancel()
        port.close()


def test_sequence_flag_toggles_and_sync_resets_it() -> None:
    async def body(proto: HostProtocol, seen: list[Frame]) -> list[bool]:
        await proto.sync()
        for _ in range(3):
            await proto.command(Request(Command.POLL))
        await proto.sync()
        await proto.command(Request(Command.POLL))
        return [f.seq for f in seen]

    flags = run(with_device(lambda f, i: answer(f), body))
    assert flags == [True, False, True, False, True, False]


def test_dropped_reply_is_recovered_by_sending_the_same_bytes() -> None:
    def respond(frame: Frame, i: int) -> bytes:
        return b"" if i == 1 else answer(frame, Reply(Response.OK, bytes([i])).serialize())

    async def body(proto: HostProtocol, seen: list[Frame]) -> tuple[Reply, int, list[Frame]]:
        await proto.sync()
        reply = await proto.command(Request(Command.PAYOUT_AMOUNT, b"\x01\x02"))
        return reply, proto.retransmissions, list(seen)

    reply, retransmissions, seen = run(with_device(respond, body))
    assert retransmissions == 1
    assert seen[1] == seen[2]  # the same flag and bytes, sent again
    assert seen[1].seq is False
    assert reply == Reply(Response.OK, bytes([2]))


def test_reply_from_another_address_is_ignored() -> None:
    def respond(frame: Frame, i: int) -> bytes:
        if i == 1:
            return answer(frame, address=0x10)  # another slave on the bus
        return answer(frame, Reply(Response.OK, b"\x07").serialize())

    async def body(proto: HostProtocol, seen: list[Frame]) -> tuple[Reply, int]:
        await proto.sync()
        return await proto.command(Request(Command.SERIAL_NUMBER)), proto.retransmissions

    reply, retransmissions = run(with_device(respond, body))
    assert reply.data == b"\x07" and retransmissions == 1


def test_late_duplicate_with_the_other_flag_is_ignored() -> None:
    def respond(frame: Frame, i: int) -> bytes:
        stale = Frame(0, Reply(Response.FAIL).serialize(), not frame.seq).serialize()
        return b"\x00\x01" + stale + answer(frame)  # garbage, a stale reply, then ours

    async def body(proto: HostProtocol, seen: list[Frame]) -> Reply:
        await proto.sync()
        return await proto.command(Request(Command.ENABLE))

    assert run(with_device(respond, body)).ok


def test_bad_crc_reply_is_ignored() -> None:
    def respond(frame: Frame, i: int) -> bytes:
        raw = bytearray(answer(frame))
        if i == 1:
            raw[-1] ^= 0x55
        return bytes(raw)

    async def body(proto: HostProtocol, seen: list[Frame]) -> int:
        await proto.sync()
        assert (await proto.command(Request(Command.ENABLE))).ok
        return proto.retransmissions

    assert run(with_device(respond, body)) == 1


def test_no_reply_after_all_tries_is_disconnected() -> None:
    async def body(proto: HostProtocol, seen: list[Frame]) -> int:
        with pytest.raises(DeviceFault) as info:
            await proto.command(Request(Command.POLL))
        assert info.value.kind == "disconnected"
        await asyncio.sleep(0.02)
        return len(seen)

    assert run(with_device(lambda f, i: b"", body, tries=3)) == 3


def test_encrypted_counter_and_a_mismatched_count_dropped() -> None:
    cipher = Cipher(KEY)
    counts: list[int] = []

    def respond(frame: Frame, i: int) -> bytes:
        if frame.data == bytes([Command.SYNC]):
            return answer(frame)
        count, _ = cipher.unwrap(frame.data)
        counts.append(count)
        if i == 2:  # a reply with a stale count: discarded, the command is sent again
            return answer(frame, cipher.wrap(OK, count))
        return answer(frame, cipher.wrap(OK, count + 1))

    async def body(proto: HostProtocol, seen: list[Frame]) -> int:
        await proto.sync()
        proto.start_encryption(KEY)
        for _ in range(3):
            assert (await proto.command(Request(Command.POLL_WITH_ACK))).ok
        return proto.retransmissions

    assert run(with_device(respond, body)) == 1
    assert counts == [0, 1, 1, 2]  # 1 sent twice: byte for byte, the same eCOUNT
