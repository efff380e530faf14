"""Frames from image files, paced like a camera: simulation, tests and the demo.

A :class:`ReplaySource` plays a fixed list of images (files or ``PIL`` images), or every
image file of a directory (``.png``, ``.jpg``, ``.jpeg``; names starting with ``.`` ignored)
in order of name, one frame every ``interval`` seconds (default 1/30 s, a 30 fps camera).
At the end it starts again if ``loop``, else :meth:`ReplaySource.next_frame` returns ``None``.

The images are read and converted to grayscale once, in a worker thread, at :meth:`open`:
this is for a handful of frames, not for video. To feed frames one at a time while running
(the demo's "show this code" button), use :class:`drivers.reader.replay.ReplayReader`, which
watches a directory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from drivers.errors import FrameError, PortError
from drivers.reader.replay import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

FRAME_INTERVAL: Final = 1 / 30  # seconds: a 30 fps camera


class ReplaySource:
    """A :class:`~drivers.reader.base.FrameSource` over images.

    :param frames: image files or ``PIL`` images, played in this order (exclusive with
        ``directory``).
    :param directory: play the image files found there at :meth:`open`, in order of name.
    :param loop: start again after the last frame instead of ending.
    :param interval: seconds between frames (0: as fast as they are asked for).

    :meth:`open` raises ``PortError`` if the directory is missing or holds no image, and
    ``FrameError`` naming the file if an image cannot be read.
    """

    def __init__(
        self,
        frames: Sequence[Path | Image.Image] = (),
        *,
        directory: Path | None = None,
        loop: bool = False,
        interval: float = FRAME_INTERVAL,
        name: str = "replay-camera",
    ) -> None:
        if (directory is None) == (not frames):
            raise ValueError("give either a list of frames or a directory")
        if interval < 0:
            raise ValueError("interval must be >= 0 seconds")
        self.name = name
        self.directory = directory
        self.loop = loop
        self.interval = interval
        self._given = list(frames)
        self._frames: list[Image.Image] = []
        self._index = 0
        self._next_at: float | None = None
        self.frames_played = 0

    async def open(self) -> None:
        self._frames = await asyncio.to_thread(self._load)
        self._index = 0
        self._next_at = None
        log.info("%s: %d frame(s), every %.3f s", self.name, len(self._frames), self.interval)

    async def close(self) -> None:
        self._frames = []

    async def next_frame(self) -> Image.Image | None:
        if not self._frames:
            raise PortError(f"{self.name}: not open")
        if self._index >= len(self._frames):
            if not self.loop:
                return None
            self._index = 0
        await self._pace()
        frame = self._frames[self._index]
        self._index += 1
        self.frames_played += 1
        return frame

    # -- internals -----------------------------------------------------------------------------

    async def _pace(self) -> None:
        """Sleep until the next frame is due; a late consumer gets no burst to catch up."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next_at is not None and self._next_at > now:
            await asyncio.sleep(self._next_at - now)
            now = self._next_at
        else:
            await asyncio.sleep(0)  # always yield: a replay never hogs the loop
        self._next_at = now + self.interval

    def _paths(self) -> list[Path]:
        assert self.directory is not None
        try:
            entries = sorted(self.directory.iterdir())
        except OSError as exc:
            raise PortError(f"{self.name}: cannot list {self.directory} ({exc})") from exc
        paths = [
            p
            for p in entries
            if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        ]
        if not paths:
            raise PortError(f"{self.name}: no .png/.jpg frames in {self.directory}")
        return paths

    def _load(self) -> list[Image.Image]:
        given = self._given if self.directory is None else list(self._paths())
        return [_load_frame(item) for item in given]


def _load_frame(item: Path | Image.Image) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return item if item.mode == "L" else item.convert("L")
    try:
        with Image.open(item) as image:
            image.load()
            return image.convert("L")
    except FileNotFoundError as exc:
        raise FrameError(f"{item}: no such image file") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FrameError(f"{item}: not a readable image ({exc})") from exc
