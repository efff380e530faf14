"""A simulated receipt printer: writes each receipt as text and as a picture of the paper.

``print(doc)`` writes ``<out_dir>/<doc.name>.txt`` and ``<out_dir>/<doc.name>.png`` (see
:mod:`drivers.printer.render` for the layout); both appear atomically (temp file + hard link),
the picture first, so a watcher never sees half a receipt. A file is never replaced: when
``<doc.name>`` is taken in the folder (a reprint, an earlier run), the receipt is written as
``<doc.name>-2``, ``-3``, ...; ``printed`` lists the names used. Rendering runs in a worker
thread.

The status is scripted by a test or the control channel: :meth:`SimPrinter.set_paper`,
:meth:`SimPrinter.set_cover_open`, :meth:`SimPrinter.set_online`, :meth:`SimPrinter.set_error`.
When the printer is not ready, ``print`` raises ``DeviceFault`` with kind ``offline``,
``cover_open``, ``paper_out`` or ``error`` (checked in that order) and writes nothing.
``near_end`` paper still prints.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from drivers.errors import DeviceFault
from drivers.printer.base import Document, PaperState, PrinterStatus, dots_for_columns

log = logging.getLogger(__name__)

_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def write_new(files: Sequence[tuple[Path, bytes]]) -> bool:
    """Write each ``(path, data)`` atomically, in order, never over an existing file: all of
    them, or (one of the paths being taken) none and False. Each is written to a temporary
    file that is hard-linked to its name, which fails rather than replaces; where the file
    system has no hard links, the name is checked just before the rename."""
    written: list[Path] = []
    try:
        for path, data in files:
            tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
            try:
                tmp.write_bytes(data)
                _link_new(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(path)
    except BaseException as exc:
        for done in written:
            done.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            return False
        raise
    return True


_NO_HARD_LINKS: Final = frozenset((errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV))


def _link_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from exc
        tmp.replace(path)


class SimPrinter:
    """A :class:`~drivers.printer.base.ReceiptPrinter` that prints to files.

    :param out_dir: where receipts are written (created by :meth:`open`).
    :param columns: characters per line at normal size: 32 (58 mm) or 48 (80 mm).
    :param dots: width of the picture in dots; default ``columns * 12`` (384 or 576, 203 dpi).
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        columns: int = 32,
        dots: int | None = None,
        name: str = "sim-printer",
    ) -> None:
        if columns < 2:
            raise ValueError("columns must be at least 2")
        self.name = name
        self.out_dir = out_dir
        self.columns = columns
        self.dots = dots_for_columns(columns) if dots is None else dots
        self.printed: list[str] = []  # names of the documents printed, in order
        self._online = True
        self._paper = PaperState.OK
        self._cover_open = False
        self._error = False

    async def open(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def status(self) -> PrinterStatus:
        return self.current_status()

    async def print(self, doc: Document) -> None:
        if not _SAFE_NAME.fullmatch(doc.name):
            raise ValueError(f"document name {doc.name!r} is not a safe file name")
        status = self.current_status()
        if not status.ready:
            kind = (
                "offline"
                if not status.online
                else "cover_open"
                if status.cover_open
                else "paper_out"
                if status.paper is PaperState.OUT
                else "error"
            )
            raise DeviceFault(kind, f"{self.name}: cannot print {doc.name}")
        name = await asyncio.to_thread(self._render_and_write, doc)
        self.printed.append(name)
        log.info("%s: printed %s", self.name, name)

    # -- scripted status -----------------------------------------------------------------------

    def current_status(self) -> PrinterStatus:
        return PrinterStatus(
            online=self._online,
            paper=self._paper,
            cover_open=self._cover_open,
            error=self._error,
        )

    def set_paper(self, paper: PaperState) -> None:
        self._paper = PaperState(paper)

    def set_cover_open(self, cover_open: bool) -> None:
        self._cover_open = cover_open

    def set_online(self, online: bool) -> None:
        self._online = online

    def set_error(self, error: bool) -> None:
        self._error = error

    def state(self) -> dict[str, Any]:
        """Status and output, JSON-able (for tests and the control channel)."""
        status = self.current_status()
        return {
            "name": self.name,
            "online": self._online,
            "paper": self._paper.value,
            "cover_open": self._cover_open,
            "error": self._error,
            "ready": status.ready,
            "columns": self.columns,
            "out_dir": str(self.out_dir),
            "printed": list(self.printed),
        }

    def paths(self, name: str) -> tuple[Path, Path]:
        """The text and picture files of document ``name``."""
        return self.out_dir / f"{name}.txt", self.out_dir / f"{name}.png"

    # -- worker thread -------------------------------------------------------------------------

    def _render_and_write(self, doc: Document) -> str:
        """Render ``doc`` and write it under the first free name; returns that name."""
        from drivers.printer.render import render_image, render_text  # Pillow: only to render

        text = render_text(doc, self.columns)
        image = render_image(doc, self.columns, self.dots)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        name, n = doc.name, 1
        while True:
            text_path, png_path = self.paths(name)
            if write_new(((png_path, buf.getvalue()), (text_path, text.encode()))):
                return name
            n += 1
            name = f"{doc.name}-{n}"
