"""A code reader fed with image files instead of a camera: simulation, tests and the demo.

Each image file is one camera *frame*. Two sources:

- ``directory``: the reader watches it (every ``poll_interval`` seconds) for new ``.png``,
  ``.jpg`` or ``.jpeg`` files and takes them in order of modification time, then name. Files
  already there when :meth:`ReplayReader.open` runs are ignored (a restart must not replay an
  old code) unless ``include_existing``; names starting with ``.`` are ignored, so a writer can
  copy to ``.name.tmp`` and rename into place.
- ``files``: a fixed list of frames, taken once in order; then :meth:`next_code` waits forever
  like a camera that sees nothing.

Each frame is decoded once, in a worker thread. A code seen in consecutive frames is one scan:
it is reported again only after a frame without it, or once ``hold`` seconds passed since it was
last reported. A file that cannot be decoded is skipped with a warning and does not count as a
frame. Frames are processed while :meth:`next_code` is awaited, so none is lost while the kiosk
is busy elsewhere.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from drivers.errors import FrameError
from drivers.reader.base import Decoder
from drivers.reader.camera_reader import RepeatFilter
from drivers.reader.decode import decode_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg"})


class ReplayReader:
    """A :class:`~drivers.reader.base.CodeReader` over image files.

    :param directory: a directory to watch for new frames (exclusive with ``files``).
    :param files: a fixed list of frames (exclusive with ``directory``).
    :param poll_interval: seconds between directory scans.
    :param hold: seconds after which a code still in view counts as a new scan.
    :param include_existing: also take the files present in ``directory`` at open.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        files: Sequence[Path] = (),
        poll_interval: float = 0.1,
        hold: float = 3.0,
        include_existing: bool = False,
        name: str = "replay",
        decoder: Decoder | None = None,
    ) -> None:
        if (directory is None) == (not files):
            raise ValueError("give either a directory to watch or a list of files")
        self.name = name
        self.decoder = decoder  # None: plain zxing-cpp (drivers.reader.decode)
        self.directory = directory
        self.poll_interval = poll_interval
        self.hold = hold
        self.include_existing = include_existing
        self._files: collections.deque[Path] = collections.deque(files)
        self._seen: set[str] = set()
        self._pending: collections.deque[str] = collections.deque()
        self._repeats = RepeatFilter(hold)

    async def open(self) -> None:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            if not self.include_existing:
                self._seen = {p.name for p in self._candidates()}

    async def close(self) -> None:
        return None

    async def next_code(self) -> str:
        while True:
            if self._pending:
                return self._pending.popleft()
            frame = self._next_frame()
            if frame is None:
                await asyncio.sleep(self.poll_interval)
                continue
            try:
                texts = await asyncio.to_thread(decode_file, frame, self.decoder)
            except FrameError as exc:
                log.warning("%s: skipping frame %s: %s", self.name, frame.name, exc)
                self._consume(frame)
                continue
            self._consume(frame)
            self._take(texts)

    # -- internals -----------------------------------------------------------------------------

    def _candidates(self) -> list[Path]:
        assert self.directory is not None
        found: list[tuple[int, str, Path]] = []
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:
            return []
        for path in entries:
            if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            found.append((mtime, path.name, path))
        return [p for _, _, p in sorted(found)]

    def _next_frame(self) -> Path | None:
        if self.directory is None:
            return self._files[0] if self._files else None
        for path in self._candidates():
            if path.name not in self._seen:
                return path
        return None

    def _consume(self, frame: Path) -> None:
        if self.directory is None:
            self._files.popleft()
        else:
            self._seen.add(frame.name)

    def _take(self, texts: list[str]) -> None:
        self._pending.extend(self._repeats.feed(texts))
