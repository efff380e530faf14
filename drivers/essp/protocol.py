"""The host side of the SSP transport (ITL GA138 "Transport Layer"): one command in flight,
the sequence flag, retransmission, and the eSSP packet counter.

- The sequence flag (bit 7 of SEQ/ADDR) toggles for every new command; SYNC (0x11) is always
  sent with the flag set and makes the next command go with it clear.
- A command that gets no valid reply within ``reply_timeout`` seconds (GA138: 1 s) is sent
  again, byte for byte: the same flag (so the slave answers with its last reply instead of
  executing it twice) and the same eCOUNT. After ``tries`` sends (GA138: 20) the device is
  declared gone: :class:`~drivers.errors.DeviceFault` ``disconnected``.
- Replies from another address, with the other sequence flag (a late duplicate), with a bad
  CRC or whose eSSP counter does not match are ignored while waiting.
- Once :meth:`HostProtocol.start_encryption` has been called, every command except SYNC is
  wrapped in the encryption layer; replies are unwrapped when they carry STEX.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from drivers.errors import DeviceFault, FrameError
from drivers.essp.codes import Command
from drivers.essp.crypto import Cipher
from drivers.essp.frames import STEX, Frame, FrameParser, Reply, Request
from drivers.serialport import Link

log = logging.getLogger("drivers.essp.protocol")

REPLY_TIMEOUT: Final = 1.0  # seconds (GA138)
TRIES: Final = 20  # sends of one command before the slave is considered dead (GA138)


def _name(code: int) -> str:
    try:
        return Command(code).name
    except ValueError:
        return f"{code:#04x}"


class HostProtocol:
    """One SSP slave on one link.

    :param link: an open port (:func:`drivers.serialport.open_link`).
    :param address: the slave address, 0..0x7D (0 for validators and SMART Payout).
    :param reply_timeout: seconds to wait for a reply before sending the command again.
    :param tries: how many times one command is sent before ``DeviceFault("disconnected")``.
    """

    def __init__(
        self,
        link: Link,
        *,
        address: int = 0,
        reply_timeout: float = REPLY_TIMEOUT,
        tries: int = TRIES,
    ) -> None:
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.link, self.address = link, address
        self.reply_timeout, self.tries = reply_timeout, tries
        self._seq = True
        self._parser = FrameParser()
        self._lock = asyncio.Lock()
        self._cipher: Cipher | None = None
        self._count = 0  # eCOUNT of the next encrypted command
        self.retransmissions = 0

    @property
    def encrypted(self) -> bool:
        return self._cipher is not None

    def start_encryption(self, key: bytes) -> None:
        """Use ``key`` from the next command on; the counter starts again at 0."""
        self._cipher, self._count = Cipher(key), 0

    def stop_encryption(self) -> None:
        self._cipher, self._count = None, 0

    async def sync(self) -> Reply:
        """SYNC: resets the sequence flag on both sides (always sent in the clear)."""
        async with self._lock:
            self._seq = True
            return await self._exchange(Request(Command.SYNC), encrypt=False)

    async def command(self, request: Request, *, encrypt: bool | None = None) -> Reply:
        """Send one command and return its reply (unwrapped). ``encrypt`` defaults to
        whether keys have been negotiated."""
        if request.code == Command.SYNC:
            return await self.sync()
        async with self._lock:
            return await self._exchange(
                request, encrypt=self.encrypted if encrypt is None else encrypt
            )

    async def _exchange(self, request: Request, *, encrypt: bool) -> Reply:
        data = request.serialize()
        expect: int | None = None
        if encrypt:
            if self._cipher is None:
                raise FrameError(f"{_name(request.code)}: encryption keys not negotiated")
            count, self._count = self._count, self._count + 1
            data, expect = self._cipher.wrap(data, count), count + 1
        seq = self._seq
        raw = Frame(self.address, data, seq).serialize()
        await self._discard_input()
        loop = asyncio.get_running_loop()
        for attempt in range(self.tries):
            if attempt:
                self.retransmissions += 1
                log.debug("%s: %s: no reply, sent again", self.link.url, _name(request.code))
            await self.link.write(raw)
            deadline = loop.time() + self.reply_timeout
            while (left := deadline - loop.time()) > 0:
                chunk = await self.link.read_some(left)
                if not chunk:
                    break
                for frame in self._parser.feed(chunk):
                    reply = self._accept(frame, seq, expect)
                    if reply is not None:
                        self._seq = not seq
                        return reply
        raise DeviceFault(
            "disconnected",
            f"{self.link.url}: no reply to {_name(request.code)} after {self.tries} tries",
        )

    def _accept(self, frame: Frame, seq: bool, expect: int | None) -> Reply | None:
        if frame.address != self.address or frame.seq != seq:
            return None  # another slave, or a late duplicate of an earlier reply
        data = frame.data
        if data[0] == STEX:
            if self._cipher is None:
                log.debug("%s: encrypted reply without keys: ignored", self.link.url)
                return None
            try:
                count, data = self._cipher.unwrap(data)
            except FrameError as exc:
                log.debug("%s: reply dropped: %s", self.link.url, exc)
                return None
            want = self._count if expect is None else expect
            if count != want:
                log.debug("%s: eCOUNT %d != %d: reply dropped", self.link.url, count, want)
                return None
            if expect is None:  # a plain command answered encrypted (credit data)
                self._count += 1
        reply, _ = Reply.deserialize(data)
        return reply

    async def _discard_input(self) -> None:
        """Forget stale bytes (late duplicates of earlier replies) before a new command."""
        self._parser.clear()
        while await self.link.read_some(0):
            pass
