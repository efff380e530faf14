"""Frame sources for the code reader (:class:`~drivers.reader.base.FrameSource`).

==================  ==========================================  ==============================
module              source                                      needs
==================  ==========================================  ==============================
``picam``           Raspberry Pi camera, low-res ``lores``      ``python3-picamera2`` (apt,
                    stream; full resolution on request          Raspberry Pi OS only)
``v4l2``            USB camera (``/dev/videoN``) via OpenCV     ``uv sync --extra usb-camera``
                                                                or ``apt install python3-opencv``
``replay``          image files or a directory, paced like a    Pillow (always there)
                    camera (simulation, tests, the demo)
==================  ==========================================  ==============================

Importing this package or any of its modules imports no camera library: picamera2 and cv2
are imported inside ``open()``, so the daemon starts on any machine and fails only when a
missing camera is actually asked for, with an error that says what to install.

Every source hands out grayscale ``PIL.Image.Image`` frames (mode ``"L"``). A blocking camera
call (waiting for the next frame) runs in the source's own single worker thread, never on the
event loop; decoding is the reader's business (:mod:`drivers.reader.camera_reader`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.errors import FrameError

if TYPE_CHECKING:
    from PIL import Image


def luma_image(plane: Any, width: int, height: int) -> Image.Image:
    """A grayscale image from the first ``height`` rows of a 2-D array of bytes.

    ``plane`` is anything with the buffer protocol, C-contiguous, one byte per item, shaped
    ``(rows, stride)`` with ``stride >= width`` (padding at the end of each row is skipped):
    the ``YUV420`` array picamera2 returns (the Y plane is its first ``height`` rows) or a
    ``uint8`` grayscale array from OpenCV. The image shares the buffer (no copy).

    Raises ``FrameError`` if the buffer is not such an array or is too small.
    """
    from PIL import Image

    try:
        view = memoryview(plane)
    except TypeError as exc:
        raise FrameError(f"a frame must be a buffer, not {type(plane).__name__}") from exc
    if view.ndim != 2 or view.shape is None or view.itemsize != 1 or not view.c_contiguous:
        raise FrameError(
            f"a frame must be a contiguous 2-D array of bytes, not {view.ndim}-D "
            f"of {view.itemsize}-byte items"
        )
    rows, stride = view.shape
    if rows < height or stride < width:
        raise FrameError(f"a {stride}x{rows} buffer cannot hold a {width}x{height} frame")
    flat: Any = view.cast("B")  # Pillow maps any buffer; its stubs name bytes only
    return Image.frombuffer("L", (width, height), flat, "raw", "L", stride, 1)
