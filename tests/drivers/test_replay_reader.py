"""QR decoding and the replay reader (image files as camera frames)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import segno
from PIL import Image

from drivers.errors import FrameError
from drivers.reader.decode import decode_file, decode_image
from drivers.reader.replay import ReplayReader


def qr(path: Path, text: str) -> Path:
    segno.make_qr(text).save(str(path), scale=6)
    return path


def blank(path: Path) -> Path:
    Image.new("RGB", (80, 80), "white").save(path)
    return path


async def codes(reader: ReplayReader, n: int) -> list[str]:
    return [await asyncio.wait_for(reader.next_code(), 2) for _ in range(n)]


async def nothing_more(reader: ReplayReader) -> bool:
    try:
        await asyncio.wait_for(reader.next_code(), 0.2)
    except TimeoutError:
        return True
    return False


def test_decode_image_and_file(tmp_path: Path) -> None:
    path = qr(tmp_path / "a.png", "EVP0123456789")
    assert decode_file(path) == ["EVP0123456789"]
    with Image.open(path) as image:
        assert decode_image(image.convert("RGB")) == ["EVP0123456789"]
    jpg = tmp_path / "a.jpg"
    with Image.open(path) as image:
        image.convert("RGB").save(jpg, quality=90)
    assert decode_file(jpg) == ["EVP0123456789"]
    assert decode_file(blank(tmp_path / "blank.png")) == []


def test_decode_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="no such image"):
        decode_file(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(FrameError, match="not a readable image"):
        decode_file(bad)


def test_consecutive_frames_are_one_scan(tmp_path: Path) -> None:
    a, b = qr(tmp_path / "a.png", "code-A"), qr(tmp_path / "b.png", "code-B")
    empty = blank(tmp_path / "empty.png")
    reader = ReplayReader(files=[a, a, a, empty, a, b, b, a])

    async def main() -> None:
        await reader.open()
        assert await codes(reader, 4) == ["code-A", "code-A", "code-B", "code-A"]
        assert await nothing_more(reader)
        await reader.close()

    asyncio.run(main())


def test_a_code_held_in_view_repeats_after_hold(tmp_path: Path) -> None:
    a = qr(tmp_path / "a.png", "code-A")
    reader = ReplayReader(files=[a, a], hold=0.0)
    assert asyncio.run(codes(reader, 2)) == ["code-A", "code-A"]


def test_bad_frames_are_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    missing = tmp_path / "gone.jpg"
    a = qr(tmp_path / "a.png", "code-A")
    reader = ReplayReader(files=[bad, missing, a])
    with caplog.at_level(logging.WARNING, logger="drivers.reader.replay"):
        assert asyncio.run(codes(reader, 1)) == ["code-A"]
    assert "bad.png" in caplog.text and "gone.jpg" in caplog.text


def test_watches_a_directory_for_new_frames(tmp_path: Path) -> None:
    camera = tmp_path / "camera"
    camera.mkdir()
    qr(camera / "old.png", "stale")  # there before open: not replayed
    src = tmp_path / "src"
    src.mkdir()
    reader = ReplayReader(camera, poll_interval=0.01)

    async def main() -> None:
        await reader.open()
        assert await nothing_more(reader)
        qr(camera / ".hidden.png", "hidden")  # a writer's temp file
        (camera / "notes.txt").write_text("not a frame")
        qr(src / "f.png", "fresh").rename(camera / "f1.png")
        assert await codes(reader, 1) == ["fresh"]
        blank(camera / "f2.png")
        qr(src / "g.png", "fresh").rename(camera / "f3.png")
        assert await codes(reader, 1) == ["fresh"]
        assert await nothing_more(reader)

    asyncio.run(main())


def test_include_existing(tmp_path: Path) -> None:
    qr(tmp_path / "old.png", "kept")
    reader = ReplayReader(tmp_path, include_existing=True, poll_interval=0.01)

    async def main() -> list[str]:
        await reader.open()
        return await codes(reader, 1)

    assert asyncio.run(main()) == ["kept"]


def test_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either"):
        ReplayReader()
    with pytest.raises(ValueError, match="either"):
        ReplayReader(tmp_path, files=[tmp_path / "a.png"])
