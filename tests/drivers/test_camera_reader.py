"""CameraReader: frames from the replay source, decoded by zxing-cpp in one worker thread."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from typing import Any

import pytest
import segno
from PIL import Image

from drivers.camera.replay import ReplaySource
from drivers.errors import CommandRefused, PortError
from drivers.reader.camera_reader import CameraReader, RepeatFilter
from drivers.reader.decode import decode_image


def qr(text: str, scale: int = 4) -> Image.Image:
    buf = io.BytesIO()
    segno.make_qr(text).save(buf, kind="png", scale=scale)
    buf.seek(0)
    with Image.open(buf) as image:
        return image.convert("L")


BLANK = Image.new("L", (80, 80), 255)


class ZxingDecoder:
    """The real decoder, recording the threads it runs in."""

    name = "zxing"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.threads: set[threading.Thread] = set()
        self.calls = 0

    def decode(self, image: Any) -> list[str]:
        self.threads.add(threading.current_thread())
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return decode_image(image)


async def codes(reader: CameraReader, n: int) -> list[str]:
    return [await asyncio.wait_for(reader.next_code(), 3) for _ in range(n)]


async def nothing_more(reader: CameraReader) -> bool:
    try:
        await asyncio.wait_for(reader.next_code(), 0.2)
    except TimeoutError:
        return True
    return False


def test_a_code_in_consecutive_frames_is_one_scan_and_counts_again_after_a_gap() -> None:
    a, b = qr("code-A"), qr("code-B")
    frames = [a, a, a, BLANK, a, b, b, a]
    decoder = ZxingDecoder()
    # max_busy_frames: keep every frame of this short replay, whatever the machine's speed
    reader = CameraReader(ReplaySource(frames, interval=0), decoder, max_busy_frames=len(frames))

    async def main() -> None:
        await reader.open()
        assert await codes(reader, 4) == ["code-A", "code-A", "code-B", "code-A"]
        assert await nothing_more(reader)
        await reader.close()

    asyncio.run(main())
    counters = reader.counters
    assert (counters.frames_seen, counters.frames_decoded, counters.frames_dropped) == (8, 8, 0)
    assert counters.codes == 4 and counters.decode_errors == 0
    # decoded in exactly one thread, the reader's own, never the event loop's
    (thread,) = decoder.threads
    assert thread is not threading.main_thread()
    assert thread.name.startswith("camera-decode")


def test_a_code_held_in_view_counts_again_after_hold() -> None:
    a = qr("code-A")
    reader = CameraReader(
        ReplaySource([a, a], interval=0), ZxingDecoder(), hold=0.0, max_busy_frames=2
    )

    async def main() -> list[str]:
        await reader.open()
        try:
            return await codes(reader, 2)
        finally:
            await reader.close()

    assert asyncio.run(main()) == ["code-A", "code-A"]


def test_repeat_filter_rules() -> None:
    now = [0.0]
    f = RepeatFilter(hold=3.0, clock=lambda: now[0])
    assert f.feed(["A", "A"]) == ["A"]  # one frame, one scan
    now[0] = 1.0
    assert f.feed(["A", "B"]) == ["B"]  # A still in view
    now[0] = 3.5
    assert f.feed(["A"]) == ["A"]  # held in view longer than hold
    assert f.feed([]) == []
    assert f.feed(["A"]) == ["A"]  # left the view, came back
    with pytest.raises(ValueError, match="hold"):
        RepeatFilter(hold=-1)


async def lateness_while(seconds: float) -> float:
    """The worst lateness of a 10 ms asyncio.sleep, for ``seconds``."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    end = loop.time() + seconds
    while loop.time() < end:
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - start - 0.01)
    return worst


def test_a_slow_decoder_drops_frames_and_the_loop_stays_responsive() -> None:
    decoder = ZxingDecoder(delay=0.05)  # 20 frames/s at best, against a 200 frames/s source
    reader = CameraReader(ReplaySource([BLANK], loop=True, interval=0.005), decoder)

    async def main() -> float:
        await reader.open()
        try:
            return await lateness_while(0.6)
        finally:
            await reader.close()

    worst = asyncio.run(main())
    c = reader.counters
    assert c.frames_dropped > 0
    assert c.frames_decoded <= 0.6 / 0.05 + 2
    # nothing queued: every frame is decoded, dropped, or one of the two in flight/waiting
    assert 0 <= c.frames_seen - c.frames_decoded - c.frames_dropped <= 2
    assert worst < 0.05, f"the event loop was {worst * 1000:.0f} ms late"
    assert threading.main_thread() not in decoder.threads


