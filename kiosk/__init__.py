"""Kiosk firmware."""

import sys

# httpx imports its optional command line (click, pygments) whenever they are installed, as
# sqlite-utils and the dev tools install them: several megabytes of a Pi's memory in every
# kiosk process for a CLI the kiosk never runs. Mapped to None, that import fails cleanly and
# httpx falls back to its stub (kiosk bench footprint measures the difference).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
