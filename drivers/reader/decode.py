"""Decode QR codes from images with zxing-cpp (no numpy: zxing-cpp reads PIL images).

CPU-bound and blocking: async callers run these in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from drivers.errors import FrameError

if TYPE_CHECKING:
    from PIL import Image

    from drivers.reader.base import Decoder

# zxing-cpp and Pillow are imported on the first decode, off the event loop (start-up time).


def decode_image(image: Image.Image) -> list[str]:
    """The texts of the QR codes in ``image``, in the order found, without duplicates."""
    import zxingcpp

    # QR codes (zxing-cpp 3 counts Micro QR and rMQR in this family too).
    formats = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    gray = image if image.mode == "L" else image.convert("L")
    texts: list[str] = []
    for barcode in zxingcpp.read_barcodes(gray, formats=formats):
        text = str(barcode.text)
        if barcode.valid and text not in texts:
            texts.append(text)
    return texts


def decode_file(path: Path, decoder: Decoder | None = None) -> list[str]:
    """Decode an image file (PNG, JPEG...). Raises ``FrameError`` if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return decoder.decode(image) if decoder is not None else decode_image(image)
    except FileNotFoundError as exc:
        raise FrameError(f"{path}: no such image file") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FrameError(f"{path}: not a readable image ({exc})") from exc
