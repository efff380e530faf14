"""The times of ``--since`` and ``--until``, and the journal's own form of a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from kiosk.support.errors import BundleUsageError

DEFAULT_WINDOW: Final = timedelta(hours=24)

_AGE = r"([0-9]{1,6})([mhd])"


def parse_time(text: str, option: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC when it has no offset) or an age (``90m``, ``24h``, ``7d``)."""
    m = re.fullmatch(_AGE, text.strip())
    if m is not None:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - timedelta(**{unit: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BundleUsageError(
            f"{option} {text!r}: expected an ISO 8601 time, UTC unless it has an offset"
            " (e.g. 2026-11-21, 2026-11-21T17:00, 2026-11-21T17:00:00+04:00), or an age"
            " (90m, 24h, 7d)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def journal_time(when: datetime) -> str:
    """The journal's own form (``2026-11-21T17:00:00.123Z``), which sorts as text."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
