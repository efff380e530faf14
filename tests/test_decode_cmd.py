"""``kiosk decode FILE...``: one JSON line per file, kinds from the router, errors reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import segno
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.cli import main


def _qr(path: Path, text: str) -> Path:
    segno.make_qr(text, error="m").save(str(path), kind="png", scale=6, border=4)
    return path


def test_decode_prints_one_json_line_per_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "none.toml"  # no kiosk config here: the default allow-list applies
    files = [
        _qr(tmp_path / "evp.png", "EVP000000014471"),
        _qr(
            tmp_path / "payby.png",
            "https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft=ab&t=1",
        ),
        _qr(tmp_path / "other.png", "hello"),
    ]
    assert not cfg.exists()
    assert main(["decode", *map(str, files)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == [str(f) for f in files]
    kinds = [line["codes"][0]["kind"] for line in lines]
    assert kinds == ["paysera_cashin", "payby_tokenurl", "unknown"]
    assert all(line["ms"] >= 0 for line in lines)


def test_an_unreadable_file_is_an_error_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good = _qr(tmp_path / "good.png", "EVP000000014471")
    assert main(["decode", str(bad), str(good), str(tmp_path / "missing.png")]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "error" in lines[0] and lines[1]["codes"] and "error" in lines[2]


# -- hostile files (issue 16): refused one by one, the batch goes on ------------------------------


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that only claims its size (an IHDR, no pixel data): what a decompression bomb
    looks like until it is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    idat = zlib.compress(b"\x00" * 64)
    sig = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(sig + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return [json.loads(line) for line in out.out.splitlines()]


@pytest.mark.parametrize("size", [(1, 1), (7, 7), (7, 300), (300, 7), (4000, 1)])
def test_an_image_with_a_side_under_8_px_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: tuple[int, int]
) -> None:
    """Before: the kiosk decoder's reductions were empty, a ValueError ended the batch."""
    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.new("L", size, 255).save(tiny)
    good = _qr(tmp_path / "good.png", "EVP000000014471")
    assert main(["decode", str(tiny), str(good)]) == 1
    lines = _lines(capsys)
    assert lines[0] == {
        "file": str(tiny),
        "error": f"too small: {size[0]}x{size[1]} pixels, a side under 8: no QR code fits",
    }
    assert lines[1]["codes"]


@pytest.mark.parametrize(
    "size",
    [
        (14000, 14000),  # past Pillow's own bound: DecompressionBombError
        (10000, 10000),  # between its two bounds: a DecompressionBombWarning (an error here)
        (5000, 5000),  # under Pillow's bounds, over a camera frame's
        (4097, 4096),
        (3_000_000, 8),  # a strip: pixels count, not sides
    ],
)
def test_an_image_larger_than_a_camera_frame_is_refused_before_it_is_decoded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: tuple[int, int]
) -> None:
    bomb = _png_header(tmp_path / "bomb.png", *size)
    good = _qr(tmp_path / "good.png", "EVP000000014471")
    assert main(["decode", str(bomb), str(good)]) == 1
    lines = _lines(capsys)
    assert lines[0]["file"] == str(bomb)
    assert str(lines[0]["error"]).startswith("too large: ")
    assert "16,777,216 pixels" in str(lines[0]["error"])
    assert lines[1]["codes"]


def test_a_camera_frame_sized_image_is_decoded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from kiosk.decodecmd import MAX_PIXELS

    frame = tmp_path / "frame.png"
    Image.new("L", (4096, MAX_PIXELS // 4096), 255).save(frame)
    assert main(["decode", str(frame)]) == 0
    assert _lines(capsys)[0]["codes"] == []


def test_truncated_non_image_and_foreign_format_files_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _qr(tmp_path / "good.png", "EVP000000014471")
    data = good.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    header_only = tmp_path / "header.png"
    header_only.write_bytes(data[:40])
    text = tmp_path / "notes.png"
    text.write_text("EVP000000014471\n")
    eps = tmp_path / "code.eps"  # Pillow would hand this to Ghostscript
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    files = [cut, good, header_only, text, eps, empty, tmp_path, tmp_path / "missing.png", good]
    assert main(["decode", *map(str, files)]) == 1
    lines = _lines(capsys)
    assert [line["file"] for line in lines] == [str(f) for f in files]
    assert [("codes" in line) for line in lines] == [False, True, *[False] * 6, True]
    errors = {Path(str(line["file"])).name: str(line["error"]) for line in lines if "error" in line}
    assert errors["cut.png"].startswith("not a readable image: ")
    assert errors["notes.png"] == "not a readable image: not one of PNG, JPEG, WEBP, BMP, GIF"
    assert errors["code.eps"] == errors["notes.png"] == errors["empty.jpg"]
    assert errors["missing.png"] == "no such file"


def _encoded(fmt: str) -> bytes:
    """A 64x48 image of noise in ``fmt``, the same on every call (hypothesis replays it)."""
    import io
    import random

    from PIL import Image

    rng = random.Random(fmt)
    image = Image.frombytes("L", (64, 48), bytes(rng.randrange(256) for _ in range(64 * 48)))
    buf = io.BytesIO()
    image.convert("P" if fmt == "GIF" else "L").save(buf, fmt)
    return buf.getvalue()


ENCODED = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP")}


@given(st.sampled_from(sorted(ENCODED)), st.binary(max_size=8), st.data())
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_damaged_image_is_one_line_and_never_a_traceback(
    tmp_path: Path, fmt: str, junk: bytes, data: st.DataObject
) -> None:
    """An image of each format with bytes overwritten and its end cut off at random: a line
    with codes or with an error, nothing raised, no warning (pytest makes warnings errors)."""
    from kiosk.decodecmd import decode_files

    raw = bytearray(ENCODED[fmt])
    at = data.draw(st.integers(0, len(raw)))
    raw[at : at + len(junk)] = junk
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(raw))
    out: list[str] = []
    status = decode_files([path, path], out=out.append)
    lines = [json.loads(line) for line in out]
    assert len(lines) == 2 and all(line["file"] == str(path) for line in lines)
    first, again = ({k: v for k, v in line.items() if k != "ms"} for line in lines)
    assert first == again and (set(first) == {"file", "error"} or set(first) == {"file", "codes"})
    assert status == (1 if "error" in first else 0)
