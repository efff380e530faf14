"""QR decoders (zxing-cpp, pyzbar, ours) and their pre-processing, on generated frames."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator

import pytest
import segno
from PIL import Image, ImageChops, ImageFilter

from drivers.errors import DecoderUnavailable
from drivers.reader import decoders, preprocess
from drivers.reader.decoders import (
    KioskDecoder,
    PyzbarDecoder,
    ZxingDecoder,
    available_decoders,
    make_decoder,
)

TOKEN_URL = (
    "https://checkout.payby.com/pay-page/main?BIZ_TYPE=202"
    "&ft=9f8e7d6c5b4a39281706f5e4d3c2b1a0&t=1700000000000"
)
RESERVATION = "0155567464130298871198969060"
CASH_IN = "EVP000000014471"
OTP = "876680"
PAYLOADS = (TOKEN_URL, RESERVATION, CASH_IN, OTP)

UNTIMED = 10_000.0  # ms: which passes read a frame, not how fast (that is kiosk bench qr)


def frame(
    text: str | None,
    *,
    module: int = 4,
    dark: int = 0,
    light: int = 255,
    blur: float = 0.0,
    noise: int = 0,
    at: tuple[int, int] = (200, 120),
) -> Image.Image:
    """A 640x480 grey frame: ``text`` as a QR code (dark modules on light) on a plain ground."""
    out = Image.new("L", (640, 480), light)
    if text is not None:
        rows = list(segno.make_qr(text).matrix_iter(scale=1, border=3))
        n = len(rows)
        code = Image.frombytes("L", (n, n), bytes(dark if b else light for r in rows for b in r))
        out.paste(code.resize((n * module, n * module), Image.Resampling.NEAREST), at)
    if blur:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    if noise:
        rng = random.Random(7)
        grain = Image.frombytes("L", out.size, rng.randbytes(640 * 480))
        out = ImageChops.add(
            out, grain.point(lambda v: 128 + (v - 128) * noise // 128), offset=-128
        )
    return out


@pytest.fixture
def no_libzbar(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a machine without libzbar: loading pyzbar fails with the OSError ctypes raises."""

    def load() -> None:
        raise OSError("libzbar.so.0: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(decoders, "_load_pyzbar", load)
    yield


def pyzbar_or_skip() -> PyzbarDecoder:
    try:
        return PyzbarDecoder()
    except DecoderUnavailable as exc:
        pytest.skip(str(exc))


# -- every decoder on clean codes --------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("name", ["zxing", "kiosk", "auto"])
def test_clean_codes_of_each_kind(name: str, payload: str) -> None:
    decoder = make_decoder(name)
    assert decoder.decode(frame(payload)) == [payload]
    assert decoder.decode(frame(payload).convert("RGB")) == [payload]  # any mode


@pytest.mark.parametrize("payload", PAYLOADS)
def test_clean_codes_with_pyzbar(payload: str) -> None:
    assert pyzbar_or_skip().decode(frame(payload)) == [payload]


@pytest.mark.parametrize("name", ["zxing", "pyzbar", "kiosk"])
def test_empty_frames_read_nothing(name: str) -> None:
    decoder = pyzbar_or_skip() if name == "pyzbar" else make_decoder(name)
    assert decoder.decode(frame(None)) == []
    assert decoder.decode(frame(None, noise=40)) == []


def test_a_wall_stops_at_the_gate() -> None:
    """Nothing code-like: given up before any decoding (``explain`` names no pass)."""
    wall = Image.linear_gradient("L").resize((640, 480)).filter(ImageFilter.GaussianBlur(3))
    assert KioskDecoder(budget_ms=UNTIMED).explain(wall) == ([], "")
    assert not preprocess.activity(wall.reduce(4)).any_busy(0.6)


def test_a_code_filling_the_frame_passes_the_gate() -> None:
    """A phone held close: the code raises the activity floor it is measured against."""
    big = frame(TOKEN_URL, module=11, at=(70, 0))
    assert ZxingDecoder().decode(big) == [TOKEN_URL]
    assert KioskDecoder(budget_ms=UNTIMED).decode(big) == [TOKEN_URL]


# -- hard cases: ours against raw zxing-cpp -----------------------------------------------------


@pytest.mark.parametrize(
    ("dark", "light", "noise"),
    [(120, 136, 0), (100, 114, 3), (100, 120, 0)],
    ids=["16-levels", "14-levels-noisy", "20-levels"],
)
def test_low_contrast_ours_reads_where_zxing_does_not(dark: int, light: int, noise: int) -> None:
    dim = frame(RESERVATION, dark=dark, light=light, blur=0.8, noise=noise)
    assert ZxingDecoder().decode(dim) == []  # under zxing-cpp's minimum local contrast
    assert KioskDecoder(budget_ms=UNTIMED).decode(dim) == [RESERVATION]


def test_inverted_low_contrast_ours_reads_where_zxing_does_not() -> None:
    dark_mode = frame(CASH_IN, dark=140, light=120, blur=0.8)  # light modules on dark
    assert ZxingDecoder().decode(dark_mode) == []
    assert KioskDecoder(budget_ms=UNTIMED).decode(dark_mode) == [CASH_IN]


def test_inverted_codes() -> None:
    """Dark mode: zxing-cpp inverts by itself, ours too (in a probe), zbar does not."""
    dark_mode = frame(OTP, dark=230, light=30, blur=0.6)
    assert ZxingDecoder().decode(dark_mode) == [OTP]
    texts, won = KioskDecoder(budget_ms=UNTIMED).explain(dark_mode)
    assert (texts, won) == ([OTP], "crop")
    assert pyzbar_or_skip().decode(dark_mode) == []


def test_kiosk_counts_which_pass_read() -> None:
    kiosk = KioskDecoder(budget_ms=UNTIMED)
    kiosk.decode(frame(OTP))
    kiosk.decode(frame(RESERVATION, dark=120, light=136, blur=0.8))
    kiosk.decode(frame(None))
    assert kiosk.wins["scan"] == 1
    assert sum(kiosk.wins.values()) == 2


def test_the_budget_stops_the_passes() -> None:
    dim = frame(RESERVATION, dark=120, light=136, blur=0.8)
    assert KioskDecoder(budget_ms=0).decode(dim) == []  # only the first scan ran
    assert KioskDecoder(budget_ms=0).decode(frame(OTP)) == [OTP]


# -- choosing, and pyzbar without libzbar -------------------------------------------------------


def test_make_decoder_names() -> None:
    assert make_decoder("zxing").name == "zxing"
    assert make_decoder("kiosk").name == "kiosk"
    assert make_decoder("auto").name == "kiosk"
    assert isinstance(make_decoder("kiosk", budget_ms=30), KioskDecoder)
    with pytest.raises(ValueError, match="unknown QR decoder 'zbar'"):
        make_decoder("zbar")


def test_without_libzbar_pyzbar_is_unavailable(no_libzbar: None) -> None:
    with pytest.raises(DecoderUnavailable, match="apt install libzbar0") as caught:
        make_decoder("pyzbar")
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value.__cause__, OSError)
    found = available_decoders()
    assert found["zxing"] is None and found["kiosk"] is None and found["auto"] is None
    assert "apt install libzbar0" in str(found["pyzbar"])
    assert make_decoder("auto").decode(frame(CASH_IN)) == [CASH_IN]


