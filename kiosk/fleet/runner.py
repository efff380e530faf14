"""The daemon's side of the fleet: its state as a :class:`KioskView` (:func:`view`), and the
tasks that run beside the journeys (:class:`Fleet`): heartbeats pushed and signed, the
Pushgateway, the local endpoints, the metrics following the journal. None of them ever waits
on a device or holds the journey lock: a push that hangs delays nobody."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.config import Config
from kiosk.fleet.view import DeviceView, KioskView, ProviderView
from kiosk.journal import AsyncJournal, Journal, Tx

log = logging.getLogger("kiosk.fleet")

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("kiosk")
    except PackageNotFoundError:
        return "0+unknown"


def cpu_temperature(path: Path = THERMAL) -> float | None:
    try:
        return int(path.read_text().strip()) / 1000
    except (OSError, ValueError):
        return None


@dataclass
class Facts:
    """What the daemon knows that the journal does not: filled by the daemon as it goes."""

    state: str = "in_service"
    reasons: tuple[str, ...] = ()
    devices: tuple[DeviceView, ...] = ()
    providers: tuple[ProviderView, ...] = ()
    last_success: dict[str, str] = field(default_factory=dict)


def journal_figures(j: Journal) -> dict[str, Any]:
    """The heartbeat's journal figures, read in one go on the writer thread."""
    _, notes = j.cash_since_collection()
    open_txs: list[Tx] = j.transactions(open_only=True, limit=10_000)
    pending = [t for t in open_txs if t.state == "pending"]
    queued = j.outbox_rows(queued_only=True)
    owed = j.liabilities()
    totals: dict[str, int] = {}
    for r in owed:
        totals[r["currency"]] = totals.get(r["currency"], 0) + int(r["amount"])
    last = j.last_completed()
    return {
        "cashbox_notes": sum(notes.values()),
        "cashbox_value": sum(v * n for v, n in notes.items()),
        "pending": len(pending),
        "pending_oldest": min((t.updated_at for t in pending), default=None),
        "outbox_depth": len(queued),
        "outbox_oldest": min((str(r["created_at"]) for r in queued), default=None),
        "liabilities": totals,
        "liabilities_count": len(owed),
        "last_success": last,
    }


def _age_s(iso: str | None, now: float) -> float:
    if not iso:
        return 0.0
    from datetime import datetime

    try:
        return max(0.0, now - datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return 0.0


def view(
    config: Config,
    *,
    device_id: str,
    started_at: float,
    facts: Facts,
    figures: Mapping[str, Any],
    capacity: int,
) -> KioskView:
    """The daemon's state as a :class:`KioskView` (``figures``: :func:`journal_figures`)."""
    now = time.time()
    try:
        free = shutil.disk_usage(config.state_dir).free
    except OSError:
        free = 0
    providers = tuple(
        ProviderView(
            p.name,
            p.reachable,
            p.for_s,
            p.clock_offset_s,
            figures["last_success"].get(p.name),
        )
        for p in facts.providers
    )
    return KioskView(
        kiosk_id=config.kiosk_id,
        device_id=device_id,
        version=version(),
        started_at=started_at,
        now=now,
        state=facts.state,
        reasons=facts.reasons,
        devices=facts.devices,
        providers=providers,
        currency=config.currency.code,
        cashbox_notes=int(figures["cashbox_notes"]),
        cashbox_value=int(figures["cashbox_value"]),
        cashbox_capacity=capacity,
        pending=int(figures["pending"]),
        pending_oldest_s=_age_s(figures["pending_oldest"], now),
        outbox_depth=int(figures["outbox_depth"]),
        outbox_oldest_s=_age_s(figures["outbox_oldest"], now),
        liabilities=dict(figures["liabilities"]),
        liabilities_count=int(figures["liabilities_count"]),
        disk_free_bytes=free,
        cpu_temperature_c=cpu_temperature(),
    )


async def current_view(
    config: Config, journal: AsyncJournal, *, device_id: str, started_at: float, facts: Facts,
    capacity: int,
) -> KioskView:  # fmt: skip
    figures = await journal.call(journal_figures, journal.sync)
    return view(
        config,
        device_id=device_id,
        started_at=started_at,
        facts=facts,
        figures=figures,
        capacity=capacity,
    )


async def every(interval_s: float, step: Callable[[], Awaitable[None]], what: str) -> None:
    """``step`` every ``interval_s`` for ever; an error is logged (once per kind) and the loop
    goes on: the fleet's tasks never stop the kiosk."""
    said = ""
    while True:
        try:
            await step()
            said = ""
        except Exception as exc:  # a fleet task must survive everything but cancellation
            if type(exc).__name__ != said:
                log.warning("fleet: %s failed: %s: %s", what, type(exc).__name__, exc)
                said = type(exc).__name__
        await asyncio.sleep(interval_s)


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
