"""Tamper latches (issue 16): what keeps the kiosk out of service after the device recovered.

A validator fault passes when the validator says so (a jam cleared, the cashbox back), except
two that mean someone may have been at the cash:

- ``fraud``: the validator detected a fraud attempt (a note on a string, a light pattern);
- ``cashbox_removed``: the cashbox came out while the kiosk was not in service mode (a
  collection is done in service mode: the door open first).

Each *latches*: the kiosk stays out of service, whatever the validator reports next, until a
technician clears it, on site or remotely:

- on the panel: open the door (service mode), inspect the validator and the cashbox, close the
  door and press green. Ending service mode clears the latches (``by: panel``);
- through the daemon: ``kiosk tamper clear --technician NAME`` (the admin socket's
  ``tamper_clear``), e.g. after looking at the store's CCTV with the fleet's operator.

A latch that trips while its condition still stands (the validator still reports the fault)
keeps the kiosk out of service for the fault as well; clearing the latch does not clear the
fault. Journal: ``tamper.latched`` ``{"kind", "detail", "latched"}`` when one trips, and
``tamper.cleared`` ``{"kinds", "by", "latched": {}}`` when a technician clears them; each
carries the whole set (``latched``: kind -> ``{"at", "detail"}``), so a restart reads the
latest of the two and holds the same latches (:meth:`Tamper.restore`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from kiosk.fleet.view import TamperView
from kiosk.journal import AsyncJournal, now_iso

log = logging.getLogger("kiosk.tamper")

WORDS: Final = {
    "fraud": "the bill validator detected a fraud attempt",
    "cashbox_removed": "the cashbox was removed outside service mode",
}
"""The latched kinds (validator fault kinds), in words."""

CLEAR_HOW: Final = "inspect it, then open and close the door and press green, or kiosk tamper clear"


class Tamper:
    """The latches in force: kind -> ``{"at": ISO 8601 UTC, "detail": the device's words}``.

    ``service_mode``: whether a technician has the kiosk in service mode now (the daemon's;
    a cashbox taken out then is a collection, not a tamper)."""

    def __init__(self, journal: AsyncJournal) -> None:
        self.journal = journal
        self.latched: dict[str, dict[str, str]] = {}
        self.service_mode: Callable[[], bool] = lambda: False

    async def restore(self) -> None:
        """The latches the journal holds (a restart keeps them)."""
        j = self.journal
        latched = await j.call(j.sync.last_event, "tamper.latched")
        cleared = await j.call(j.sync.last_event, "tamper.cleared")
        last = max((e for e in (latched, cleared) if e is not None), key=_seq, default=None)
        if last is not None:
            held = last["data"].get("latched") or {}
            self.latched = {str(k): dict(v) for k, v in held.items() if k in WORDS}
        if self.latched:
            log.warning("tamper: still latched from before the restart: %s", self.describe())

    async def seen(self, kind: str, detail: str = "", tx_id: int | None = None) -> bool:
        """A validator fault of ``kind`` was reported; True if it latched (now or before)."""
        if kind not in WORDS:
            return False
        if kind == "cashbox_removed" and self.service_mode():
            return False  # a collection: the technician opened the door first
        if kind in self.latched:
            return True
        self.latched[kind] = {"at": now_iso(), "detail": detail}
        log.error("tamper: %s: out of service until a technician clears it", WORDS[kind])
        j = self.journal
        data: dict[str, Any] = {"kind": kind, "detail": detail, "latched": self.latched}
        await j.call(j.sync.log, "tamper.latched", data, tx_id)
        return True

    async def clear(self, by: str) -> list[str]:
        """Lift every latch (a technician ``by``); the kinds lifted (none: nothing journaled)."""
        kinds = sorted(self.latched)
        if not kinds:
            return []
        self.latched = {}
        j = self.journal
        await j.call(j.sync.log, "tamper.cleared", {"kinds": kinds, "by": by, "latched": {}})
        log.warning("tamper: cleared by %s (%s)", by, ", ".join(kinds))
        return kinds

    def reasons(self) -> list[str]:
        """Each latch as a reason the kiosk is out of service, in words."""
        return [
            f"tamper: {WORDS[kind]} at {held.get('at', '?')}: {CLEAR_HOW}"
            for kind, held in sorted(self.latched.items())
        ]

    def views(self) -> tuple[TamperView, ...]:
        """The latches for the fleet (heartbeat, metrics)."""
        return tuple(
            TamperView(kind, held.get("at", ""), held.get("detail", ""))
            for kind, held in sorted(self.latched.items())
        )

    def describe(self) -> str:
        return ", ".join(f"{k} at {v.get('at', '?')}" for k, v in sorted(self.latched.items()))


def _seq(event: dict[str, Any]) -> int:
    return int(event["seq"])
