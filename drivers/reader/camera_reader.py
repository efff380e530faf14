"""A code reader on a camera: frames from a :class:`~drivers.reader.base.FrameSource`, decoded
by a :class:`~drivers.reader.base.Decoder` in one dedicated worker thread.

Flow::

    source.next_frame()  ──►  waiting (at most max_busy_frames)  ──►  decode thread (one)
       grab task, on the loop      newest replaces oldest                  │
                                                                           ▼
    next_code()  ◄──  pending codes  ◄──  RepeatFilter (one scan per code in view)

The grab task takes frames as fast as the source gives them (a camera paces itself; the
replay source sleeps between frames). The decode task hands one frame at a time to a
single-thread executor. While that thread is busy, grabbed frames wait in a small buffer of
``max_busy_frames`` (default 1); when it is full the oldest waiting frame is dropped and
counted. So nothing queues without bound, the event loop only ever awaits, and the serial
drivers on the same loop are never starved: a slow decoder costs frames, not latency.
(zxing-cpp releases the GIL while it decodes, and so does pyzbar through ctypes, so the loop
keeps running during a decode; a pure-Python decoder would not.)

Frames are grabbed and decoded from :meth:`CameraReader.open` to :meth:`CameraReader.close`,
whether or not :meth:`CameraReader.next_code` is awaited; the codes nobody took yet are kept,
at most ``MAX_PENDING`` (the oldest dropped with a warning).

The same code in consecutive decoded frames is one scan: it is reported again only after a
decoded frame without it, or once ``hold`` seconds passed since it was last reported
(:class:`RepeatFilter`, shared with the serial scanner). Dropped frames do not count.

Counters for metrics: :attr:`CameraReader.counters`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from drivers.errors import CommandRefused, FrameError, PortError
from drivers.reader.base import Decoder, FrameSource

log = logging.getLogger(__name__)

MAX_PENDING: Final = 16  # codes read but not yet taken by next_code; the oldest go first


class RepeatFilter:
    """One scan per code in view.

    :meth:`feed` takes the texts of one frame (or one scanner line) and returns those that are
    new scans: not in the previous frame, or last reported ``hold`` seconds ago or more.
    """

    def __init__(self, hold: float, clock: Callable[[], float] = time.monotonic) -> None:
        if hold < 0:
            raise ValueError("hold must be >= 0 seconds")
        self.hold = hold
        self._clock = clock
        self._in_view: set[str] = set()
        self._reported: dict[str, float] = {}

    def feed(self, texts: Iterable[str]) -> list[str]:
        now = self._clock()
        self._reported = {t: at for t, at in self._reported.items() if now - at < self.hold}
        in_frame = list(dict.fromkeys(texts))
        new: list[str] = []
        for text in in_frame:
            if text in self._in_view and text in self._reported:
                continue
            self._reported[text] = now
            new.append(text)
        self._in_view = set(in_frame)
        return new


@dataclass(frozen=True, slots=True)
class CameraCounters:
    """Since :meth:`CameraReader.open`. ``frames_seen`` = decoded + failed + dropped + the
    (at most ``max_busy_frames`` + 1) frames waiting or being decoded."""

    frames_seen: int = 0
    frames_decoded: int = 0
    frames_dropped: int = 0
    decode_errors: int = 0
    codes: int = 0


@runtime_checkable
class FullResolutionSource(Protocol):
    """A source that can take one frame at full resolution (:class:`PicameraSource`)."""

    async def capture_full(self) -> Any: ...


class CameraReader:
    """A :class:`~drivers.reader.base.CodeReader` on a frame source.

    :param source: where frames come from (opened and closed by this reader).
    :param decoder: turns a frame into texts; runs in this reader's one worker thread.
    :param hold: seconds after which a code still in view counts as a new scan.
    :param max_busy_frames: frames kept waiting while the decoder is busy (at least 1); when
        full, the oldest is dropped. Raise it only to decode every frame of a short replay.

    :meth:`open` raises what the source's ``open`` raises (``DeviceFault`` for a missing
    camera library, ``PortError`` for a missing camera). :meth:`next_code` raises the source's
    error (``PortError``...) once the source failed and every code read before was taken.
    A decoder exception or a ``FrameError`` from the source skips that frame with a log line
    (once until frames are good again).
    """

    def __init__(
        self,
        source: FrameSource,
        decoder: Decoder,
        *,
        hold: float = 3.0,
        max_busy_frames: int = 1,
        name: str = "camera",
    ) -> None:
        if max_busy_frames < 1:
            raise ValueError("max_busy_frames must be at least 1")
        self.name = name
        self.source = source
        self.decoder = decoder
        self.max_busy_frames = max_busy_frames
        self._filter = RepeatFilter(hold)
        self._waiting: collections.deque[Any] = collections.deque(maxlen=max_busy_frames)
        self._pending: collections.deque[str] = collections.deque(maxlen=MAX_PENDING)
        self._frame_ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        self._failing: str | None = None  # what is failing, for transition logs
        self._seen = self._decoded = self._dropped = self._errors = self._codes = 0

    @property
    def hold(self) -> float:
        return self._filter.hold

    @property
    def counters(self) -> CameraCounters:
        return CameraCounters(
            frames_seen=self._seen,
            frames_decoded=self._decoded,
            frames_dropped=self._dropped,
            decode_errors=self._errors,
            codes=self._codes,
        )

    async def open(self) -> None:
        if self._tasks:
            return
        await self.source.open()
        self._failure, self._failing = None, None
        self._waiting.clear()
        self._pending.clear()
        self._frame_ready, self._changed = asyncio.Event(), asyncio.Event()
        self._seen = self._decoded = self._dropped = self._errors = self._codes = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-decode")
        self._tasks = [
            asyncio.create_task(self._grab_loop(), name=f"{self.name}-grab"),
            asyncio.create_task(self._decode_loop(self._executor), name=f"{self.name}-decode"),
        ]
        log.info("%s: scanning %s with %s", self.name, self.source.name, self.decoder.name)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._executor is not None:
            # A decode in progress finishes in its thread; its result is dropped.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._waiting.clear()
        if tasks:
            self._fail(PortError(f"{self.name}: the reader was closed"))
            await self.source.close()

    async def next_code(self) -> str:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._failure is not None:
                raise self._failure
            if not self._tasks:
                raise PortError(f"{self.name}: the reader is not open")
            self._changed.clear()
            await self._changed.wait()

    async def scan_full_resolution(self) -> list[str]:
        """Take one frame at full resolution and decode it like any other frame: new codes come
        out of :meth:`next_code`. Returns the texts found. Raises ``CommandRefused`` if the
        source cannot (only :class:`~drivers.camera.picam.PicameraSource` can)."""
        if not isinstance(self.source, FullResolutionSource):
            raise CommandRefused(f"{self.name}: {self.source.name} has no full-resolution capture")
        if self._executor is None:
            raise PortError(f"{self.name}: the reader is not open")
        frame = await self.source.capture_full()
        texts: list[str] = await asyncio.get_running_loop().run_in_executor(
            self._executor, self.decoder.decode, frame
        )
        self._seen += 1
        self._decoded += 1
        self._report(texts)
        return texts

    # -- internals -----------------------------------------------------------------------------

    async def _grab_loop(self) -> None:
        while True:
            try:
                frame = await self.source.next_frame()
            except FrameError as exc:
                self._trouble("source", f"skipping a bad frame: {exc}")
                await asyncio.sleep(0)  # a source failing at once must not hog the loop
                continue
            except Exception as exc:
                log.error("%s: %s failed: %s", self.name, self.source.name, exc)
                self._fail(exc)
                return
            if frame is None:
                log.info("%s: %s has no more frames", self.name, self.source.name)
                return
            self._seen += 1
            if len(self._waiting) == self.max_busy_frames:
                self._dropped += 1  # append() below pushes the oldest out
            self._waiting.append(frame)
            self._frame_ready.set()

    async def _decode_loop(self, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._frame_ready.clear()
                await self._frame_ready.wait()
            frame = self._waiting.popleft()
            try:
                texts = await loop.run_in_executor(executor, self.decoder.decode, frame)
            except Exception as exc:
                self._errors += 1
                self._trouble("decoder", f"{self.decoder.name} failed on a frame: {exc!r}")
                continue
            self._decoded += 1
            self._recovered()
            self._report(texts)

    def _report(self, texts: list[str]) -> None:
        for text in self._filter.feed(texts):
            if len(self._pending) == MAX_PENDING:
                log.warning("%s: nobody is reading codes; dropping %r", self.name, self._pending[0])
            self._pending.append(text)
            self._codes += 1
            self._changed.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._changed.set()

    def _trouble(self, what: str, message: str) -> None:
        """Log the first of a run of failures; the rest at debug until a good frame."""
        if self._failing is None:
            self._failing = what
            log.warning("%s: %s", self.name, message)
        else:
            log.debug("%s: %s", self.name, message)

    def _recovered(self) -> None:
        if self._failing is not None:
            log.info("%s: %s recovered, frames decode again", self.name, self._failing)
            self._failing = None
