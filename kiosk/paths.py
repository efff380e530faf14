"""Directories a command is told to write in (``--out``, ``--dir``, ``--link``'s folder)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kiosk.errors import UsageError


def writable_dir(name: str, path: Path, what: str) -> Path:
    """``path`` made if missing and proved writable, or :class:`UsageError` (exit 2) naming
    it as ``name`` (``--out``, "sandbox state directory") and saying what it is for."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except (FileExistsError, NotADirectoryError) as exc:
        raise UsageError(
            f"{name} {path}: a file is in the way, not a directory: name a directory for {what}"
            " (it is created if missing)"
        ) from exc
    except OSError as exc:
        raise UsageError(
            f"{name} {path}: cannot write there ({exc.strerror or exc}): name a directory you"
            f" may write, for {what}"
        ) from exc
    return path
