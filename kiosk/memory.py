"""Hand memory the daemon freed back to the system (glibc's ``malloc_trim``).

Python frees what an import or a burst of work used, but glibc keeps the pages for later, so
the resident size stays at the high-water mark: the first HTTP request alone (httpx loading
anyio) leaves several megabytes behind. A Pi Zero 2 W has 512 MB for everything; the daemon
trims after start-up and on each idle tick (a millisecond). Elsewhere (musl, macOS) nothing
happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def trim() -> bool:
    """Collect the garbage cycles (an import's leftovers), then return the free heap pages to
    the system; True when glibc did. A few milliseconds: between customers only."""
    gc.collect()
    fn = _malloc_trim()
    return bool(fn is not None and fn(0))