def test_pyzbar_failing_to_load_its_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyzbar loads libzbar when imported: a failing loader surfaces at construction."""
    package = pytest.importorskip("pyzbar")
    from pyzbar import zbar_library

    def load() -> None:
        raise OSError("libzbar.so.0: cannot open shared object file")

    monkeypatch.setattr(zbar_library, "load", load)
    for module in ("pyzbar", "wrapper"):  # imported afresh, as on a machine without libzbar
        monkeypatch.delitem(sys.modules, f"pyzbar.{module}", raising=False)
        monkeypatch.delattr(package, module, raising=False)
    with pytest.raises(DecoderUnavailable, match="libzbar"):
        PyzbarDecoder()


def test_importing_the_decoders_loads_no_library() -> None:
    code = (
        "import sys, drivers.reader.decoders, drivers.reader.preprocess\n"
        "print(sorted(m for m in ('zxingcpp', 'pyzbar', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- pre-processing -----------------------------------------------------------------------------


def test_stretch_spans_the_levels() -> None:
    dim = Image.linear_gradient("L").point(lambda v: 100 + v // 16)  # 100..115
    assert preprocess.stretch(dim, cutoff=0).getextrema() == (0, 255)
    flat = Image.new("L", (10, 10), 90)
    assert preprocess.stretch(flat) is flat


def test_local_contrast_centres_on_128() -> None:
    flat = Image.new("L", (50, 50), 30)
    assert preprocess.local_contrast(flat).getextrema() == (128, 128)
    dim = frame(OTP, dark=120, light=136)
    low, high = preprocess.local_contrast(dim, 4, 3.0).getextrema()
    assert low < 100 and high > 156


def test_activity_finds_the_code() -> None:
    img = frame(RESERVATION, dark=110, light=140, at=(320, 240))
    regions = preprocess.activity(img.reduce(4)).regions(0.2)
    assert regions
    x0, y0, x1, y1 = preprocess.expand(regions[0].box, img.size)
    assert x0 <= 330 and y0 <= 250 and x1 >= 400 and y1 >= 320


def test_expand_stays_in_the_frame() -> None:
    assert preprocess.expand((0, 0, 16, 16), (640, 480)) == (0, 0, 41, 41)
    assert preprocess.expand((600, 440, 640, 480), (640, 480))[2:] == (640, 480)
    assert preprocess.expand((100, 100, 300, 200), (640, 480)) == (50, 75, 351, 226)
