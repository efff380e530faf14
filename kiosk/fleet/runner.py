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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk import memory
from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.fleet.view import ApprovalView, DeviceView, KioskView, ProviderView, TamperView
from kiosk.journal import AsyncJournal, Journal

log = logging.getLogger("kiosk.fleet")

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
APPROVAL_INTERVAL_S = 5.0
"""The heartbeat's interval while a transaction waits for approval (when ``fleet.interval_s``
is longer): the fleet's ``approve`` comes in a heartbeat's reply, so the customer waits
seconds for it, not a minute."""


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
    tamper: tuple[TamperView, ...] = ()
    approvals: tuple[ApprovalView, ...] = ()
    """Transactions waiting for a technician's approval (``Approvals.views``)."""


def journal_figures(j: Journal) -> dict[str, Any]:
    """The heartbeat's journal figures, read in one go on the writer thread."""
    _, notes = j.cash_since_collection()
    pending, pending_oldest = j.pending_summary()
    queued = j.outbox_rows(queued_only=True)
    owed = j.liability_totals()
    last = j.last_completed()
    return {
        "cashbox_notes": sum(notes.values()),
        "cashbox_value": sum(v * n for v, n in notes.items()),
        "pending": pending,
        "pending_oldest": pending_oldest,
        "outbox_depth": len(queued),
        "outbox_oldest": min((str(r["created_at"]) for r in queued), default=None),
        "liabilities": {code: total for code, (_, total) in owed.items()},
        "liabilities_count": sum(n for n, _ in owed.values()),
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
            p.auth_refused,
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
        tamper=facts.tamper,
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
        approvals=facts.approvals,
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


class Fleet:
    """The fleet's tasks beside the daemon: every ``fleet.interval_s`` the view is read, the
    metrics follow the journal, a heartbeat is built, signed and pushed (only the latest kept
    while the fleet is unreachable), the Pushgateway gets the metrics; the local endpoints
    answer from the latest of each. :meth:`nudge` (a transaction starts waiting for approval)
    runs the round at once instead of at the end of the interval, and while one waits the
    rounds come every :data:`APPROVAL_INTERVAL_S` (the fleet's ``approve`` rides a reply).
    ``facts``: the daemon's own state (no device I/O); ``run_command``: what an accepted fleet
    command does (its result in words)."""

    def __init__(
        self,
        config: Config,
        journal: AsyncJournal,
        facts: Callable[[], Facts],
        run_command: Callable[[dict[str, Any]], Awaitable[str]],
        *,
        capacity: int = 0,
    ) -> None:
        from kiosk import identity
        from kiosk.fleet.metrics import Metrics

        self.config, self.journal, self.facts = config, journal, facts
        self.run_command, self.capacity = run_command, capacity
        self.started_at = time.time()
        self.seq = 0
        self.me: identity.Identity | None = None
        try:
            self.me = identity.load(config.fleet.identity_dir)
            device = self.me.device_id
        except identity.IdentityError as exc:
            log.warning("fleet: %s; heartbeats are not pushed", exc)
            try:
                device = identity.device_id()
            except identity.IdentityError:
                device = "unprovisioned"
        self.device_id = device
        self.metrics = Metrics(config.kiosk_id, device, version())
        self.latest: dict[str, Any] | None = None
        self.last_view: KioskView | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.server: asyncio.AbstractServer | None = None
        self.http: Any = None
        self.pusher: Any = None
        self._nudged = asyncio.Event()
        self.approval_interval_s = APPROVAL_INTERVAL_S

    @property
    def url(self) -> str:
        return self.config.fleet.url or (self.me.fleet_url if self.me is not None else "")

    async def start(self) -> None:
        import httpx

        from kiosk.fleet import http
        from kiosk.fleet.push import HeartbeatPusher
        from kiosk.httpclient import client as http_client

        c = self.config.fleet
        self.http = http_client(httpx.Timeout(c.timeout_s), self.config.tls.pins.get("fleet"))
        if self.me is not None and self.url:
            self.pusher = HeartbeatPusher(
                self.http, self.url, self.me, timeout_s=c.timeout_s, on_commands=self._commands
            )
        await self.beat(send=False)  # the endpoints answer from the first second
        if c.port:
            self.server = await http.serve(
                c.listen,
                c.port,
                health=self.health,
                heartbeat=lambda: self.latest or {},
                metrics=self.metrics.exposition,
            )
            log.info("fleet: /healthz /heartbeat /metrics on %s:%d", c.listen, c.port)
        self.tasks.append(asyncio.create_task(self._beats(c.interval_s)))

    def nudge(self) -> None:
        """Push a heartbeat now rather than at the end of the interval (a transaction started
        waiting for approval: the fleet sees it within the round trip). Only sets a flag: the
        caller (a journey) never waits on the fleet; nudges while a round runs make one more
        round right after it."""
        self._nudged.set()

    async def _beats(self, interval_s: float) -> None:
        """:meth:`beat` every ``interval_s`` (every :attr:`approval_interval_s` while an
        approval waits), or at once when nudged; an error is logged (once per kind) and the
        loop goes on, as :func:`every`."""
        said = ""
        while True:
            self._nudged.clear()  # a nudge from here on is seen by this round or the next
            try:
                await self.beat()
                said = ""
            except Exception as exc:  # a fleet task must survive everything but cancellation
                if type(exc).__name__ != said:
                    log.warning("fleet: heartbeat failed: %s: %s", type(exc).__name__, exc)
                    said = type(exc).__name__
            waiting = self.last_view is not None and bool(self.last_view.approvals)
            wait_s = min(interval_s, self.approval_interval_s) if waiting else interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), wait_s)

    async def stop(self) -> None:
        await cancel_all(self.tasks)
        if self.server is not None:
            self.server.close()
        if self.http is not None:
            await self.http.aclose()

    def health(self) -> tuple[bool, list[str]]:
        facts = self.facts()
        return (not facts.reasons, list(facts.reasons))

    async def beat(self, send: bool = True) -> None:
        """One round: the view, the metrics, the heartbeat; pushed unless ``send`` is off."""
        from kiosk.fleet import heartbeat

        current = await current_view(
            self.config,
            self.journal,
            device_id=self.device_id,
            started_at=self.started_at,
            facts=self.facts(),
            capacity=self.capacity,
        )
        self.last_view = current
        await self.journal.call(self.metrics.follow, self.config.journal_path)  # no extra thread
        missed = self.pusher.missed if self.pusher is not None else 0
        last = self.pusher.last_sent_at if self.pusher is not None else None
        self.metrics.update(current, missed=missed, last_sent=last)
        self.seq += 1
        self.latest = heartbeat.build(current, self.seq, missed)
        if not send:
            return
        if self.pusher is not None:
            self.pusher.offer(self.latest)
            await self.pusher.send()
        if self.config.fleet.pushgateway_url:
            await self.metrics.push(self.config.fleet.pushgateway_url, self.config.kiosk_id,
                                    self.http)  # fmt: skip
        memory.trim()  # a round's buffers (and the first request's imports) back to the system

    async def _commands(self, commands: list[dict[str, Any]]) -> None:
        from kiosk.fleet.commands import CommandGate, handle, load_public_key

        key_file, key = self.config.fleet.public_key_file, None
        if key_file is not None:
            try:
                key = load_public_key(key_file)
            except KioskError as exc:  # every command is refused (and journaled so)
                log.error("fleet: %s", exc)
        gate = CommandGate(key, self.config.kiosk_id, self.config.state_dir / "fleet-commands.json")
        await handle(commands, gate, self.run_command, self.journal)
