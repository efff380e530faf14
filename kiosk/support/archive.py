"""The bundle as a file: a new ``.tar.gz`` of mode 0600, never replacing one, never left
half-written."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from kiosk.support.errors import BundleError


def write_tar(out: Path, members: Sequence[tuple[str, bytes]], at: datetime) -> None:
    """``out`` as a new ``.tar.gz`` of mode 0600 (never replacing a file); removed again if
    writing fails."""
    import tarfile

    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BundleError(f"{out} exists: remove it or choose another --out") from None
    except OSError as exc:
        raise BundleError(f"cannot create {out}: {exc.strerror}; choose another --out") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o600, int(at.timestamp())
                tar.addfile(info, io.BytesIO(data))
    except BaseException as exc:  # no half-written bundle is left (^C included)
        with contextlib.suppress(OSError):
            out.unlink()
        if isinstance(exc, OSError):
            raise BundleError(
                f"cannot write {out}: {exc}; check the disk or another --out"
            ) from exc
        raise
