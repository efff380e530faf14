"""``kiosk bench qr``: the seeded corpus and the runner (on a tiny corpus)."""

from __future__ import annotations

import re

import pytest

from drivers.reader import decoders
from kiosk import qrbench
from kiosk.qrbench import HARD, SLICES, corpus, digest, perspective_coeffs

KINDS = (
    re.compile(
        r"https://checkout\.payby\.com/pay-page/main\?BIZ_TYPE=202&ft=[0-9a-f]{32}&t=\d{13}"
    ),
    re.compile(r"\d{28}"),
    re.compile(r"EVP\d{12}"),
    re.compile(r"\d{6}"),
)


def test_the_corpus_is_deterministic_for_a_seed() -> None:
    first = [digest(f) for f in corpus(12, seed=5)]
    assert [digest(f) for f in corpus(12, seed=5)] == first
    assert len(set(first)) == 12
    assert [digest(f) for f in corpus(12, seed=6)] != first


def test_the_labels_are_consistent() -> None:
    frames = list(corpus(len(SLICES), seed=3))
    assert [f.slice for f in frames] == list(SLICES)  # the slices take turns
    assert [f.index for f in frames] == list(range(len(SLICES)))
    for f in frames:
        assert f.image.mode == "L" and f.image.size == (640, 480)
        if f.slice == "empty":
            assert f.payload is None and f.box is None
            continue
        assert f.payload is not None and f.box is not None
        assert any(kind.fullmatch(f.payload) for kind in KINDS), f.payload
        x0, y0, x1, y1 = f.box
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480  # the whole code is in the frame
    assert set(HARD) == set(SLICES) - {"easy", "empty"}


def test_perspective_coefficients_map_the_corners() -> None:
    src = [(0.0, 0.0), (100.0, 0.0), (100.0, 200.0), (0.0, 200.0)]
    dst = [(10.0, 20.0), (90.0, 35.0), (120.0, 210.0), (5.0, 180.0)]
    a, b, c, d, e, f, g, h = perspective_coeffs(dst, src)
    for (x, y), (u, v) in zip(dst, src, strict=True):
        w = g * x + h * y + 1
        assert (a * x + b * y + c) / w == pytest.approx(u, abs=1e-6)
        assert (d * x + e * y + f) / w == pytest.approx(v, abs=1e-6)


def test_the_bench_prints_every_backend() -> None:
    lines: list[str] = []
    assert qrbench.run_qr_bench(frames=len(SLICES), seed=2, out=lines.append) == 0
    text = "\n".join(lines)
    header = next(line for line in lines if line.startswith("slice"))
    for backend in ("zxing", "kiosk"):
        assert backend in header
    if decoders.available_decoders()["pyzbar"] is None:
        assert "pyzbar" in header
    for s in SLICES:
        assert re.search(rf"^{s}\s+1 \|", text, re.M), s
    assert re.search(r"^hard corpus\s+8 \|", text, re.M)
    assert "checks" in text and "hard corpus: kiosk" in text


def test_the_bench_without_libzbar(monkeypatch: pytest.MonkeyPatch) -> None:
    def load() -> None:
        raise OSError("libzbar.so.0: cannot open shared object file")

    monkeypatch.setattr(decoders, "_load_pyzbar", load)
    lines: list[str] = []
    assert qrbench.run_qr_bench(frames=len(SLICES), seed=2, out=lines.append) == 0
    text = "\n".join(lines)
    assert "pyzbar: unavailable" in text and "apt install libzbar0" in text
    assert "[skip] every slice: kiosk ≥ pyzbar" in text


def test_a_misread_is_a_failure() -> None:
    frame = next(corpus(1, seed=1))
    tally = qrbench.Tally()
    tally.add(frame, ["something else"], 0.001)
    tally.add(frame, [], 0.001)
    assert frame.payload is not None
    tally.add(frame, [frame.payload], 0.001)
    assert tally.read[frame.slice] == 1 and tally.wrong[frame.slice] == 1
