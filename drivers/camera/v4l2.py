"""USB cameras (UVC, V4L2) through OpenCV, for scanning codes.

Wiring: any UVC webcam or USB scanning camera; it appears as ``/dev/videoN`` (``v4l2-ctl
--list-devices``; a udev rule can give it a stable name such as ``/dev/kiosk-camera``).
OpenCV is an optional extra: ``uv sync --extra usb-camera`` (pip wheel), or on Raspberry Pi
OS ``sudo apt install python3-opencv`` with a venv that sees system packages. ``cv2`` is
imported inside :meth:`V4l2Source.open`, never at import time.

The camera is asked for ``fourcc`` (``MJPG`` by default: most UVC cameras reach 30 fps at
640x480 only compressed; ``YUYV`` is the uncompressed alternative) at ``size`` and
``frame_rate``, with a one-frame driver queue so a frame is fresh when grabbed. The camera
may pick something else: what it took is logged at open. Frames are converted to grayscale by
OpenCV and handed out as ``PIL`` images sharing that buffer.

Every OpenCV call runs in one dedicated thread (named after the source), in order: a grab
waits there for the next frame, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, TypeVar

from drivers.camera import luma_image
from drivers.errors import DeviceFault, PortError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

T = TypeVar("T")

INSTALL_HINT: Final = (
    "install OpenCV: `uv sync --extra usb-camera`, or on Raspberry Pi OS "
    "`sudo apt install python3-opencv` (with a venv created by `uv venv --system-site-packages`)"
)


class V4l2Source:
    """A :class:`~drivers.reader.base.FrameSource` on a V4L2 (USB) camera.

    :param device: ``/dev/videoN`` (or a udev symlink to it), or the index ``N``.
    :param size: (width, height) in pixels asked of the camera.
    :param fourcc: pixel format asked of the camera: ``MJPG`` or ``YUYV``.
    :param frame_rate: frames per second asked of the camera.

    :meth:`open` raises ``DeviceFault("opencv-missing")`` when ``cv2`` cannot be imported and
    ``PortError`` when the device cannot be opened; :meth:`next_frame` raises ``PortError`` when
    the camera stops giving frames (unplugged).
    """

    def __init__(
        self,
        device: str | int = "/dev/video0",
        *,
        size: tuple[int, int] = (640, 480),
        fourcc: str = "MJPG",
        frame_rate: float = 30.0,
        name: str = "usb-camera",
    ) -> None:
        if len(fourcc) != 4:
            raise ValueError(f"fourcc must be 4 characters such as MJPG or YUYV, not {fourcc!r}")
        self.name = name
        self.device = device
        self.size = size
        self.fourcc = fourcc
        self.frame_rate = frame_rate
        self._cv2: Any = None
        self._cap: Any = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        if self._cap is not None:
            return
        try:
            import cv2
        except ImportError as exc:
            raise DeviceFault(
                "opencv-missing", f"{self.name}: cannot import cv2 ({exc}); {INSTALL_HINT}"
            ) from exc
        self._cv2 = cv2
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        try:
            self._cap = await self._call(self._open_capture)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise

    async def close(self) -> None:
        if self._cap is None or self._thread is None:
            return
        cap, self._cap = self._cap, None
        try:
            await self._call(cap.release)
        finally:
            self._thread.shutdown(wait=False)
            self._thread = None

    async def next_frame(self) -> Image.Image:
        """The next frame in grayscale (waits for the camera's next frame)."""
        return await self._call(self._grab)

    # -- in the camera thread ------------------------------------------------------------------

    def _open_capture(self) -> Any:
        cv2 = self._cv2
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise PortError(
                f"{self.name}: cannot open {self.device} (is it plugged in? "
                "`v4l2-ctl --list-devices`; is the user in the video group?)"
            )
        width, height = self.size
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, self.frame_rate)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
        got = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
        log.info(
            "%s: %s at %dx%d %s %.0f fps",
            self.name,
            self.device,
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            got,
            cap.get(cv2.CAP_PROP_FPS),
        )
        return cap

    def _grab(self) -> Image.Image:
        cap = self._cap
        if cap is None:
            raise PortError(f"{self.name}: the camera is not open")
        cv2 = self._cv2
        ok, frame = cap.read()
        if not ok or frame is None:
            raise PortError(f"{self.name}: no frame from {self.device} (unplugged?)")
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape[:2]
        return luma_image(gray, width, height)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise PortError(f"{self.name}: the camera is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