def test_real_decoding_of_large_frames_does_not_block_the_loop() -> None:
    # a noisy 2400x1800 frame: about 50 ms of zxing-cpp per frame on a desktop, which would
    # make the loop that late if decoding ran on it (zxing-cpp releases the GIL)
    big = Image.effect_noise((2400, 1800), 80)
    big.paste(qr("big-frame", scale=12), (700, 500))
    reader = CameraReader(ReplaySource([big], loop=True, interval=0.01), ZxingDecoder())

    async def main() -> tuple[list[str], float]:
        await reader.open()
        try:
            worst = await lateness_while(0.4)
            return await codes(reader, 1), worst
        finally:
            await reader.close()

    got, worst = asyncio.run(main())
    assert got == ["big-frame"]
    assert reader.counters.frames_decoded >= 2
    assert worst < 0.04, f"the event loop was {worst * 1000:.0f} ms late"


class FlakyDecoder:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def decode(self, image: Any) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("decoder hiccup")
        return decode_image(image)


def test_decoder_errors_skip_the_frame_and_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = qr("code-A")
    reader = CameraReader(
        ReplaySource([a, a, a, a], interval=0), FlakyDecoder(failures=3), max_busy_frames=4
    )

    async def main() -> list[str]:
        await reader.open()
        try:
            return await codes(reader, 1)
        finally:
            await reader.close()

    with caplog.at_level(logging.INFO, logger="drivers.reader.camera_reader"):
        assert asyncio.run(main()) == ["code-A"]
    assert reader.counters.decode_errors == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "decoder hiccup" in warnings[0].getMessage()
    assert "recovered" in caplog.text


class FailingSource:
    """Two frames, then the camera is gone."""

    name = "failing"

    def __init__(self, frame: Image.Image) -> None:
        self.frames = [frame, BLANK]
        self.closed = False

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    async def next_frame(self) -> Image.Image:
        await asyncio.sleep(0.01)
        if not self.frames:
            raise PortError("failing: camera unplugged")
        return self.frames.pop(0)


def test_a_failed_source_fails_next_code_after_the_codes_already_read() -> None:
    source = FailingSource(qr("code-A"))
    reader = CameraReader(source, ZxingDecoder(), max_busy_frames=2)

    async def main() -> None:
        await reader.open()
        assert await codes(reader, 1) == ["code-A"]
        with pytest.raises(PortError, match="unplugged"):
            await asyncio.wait_for(reader.next_code(), 2)
        await reader.close()

    asyncio.run(main())
    assert source.closed


def test_next_code_on_a_closed_reader_raises() -> None:
    reader = CameraReader(ReplaySource([BLANK], interval=0), ZxingDecoder())

    async def main() -> None:
        with pytest.raises(PortError, match="not open"):
            await reader.next_code()
        await reader.open()
        waiter = asyncio.create_task(reader.next_code())
        await asyncio.sleep(0.05)
        await reader.close()
        with pytest.raises(PortError, match="closed"):
            await asyncio.wait_for(waiter, 1)

    asyncio.run(main())


class FullResSource(ReplaySource):
    """A replay source that also has a full-resolution capture, like PicameraSource."""

    async def capture_full(self) -> Image.Image:
        return qr("fine-print", scale=8)


def test_scan_full_resolution() -> None:
    async def main() -> None:
        plain = CameraReader(ReplaySource([BLANK], interval=0), ZxingDecoder())
        await plain.open()
        with pytest.raises(CommandRefused, match="no full-resolution"):
            await plain.scan_full_resolution()
        await plain.close()

        reader = CameraReader(FullResSource([BLANK], interval=0), ZxingDecoder())
        await reader.open()
        assert await reader.scan_full_resolution() == ["fine-print"]
        assert await codes(reader, 1) == ["fine-print"]
        await reader.close()

    asyncio.run(main())


def test_max_busy_frames_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_busy_frames"):
        CameraReader(ReplaySource([BLANK]), ZxingDecoder(), max_busy_frames=0)
