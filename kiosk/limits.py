"""Each provider's daily limits (issue 16): what its cash-outs may pay, and its cash-ins take,
in one local calendar day.

A provider's section sets ``cashout_day_max`` / ``cashin_day_max`` (minor units; 0: none) where
it has that direction. "Today" is the kiosk's local calendar day, in the system's time zone
(the one every receipt prints: :func:`kiosk.receipts.receipt_time`), from local midnight to the
next one (23 or 25 hours on the days the clocks change). The day's total is read from the
journal in one aggregate (:meth:`kiosk.journal.Journal.moved_between`): every transaction of
that provider and direction begun today that moved or may still move money (completed,
pending, owed, in progress), counting the largest of its amount due, credited and dispensed.

A cash-out whose amount would pass the limit is refused before any provider call
(:func:`kiosk.flows.cashout.prepare`); a cash-in takes at most what is left today and is
refused at once when nothing is (its journey's note cap).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from kiosk.journal import Journal, Tx
from kiosk.journeys import JOURNEYS


def day_window(now_ms: int) -> tuple[str, str]:
    """The local calendar day around ``now_ms`` (epoch milliseconds) as the journal's
    timestamps (ISO 8601 UTC, comparable as text): ``[local midnight, next local midnight)``."""
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone().date()
    start = datetime.combine(today, time()).astimezone()  # naive: read in the local zone
    end = datetime.combine(today + timedelta(days=1), time()).astimezone()
    return _stamp(start), _stamp(end)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def day_max(section: Any, direction: str) -> int:
    """A provider section's daily limit for ``direction`` (``in`` | ``out``); 0: none."""
    return int(getattr(section, f"cash{direction}_day_max", 0) or 0)


def left_today(journal: Journal, providers: Any, tx: Tx, now_ms: int) -> int | None:
    """What ``tx``'s provider may still move today in ``tx``'s direction, besides ``tx``
    itself (minor units, never below 0); ``None``: no daily limit. ``providers``: the config's
    provider sections, by name."""
    direction = JOURNEYS[tx.journey].direction
    return left(journal, providers, tx.provider, direction, tx.currency, now_ms, besides=tx.id)


def left(
    journal: Journal,
    providers: Any,
    provider: str,
    direction: str,
    currency: str,
    now_ms: int,
    *,
    besides: int | None = None,
) -> int | None:
    """What ``provider`` may still move today in ``direction`` (minor units of ``currency``,
    never below 0); ``None``: no daily limit."""
    top = day_max(providers.get(provider), direction)
    if top <= 0:
        return None
    journeys = sorted(
        j.name for j in JOURNEYS.values() if j.provider == provider and j.direction == direction
    )
    since, until = day_window(now_ms)
    moved = journal.moved_between(provider, journeys, currency, since, until, besides=besides)
    return max(0, top - moved)


def left_by_provider(
    journal: Journal, providers: Any, currency: str, now_ms: int
) -> dict[str, Any]:
    """For ``kiosk status``: each provider with a daily limit, what is left today per direction
    (``{"paysera": {"out": 170000, "in": 500000}}``, minor units of ``currency``)."""
    out: dict[str, Any] = {}
    for name in sorted(providers):
        for direction in ("out", "in"):
            got = left(journal, providers, name, direction, currency, now_ms)
            if got is not None:
                out.setdefault(name, {})[direction] = got
    return out
