"""Frame sources: the replay source, and the picamera2 / OpenCV sources without their libraries
(missing here) or with a minimal fake of them injected into ``sys.modules``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from drivers.camera import luma_image
from drivers.camera.picam import PicameraSource
from drivers.camera.replay import ReplaySource
from drivers.camera.v4l2 import V4l2Source
from drivers.errors import DeviceFault, FrameError, PortError


def shade(value: int, size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("L", size, value)


async def frames(source: ReplaySource, n: int) -> list[int | None]:
    out: list[int | None] = []
    for _ in range(n):
        frame = await source.next_frame()
        out.append(None if frame is None else frame.getpixel((0, 0)))
    return out


# -- replay ------------------------------------------------------------------------------------


def test_replay_yields_frames_in_order_then_ends() -> None:
    source = ReplaySource([shade(1), shade(2), shade(3)], interval=0)

    async def main() -> list[int | None]:
        await source.open()
        return await frames(source, 5)

    assert asyncio.run(main()) == [1, 2, 3, None, None]


def test_replay_loops_and_paces_like_a_camera() -> None:
    source = ReplaySource([shade(1), shade(2)], loop=True, interval=0.02)

    async def main() -> tuple[list[int | None], float]:
        await source.open()
        start = time.monotonic()
        got = await frames(source, 5)
        return got, time.monotonic() - start

    got, elapsed = asyncio.run(main())
    assert got == [1, 2, 1, 2, 1]
    assert elapsed >= 4 * 0.02 * 0.9  # the first frame is immediate


def test_replay_frames_are_grayscale(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(rgb)
    source = ReplaySource([rgb, Image.new("RGB", (4, 4), "white")], interval=0)

    async def main() -> list[str]:
        await source.open()
        return [f.mode for f in [await source.next_frame(), await source.next_frame()] if f]

    assert asyncio.run(main()) == ["L", "L"]


def test_replay_directory_in_order_of_name(tmp_path: Path) -> None:
    for name, value in [("f2.png", 2), ("f1.jpg", 1), ("f3.PNG", 3), (".hidden.png", 9)]:
        shade(value).save(tmp_path / name, **({"quality": 100} if name.endswith("jpg") else {}))
    (tmp_path / "notes.txt").write_text("not a frame")
    source = ReplaySource(directory=tmp_path, interval=0)

    async def main() -> list[int | None]:
        await source.open()
        return await frames(source, 4)

    assert asyncio.run(main()) == [1, 2, 3, None]


def test_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either"):
        ReplaySource()
    with pytest.raises(ValueError, match="either"):
        ReplaySource([shade(1)], directory=tmp_path)
    with pytest.raises(PortError, match=r"no \.png"):
        asyncio.run(ReplaySource(directory=tmp_path).open())
    with pytest.raises(PortError, match="cannot list"):
        asyncio.run(ReplaySource(directory=tmp_path / "missing").open())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(FrameError, match=r"bad\.png: not a readable image"):
        asyncio.run(ReplaySource([bad]).open())
    with pytest.raises(PortError, match="not open"):
        asyncio.run(ReplaySource([shade(1)]).next_frame())


# -- luma_image ----------------------------------------------------------------------------------


def yuv420(width: int, height: int, stride: int) -> memoryview:
    """A YUV420 buffer shaped like picamera2's: (height * 3 / 2, stride); Y[r][c] = r * 10 + c,
    padding bytes 255, chroma 128."""
    padding = b"\xff" * (stride - width)
    rows = [bytes((r * 10 + c) % 250 for c in range(width)) + padding for r in range(height)]
    data = b"".join(rows) + b"\x80" * (stride * height // 2)
    return memoryview(bytearray(data)).cast("B", (height * 3 // 2, stride))


def test_luma_image_takes_the_y_plane_without_the_padding() -> None:
    image = luma_image(yuv420(6, 4, 8), 6, 4)
    assert (image.mode, image.size) == ("L", (6, 4))
    assert [image.getpixel((c, r)) for r in range(4) for c in (0, 5)] == [
        0,
        5,
        10,
        15,
        20,
        25,
        30,
        35,
    ]


def test_luma_image_refuses_what_is_not_a_2d_byte_array() -> None:
    with pytest.raises(FrameError, match="buffer"):
        luma_image([1, 2, 3], 1, 1)
    with pytest.raises(FrameError, match="2-D"):
        luma_image(b"abcd", 2, 2)
    with pytest.raises(FrameError, match="cannot hold"):
        luma_image(yuv420(6, 4, 8), 10, 4)


# -- picamera2 ---------------------------------------------------------------------------------


def test_importing_the_camera_sources_imports_no_camera_library() -> None:
    code = textwrap.dedent("""
        import sys
        import drivers.camera, drivers.camera.picam, drivers.camera.v4l2, drivers.camera.replay
        import drivers.reader.camera_reader
        print(sorted(m for m in ("picamera2", "libcamera", "cv2", "numpy") if m in sys.modules))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


def test_picamera_without_picamera2_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(DeviceFault, match="apt install python3-picamera2") as caught:
        asyncio.run(PicameraSource().open())
    assert caught.value.kind == "picamera2-missing"
    assert "--system-site-packages" in str(caught.value)


