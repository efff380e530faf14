"""``kiosk decode FILE...``: what the kiosk reads in each image, one JSON line per file.

``{"file": ..., "ms": ..., "codes": [{"text": ..., "kind": ...}]}`` where ``ms`` is the decode
time alone and ``kind`` the router's classification (``unknown`` for anything it refuses), or
``{"file": ..., "error": ...}`` for a file that is refused; the other files are still decoded.
Exit status 1 if any file had an error. For a technician with a photo of a code that "does not
scan".

A file is hostile input (it came from a phone, a mail, a USB stick), so before anything is
decoded into memory it must be one of :data:`FORMATS` (never a format that runs a program:
Pillow opens EPS through Ghostscript), at most :data:`MAX_PIXELS` pixels (a 14000x14000 PNG
of 50 kB is 196 MB once decoded: a decompression bomb) and at least :data:`MIN_SIDE` pixels a
side. Pillow's own ``DecompressionBombWarning`` and ``DecompressionBombError`` are refusals
too; its other warnings (a corrupt EXIF block, a palette's transparency) are not shown.
"""

from __future__ import annotations

import json
import struct
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from PIL import Image

FORMATS: Final = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
"""What a photo or a screenshot of a code comes as (Pillow's format names)."""
MAX_PIXELS: Final = 4096 * 4096
"""A camera frame's worth (Pi Camera Module 3: 4608x2592, HQ camera: 4056x3040; a phone's
12 MP photo: 4032x3024); Pillow's own bound (89 M pixels warned, 179 M refused) is far more."""
MIN_SIDE: Final = 8
"""Pixels: below this no QR code fits (21 modules), and the decoder's reductions are empty."""


class Refused(Exception):
    """A file ``kiosk decode`` does not decode; the message says why, for the JSON line."""


def load_gray(path: Path) -> Image.Image:
    """``path`` as a grey (mode ``L``) image, checked before its pixels are decoded.
    Raises :class:`Refused`."""
    from PIL import Image, UnidentifiedImageError

    names = ", ".join(FORMATS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a quirk of the file, not the technician's concern
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise Refused(
                        f"too large: {width}x{height} pixels, more than a camera frame"
                        f" ({MAX_PIXELS:,} pixels, 4096x4096): scale it down"
                    )
                if min(width, height) < MIN_SIDE:
                    raise Refused(
                        f"too small: {width}x{height} pixels, a side under {MIN_SIDE}:"
                        " no QR code fits"
                    )
                image.load()
                return image.convert("L")
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise Refused(
                f"too large: more than a camera frame ({MAX_PIXELS:,} pixels), a decompression"
                f" bomb ({exc})"
            ) from None
        except FileNotFoundError:
            raise Refused("no such file") from None
        except UnidentifiedImageError:
            raise Refused(f"not a readable image: not one of {names}") from None
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as exc:
            # what Pillow raises on truncated or malformed data, by plugin
            raise Refused(f"not a readable image: {exc or type(exc).__name__}") from None


def decode_files(
    paths: Sequence[Path],
    *,
    decoder: str = "auto",
    configs: Mapping[str, Any] | None = None,
    out: Callable[[str], None] = print,
) -> int:
    from drivers.reader.decoders import make_decoder
    from kiosk.router import kind_of

    dec = make_decoder(decoder)
    status = 0
    for path in paths:
        try:
            gray = load_gray(path)
        except Refused as exc:
            out(json.dumps({"file": str(path), "error": str(exc)}))
            status = 1
            continue
        started = time.perf_counter()
        texts = dec.decode(gray)
        ms = (time.perf_counter() - started) * 1000
        codes = [{"text": t, "kind": kind_of(t, configs=configs)} for t in texts]
        out(json.dumps({"file": str(path), "ms": round(ms, 2), "codes": codes}))
    return status
