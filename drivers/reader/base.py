"""The code reader interface: something that yields decoded QR texts."""

from __future__ import annotations

from typing import Any, Protocol


class CodeReader(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def next_code(self) -> str:
        """Wait for the next decoded code. The same code seen in consecutive frames is one
        scan. Decoding runs off the event loop."""
        ...


class Decoder(Protocol):
    """Turns one frame into the texts of the QR codes in it (``drivers.reader.decoders``).

    ``image`` is a ``PIL.Image.Image`` (any mode; decoders convert to grayscale). Runs in a
    worker thread, never on the event loop. A text is returned as decoded: the payload
    router (``kiosk.router``) decides what it is.
    """

    name: str

    def decode(self, image: Any) -> list[str]: ...


class FrameSource(Protocol):
    """Frames from a camera (picamera2, V4L2 through OpenCV) or a replay of images."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def next_frame(self) -> Any:
        """The next frame as a grayscale ``PIL.Image.Image`` (``None`` when a replay ends)."""
        ...
