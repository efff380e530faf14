"""The Raspberry Pi camera through picamera2 (libcamera), for scanning codes.

Wiring: a Camera Module on the CSI ribbon connector (``rpicam-hello --list-cameras`` lists it).
picamera2 is not in the lock file: it comes from Raspberry Pi OS (``sudo apt install
python3-picamera2``), so the virtual environment must see the system's packages (``uv venv
--system-site-packages``). It is imported inside :meth:`PicameraSource.open`, never at import
time, so this module loads on any machine.

Streams: a *video* configuration with a small ``main`` stream and a ``lores`` stream of
``size`` (default 640x480) in ``YUV420``; every frame is the Y (luma) plane of ``lores``, which
is the grayscale picture the decoder wants, with no colour conversion. :meth:`capture_full`
switches to a *still* configuration at the sensor's full resolution for one frame (about a
second on a Pi 4, then back to scanning), for a retry on a code too small or too dense for
640x480.

Every picamera2 call runs in one dedicated thread ("picamera"), in order: a capture waits
there for the next frame (33 ms at 30 fps), never on the event loop.
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

LORES_SIZE: Final = (640, 480)
INSTALL_HINT: Final = (
    "on Raspberry Pi OS: sudo apt install python3-picamera2, and create the venv with "
    "`uv venv --system-site-packages` so it sees it; elsewhere use a USB camera or the replay "
    "source"
)
_AF_CONTINUOUS: Final = 2  # libcamera controls.AfModeEnum.Continuous (Camera Module 3)


class PicameraSource:
    """A :class:`~drivers.reader.base.FrameSource` on a Raspberry Pi camera.

    :param camera_num: which camera (0 is the first, as ``rpicam-hello --list-cameras``).
    :param size: (width, height) in pixels of the ``lores`` stream that is scanned.
    :param frame_rate: frames per second asked of the sensor.
    :param autofocus: continuous autofocus, where the camera has it (Camera Module 3).

    :meth:`open` raises ``DeviceFault("picamera2-missing")`` when picamera2 cannot be imported
    and ``PortError`` when the camera cannot be found, is busy or refuses the configuration.
    :meth:`next_frame` and :meth:`capture_full` raise ``PortError`` when a capture fails.
    """

    def __init__(
        self,
        *,
        camera_num: int = 0,
        size: tuple[int, int] = LORES_SIZE,
        frame_rate: float = 30.0,
        autofocus: bool = True,
        name: str = "picamera",
    ) -> None:
        width, height = size
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError("the lores size must be positive and even, e.g. (640, 480)")
        self.name = name
        self.camera_num = camera_num
        self.size = size
        self.frame_rate = frame_rate
        self.autofocus = autofocus
        self._cam: Any = None
        self._still: dict[str, Any] | None = None
        self._lores_size = size
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        if self._cam is not None:
            return
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise DeviceFault(
                "picamera2-missing", f"{self.name}: cannot import picamera2 ({exc}); {INSTALL_HINT}"
            ) from exc
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        try:
            self._cam = await self._call(self._start, Picamera2)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise
        log.info(
            "%s: camera %d scanning %dx%d Y plane", self.name, self.camera_num, *self._lores_size
        )

    async def close(self) -> None:
        if self._cam is None or self._thread is None:
            return
        cam, self._cam = self._cam, None
        try:
            await self._call(_stop, cam)
        finally:
            self._thread.shutdown(wait=False)
            self._thread = None

    async def next_frame(self) -> Image.Image:
        """The Y plane of the next ``lores`` frame (waits for the camera's next frame)."""
        return await self._call(self._capture_lores)

    async def capture_full(self) -> Image.Image:
        """One frame at the sensor's full resolution, in grayscale, then back to scanning."""
        return await self._call(self._capture_full)

    # -- in the camera thread ------------------------------------------------------------------

    def _start(self, factory: Callable[..., Any]) -> Any:
        try:
            cam = factory(self.camera_num)
        except (IndexError, RuntimeError, OSError) as exc:
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            raise PortError(
                f"{self.name}: no usable camera {self.camera_num} ({exc or type(exc).__name__})"
                f"{cause}: check the ribbon cable and `rpicam-hello --list-cameras`, and that "
                "no other process holds the camera"
            ) from exc
        try:
            self._configure(cam)
        except BaseException:
            _stop(cam)
            raise
        return cam

    def _configure(self, cam: Any) -> None:
        width, height = self.size
        controls: dict[str, Any] = {"FrameRate": self.frame_rate}
        if self.autofocus and "AfMode" in getattr(cam, "camera_controls", {}):
            controls["AfMode"] = _AF_CONTINUOUS
        try:
            # main is never read while scanning: twice lores, same 4:3 field of view, YUV
            # (the cheapest for the ISP); lores may not be larger than main.
            config = cam.create_video_configuration(
                main={"size": (width * 2, height * 2), "format": "YUV420"},
                lores={"size": (width, height), "format": "YUV420"},
                buffer_count=4,
                controls=controls,
            )
            cam.configure(config)
            lores_width, lores_height = config["lores"]["size"]  # as aligned by picamera2
            self._lores_size = (int(lores_width), int(lores_height))
            self._still = cam.create_still_configuration(
                main={"size": cam.sensor_resolution, "format": "YUV420"}
            )
            cam.start()
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise PortError(f"{self.name}: the camera refused the configuration ({exc})") from exc

    def _capture_lores(self) -> Image.Image:
        cam = self._require()
        try:
            array = cam.capture_array("lores")
        except (RuntimeError, OSError) as exc:
            raise PortError(f"{self.name}: capture failed ({exc})") from exc
        width, height = self._lores_size
        return luma_image(array, width, height)

    def _capture_full(self) -> Image.Image:
        cam = self._require()
        assert self._still is not None
        try:
            array = cam.switch_mode_and_capture_array(self._still, "main")
        except (RuntimeError, OSError) as exc:
            raise PortError(f"{self.name}: full-resolution capture failed ({exc})") from exc
        width, height = self._still["main"]["size"]
        return luma_image(array, width, height)

    def _require(self) -> Any:
        if self._cam is None:
            raise PortError(f"{self.name}: the camera is not open")
        return self._cam

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise PortError(f"{self.name}: the camera is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def _stop(cam: Any) -> None:
    """Stop and release the camera; errors are logged (it is going away anyway)."""
    for step in ("stop", "close"):
        try:
            getattr(cam, step)()
        except Exception as exc:  # a failing stop must not hide why we are stopping
            log.warning("picamera: %s failed: %s", step, exc)
