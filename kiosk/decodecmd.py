"""``kiosk decode FILE...``: what the kiosk reads in each image, one JSON line per file.

``{"file": ..., "ms": ..., "codes": [{"text": ..., "kind": ...}]}`` where ``ms`` is the decode
time alone and ``kind`` the router's classification (``unknown`` for anything it refuses), or
``{"file": ..., "error": ...}`` for a file that cannot be read. Exit status 1 if any file had an
error. For a technician with a photo of a code that "does not scan".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def decode_files(
    paths: Sequence[Path],
    *,
    decoder: str = "auto",
    configs: Mapping[str, Any] | None = None,
    out: Callable[[str], None] = print,
) -> int:
    from PIL import Image, UnidentifiedImageError

    from drivers.reader.decoders import make_decoder
    from kiosk.router import kind_of

    dec = make_decoder(decoder)
    status = 0
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                gray = image.convert("L")
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            out(json.dumps({"file": str(path), "error": f"not a readable image: {exc}"}))
            status = 1
            continue
        started = time.perf_counter()
        texts = dec.decode(gray)
        ms = (time.perf_counter() - started) * 1000
        codes = [{"text": t, "kind": kind_of(t, configs=configs)} for t in texts]
        out(json.dumps({"file": str(path), "ms": round(ms, 2), "codes": codes}))
    return status
