"""ID-003 byte stream → frames, and the host's request/answer exchange over a :class:`Link`.

:class:`FrameParser` buffers bytes and resynchronises on SYNC 0xFC. A 0xFC may also be a
DATA or CRC byte (there is no stuffing), so a SYNC is trusted only when LNG is plausible and the
CRC matches; otherwise the parser slides one byte and looks for the next 0xFC. An incomplete
frame is waited for: its DATA may hold bytes that look like a whole frame. A corrupted LNG can
therefore hold the parser until :meth:`FrameParser.clear`: the host clears it before each
request, the simulator after a silent gap (as a device's inter-byte timeout does).

:class:`Id003Protocol` is the host side: ID-003 is master/slave with no sequence numbers, so a
request drains stale input first and takes the first frame that can answer it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from drivers.id003.frames import MIN_LENGTH, SYNC, Frame, crc16_kermit
from drivers.serialport import Link

log = logging.getLogger(__name__)


class FrameParser:
    """Feed bytes, get whole frames. ``discarded`` counts bytes dropped while resynchronising,
    ``crc_errors`` complete candidates whose CRC did not match."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0
        self.crc_errors = 0

    def clear(self) -> None:
        self.discarded += len(self._buf)
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            start = self._buf.find(SYNC)
            if start < 0:
                self._drop(len(self._buf))
                return frames
            self._drop(start)
            verdict = self._check(0)
            if verdict is True:
                frame, rest = Frame.deserialize(bytes(self._buf))
                self._buf = bytearray(rest)
                frames.append(frame)
            elif verdict is False:
                self._drop(1)  # not a frame start after all: slide one byte
            else:
                return frames  # incomplete: wait for the rest

    def _check(self, at: int) -> bool | None:
        """Is there a valid frame at ``at``: True, False, or None (not enough bytes yet)."""
        buf = self._buf
        if len(buf) - at < 2:
            return None
        length = buf[at + 1]
        if length < MIN_LENGTH:
            return False
        if len(buf) - at < length:
            return None
        body = buf[at : at + length - 2]
        if crc16_kermit(body) == int.from_bytes(buf[at + length - 2 : at + length], "little"):
            return True
        self.crc_errors += 1
        return False

    def _drop(self, n: int) -> None:
        if n:
            self.discarded += n
            del self._buf[:n]


class Id003Protocol:
    """The host end of one link: send a frame, wait for the frame that answers it."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.parser = FrameParser()

    async def send(self, frame: Frame) -> None:
        """A frame the acceptor does not answer (the host's ACK of VEND VALID)."""
        await self._drain()
        await self.link.write(frame.serialize())

    async def request(
        self,
        frame: Frame,
        timeout: float,
        accept: Callable[[Frame], bool] | None = None,
    ) -> Frame | None:
        """Send ``frame`` and return the first frame ``accept`` takes (any frame by default),
        or ``None`` if none arrived within ``timeout`` seconds. Frames ``accept`` refuses are
        late answers to an earlier request and are dropped."""
        await self._drain()
        await self.link.write(frame.serialize())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            data = await self.link.read_some(remaining)
            if not data:
                return None
            for answer in self.parser.feed(data):
                if accept is None or accept(answer):
                    return answer
                log.debug("%s: dropped a late answer %r", self.link.url, answer)

    async def _drain(self) -> None:
        """Forget bytes that arrived since the last exchange (late answers, line noise)."""
        while await self.link.read_some(0):
            pass
        self.parser.clear()
