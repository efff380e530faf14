"""``kiosk decode FILE...``: one JSON line per file, kinds from the router, errors reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import segno

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
