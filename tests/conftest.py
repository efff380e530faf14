"""Shared fixtures: a journal in a temp dir, a valid config on disk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.journal import Journal

KEY = bytes(range(32))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "journal.db", kiosk_id="KT1", code_key=KEY)
    yield j
    j.close()


def write_secrets(path: Path, text: str, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    secrets = write_secrets(tmp_path / "secrets.toml", f'journal_key = "{KEY.hex()}"\n')
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f"""
[kiosk]
id = "KT1"
currency = "AED"
state_dir = "{tmp_path / "state"}"
secrets_file = "{secrets}"
""")
    return cfg