class FakePicamera2:
    """Just enough of picamera2.Picamera2 for PicameraSource; records the calls it gets."""

    cameras = 1
    last: FakePicamera2 | None = None

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= self.cameras:
            raise IndexError("list index out of range")  # what picamera2 raises
        FakePicamera2.last = self
        self.calls: list[Any] = []
        self.camera_controls: dict[str, Any] = {"AfMode": (0, 2, 0)}
        self.sensor_resolution = (4608, 2592)
        self.started = False

    def create_video_configuration(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("video", kwargs))
        return {"main": dict(kwargs["main"]), "lores": dict(kwargs["lores"])}

    def create_still_configuration(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("still", kwargs))
        return {"main": dict(kwargs["main"])}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append(("configure", config))

    def start(self) -> None:
        self.started = True
        self.calls.append("start")

    def capture_array(self, name: str = "main") -> memoryview:
        assert self.started and threading.current_thread().name.startswith("picamera")
        self.calls.append(("capture", name))
        return yuv420(640, 480, 640 + 64)

    def switch_mode_and_capture_array(self, config: dict[str, Any], name: str = "main") -> Any:
        self.calls.append(("switch", config["main"]["format"], name))
        width, height = config["main"]["size"]
        return yuv420(width, height, width)

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def test_picamera_scans_the_y_plane_of_a_lores_yuv420_stream(
    fake_picamera2: type[FakePicamera2],
) -> None:
    source = PicameraSource()

    async def main() -> tuple[Image.Image, Image.Image]:
        await source.open()
        frame = await source.next_frame()
        full = await source.capture_full()
        await source.close()
        return frame, full

    frame, full = asyncio.run(main())
    cam = fake_picamera2.last
    assert cam is not None
    video = cam.calls[0]
    assert video[0] == "video"
    assert video[1]["lores"] == {"size": (640, 480), "format": "YUV420"}
    assert video[1]["controls"] == {"FrameRate": 30.0, "AfMode": 2}
    assert ("configure", {"main": video[1]["main"], "lores": video[1]["lores"]}) in cam.calls
    assert ("capture", "lores") in cam.calls
    assert (frame.mode, frame.size) == ("L", (640, 480))
    assert frame.getpixel((3, 2)) == 23  # Y, not the row padding
    assert ("switch", "YUV420", "main") in cam.calls
    assert (full.mode, full.size) == ("L", (4608, 2592))
    assert cam.calls[-2:] == ["stop", "close"]


def test_picamera_without_a_camera_is_a_port_error(fake_picamera2: type[FakePicamera2]) -> None:
    with pytest.raises(PortError, match=r"no usable camera 1.*rpicam-hello"):
        asyncio.run(PicameraSource(camera_num=1).open())
    with pytest.raises(PortError, match="not open"):
        asyncio.run(PicameraSource().next_frame())


# -- OpenCV ------------------------------------------------------------------------------------


def test_usb_camera_without_opencv_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(DeviceFault, match="uv sync --extra usb-camera") as caught:
        asyncio.run(V4l2Source("/dev/video9").open())
    assert caught.value.kind == "opencv-missing"
    assert "apt install python3-opencv" in str(caught.value)


class FakeCapture:
    """Just enough of cv2.VideoCapture: a 2-D (already gray) frame, then the camera is gone."""

    last: FakeCapture | None = None

    def __init__(self, device: Any, api: int) -> None:
        FakeCapture.last = self
        self.device, self.api = device, api
        self.props: dict[int, float] = {}
        self.frames = 1
        self.released = False

    def isOpened(self) -> bool:  # OpenCV spells it so
        return self.device != "/dev/video9"

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, Any]:
        if not self.frames:
            return False, None
        self.frames -= 1
        return True, memoryview(bytearray(range(64))).cast("B", (8, 8))

    def release(self) -> None:
        self.released = True


def test_usb_camera_through_a_fake_cv2(monkeypatch: pytest.MonkeyPatch) -> None:
    cv2 = types.SimpleNamespace(
        CAP_V4L2=200,
        CAP_PROP_FOURCC=6,
        CAP_PROP_FRAME_WIDTH=3,
        CAP_PROP_FRAME_HEIGHT=4,
        CAP_PROP_FPS=5,
        CAP_PROP_BUFFERSIZE=38,
        COLOR_BGR2GRAY=6,
        VideoCapture=FakeCapture,
        VideoWriter_fourcc=lambda *c: sum(ord(ch) << (8 * i) for i, ch in enumerate(c)),
    )
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    source = V4l2Source("/dev/video0")

    async def main() -> Image.Image:
        await source.open()
        frame = await source.next_frame()
        with pytest.raises(PortError, match="no frame"):
            await source.next_frame()
        await source.close()
        return frame

    frame = asyncio.run(main())
    assert (frame.mode, frame.size, frame.getpixel((1, 2))) == ("L", (8, 8), 17)
    cap = FakeCapture.last
    assert cap is not None and cap.released and cap.api == cv2.CAP_V4L2
    assert cap.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert (cap.props[3], cap.props[4], cap.props[5], cap.props[38]) == (640, 480, 30.0, 1)
    with pytest.raises(PortError, match="cannot open /dev/video9"):
        asyncio.run(V4l2Source("/dev/video9").open())
