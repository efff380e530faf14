"""Prometheus metrics of one kiosk: gauges from a :class:`~kiosk.fleet.view.KioskView`,
counters from the journal's new events, a histogram of provider request times.

Wiring (the daemon)::

    metrics = Metrics(cfg.kiosk_id, identity.device_id, kiosk.__version__)
    metrics.follow(journal_path)              # once at start-up: counters count from here
    http = httpx.AsyncClient(event_hooks=metrics.httpx_hooks("payby"), timeout=...)
    ...every heartbeat interval:
    metrics.update(view, missed=pusher.missed, last_sent=pusher.last_sent_at)
    metrics.follow(journal_path)              # new events since the last call
    await metrics.push(cfg.fleet.pushgateway_url, cfg.kiosk_id, fleet_http)

Everything lives in the :class:`Metrics`' own registry (never prometheus-client's global one).
The gauges are rebuilt whole by each :meth:`Metrics.update`, so a label that is no longer
current (a reason that went away, a fault cleared) is simply not there at the next scrape, and
a value that is unknown (``cpu_temperature_c`` off a Pi) is absent rather than 0.

Units: seconds, bytes, degrees Celsius; amounts in minor units of their ``currency`` label.
Counters count from the daemon's start (Prometheus' ``rate()``/``increase()`` handle resets).
What they count, from the journal: a journey when it enters a terminal state; a note when its
stack is ``done`` (the technician's refills too: the counters follow the cash through the
machine); cash out when a payout is ``done`` or ``failed`` (a short payout paid part of it:
its ``dispensed``); a code ``started`` when a provider's journey begins (the technician's
journeys start from no code), ``refused`` at each ``code.refused``. ``follow`` is one short
read-only query (about 1 ms, 7 ms for 100 new journeys here).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from kiosk.fleet.view import DeviceView, KioskView
from kiosk.journal import read_rows
from kiosk.journeys import TERMINAL

PUSH_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""What :func:`prometheus_client.generate_latest` writes (the classic text format)."""

REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)
"""Seconds: a provider answers in tens of milliseconds on a good link, its timeouts are 30 s."""

REASON_SLUGS: Final[tuple[tuple[str, str], ...]] = (
    # (keyword in the reason's words, lower case; the first that matches wins) -> slug
    ("tamper", "tamper"),
    ("door open", "door_open"),
    ("service mode", "service_mode"),
    ("provider", "providers_down"),
    ("printer", "printer"),
    ("paper", "printer"),
    ("validator does not answer", "validator_down"),
    ("validator", "validator_fault"),
    ("cashbox", "validator_fault"),
)
"""The ``reason`` label of ``kiosk_out_of_service`` from the daemon's words
(``Daemon.reasons``); anything else is ``other``."""

VALIDATOR_FAULTS: Final = ("jam", "fraud", "cashbox_full", "cashbox_removed", "failure")
PAPER: Final = {"ok": 0, "near_end": 1, "out": 2}

GAUGES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "kiosk_info": ("The kiosk's identity (always 1)", ("kiosk", "device_id", "version")),
    "kiosk_in_service": ("1 while the kiosk serves customers (idle or busy)", ()),
    "kiosk_out_of_service": ("1 per current reason the kiosk is out of service", ("reason",)),
    "kiosk_device_up": ("1 while the device works (door: closed)", ("device",)),
    "kiosk_validator_fault": ("1 while the bill validator reports this fault", ("kind",)),
    "kiosk_tamper": ("1 while this tamper latch holds (until a technician clears it)", ("kind",)),
    "kiosk_printer_paper": ("Printer paper: 0 ok, 1 near end, 2 out", ()),
    "kiosk_cashbox_notes": ("Notes in the cashbox since the last collection", ()),
    "kiosk_cashbox_capacity_notes": ("Notes the cashbox holds when full (0: unknown)", ()),
    "kiosk_cashbox_value_minor": ("Value of the cashbox's notes, minor units", ("currency",)),
    "kiosk_recycler_notes": ("Notes held by the recycler per denomination", ("denomination",)),
    "kiosk_recycler_value_minor": ("Value held by the recycler, minor units", ("currency",)),
    "kiosk_pending_transactions": ("Transactions pending at a provider", ()),
    "kiosk_pending_oldest_seconds": ("Age of the oldest pending transaction (0: none)", ()),
    "kiosk_approvals_waiting": ("Transactions waiting for a technician's approval", ()),
    "kiosk_approval_oldest_wait_seconds": ("How long the oldest approval has waited (0: none)", ()),
    "kiosk_outbox_depth": ("Provider calls queued in the outbox", ()),
    "kiosk_outbox_oldest_seconds": ("Age of the oldest queued provider call (0: none)", ()),
    "kiosk_liabilities_open": ("Open liabilities to customers", ()),
    "kiosk_liabilities_open_minor": ("Open liabilities to customers, minor units", ("currency",)),
    "kiosk_provider_up": ("1 while the provider answers", ("provider",)),
    "kiosk_provider_auth_refused": (
        "1 while the provider refuses the kiosk's credentials (its journeys are off)",
        ("provider",),
    ),
    "kiosk_provider_clock_offset_seconds": ("Our clock minus the provider's", ("provider",)),
    "kiosk_heartbeats_missed": ("Heartbeats not delivered since the last that was", ()),
    "kiosk_heartbeat_last_sent_timestamp_seconds": ("When a heartbeat was last delivered", ()),
    "kiosk_disk_free_bytes": ("Free space on the state directory's disk", ()),
    "kiosk_cpu_temperature_celsius": ("CPU temperature (absent off a Pi)", ()),
    "kiosk_uptime_seconds": ("Seconds since the daemon started", ()),
}

_PLAIN_LABEL = re.compile(r"[A-Za-z0-9._~-]+")
_START = "kiosk_metrics_start"  # request.extensions key of the request hook's start time
_FOLLOWED = ("begin", "code.refused", "stack.done", "payout.done", "payout.failed")
_TERMINAL = tuple(sorted(TERMINAL))
_FOLLOW_SQL: Final = (
    "SELECT e.seq, e.kind, e.to_state, e.data, t.journey, t.provider, t.currency"  # noqa: S608
    " FROM events e LEFT JOIN transactions t ON t.id = e.tx_id WHERE e.seq > ?"
    f" AND (e.kind IN ({','.join('?' * len(_FOLLOWED))}) OR (e.kind = 'transition'"
    f" AND e.to_state IN ({','.join('?' * len(_TERMINAL))})))"
    " UNION ALL SELECT COALESCE(MAX(seq), 0), NULL, NULL, NULL, NULL, NULL, NULL FROM events"
    " ORDER BY 1"
)
"""The events after a seq that move a counter, and one last row whose kind is NULL: the
journal's last seq, read in the same snapshot (no row at all: the journal could not be read).
Kinds and states are parameters."""
_NEVER: Final = 2**62  # a seq after every event: the first call reads only where the journal ends


def reason_slug(words: str) -> str:
    """The ``reason`` label for a reason in words (:data:`REASON_SLUGS`)."""
    text = words.lower()
    return next((slug for key, slug in REASON_SLUGS if key in text), "other")


class _Gauges:
    """A collector serving the families built by the last :meth:`Metrics.update` (replaced
    whole, so a scrape from another thread sees one update or the next, never half)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(n, doc, labels=labels) for n, (doc, labels) in GAUGES.items()]

    def collect(self) -> list[Metric]:
        return self.families


class _Builder:
    def __init__(self) -> None:
        self.families = {
            name: GaugeMetricFamily(name, doc, labels=labels)
            for name, (doc, labels) in GAUGES.items()
        }

    def set(self, name: str, value: float, *labels: str) -> None:
        self.families[name].add_metric(list(labels), float(value))

    def built(self) -> list[Metric]:
        return [f for f in self.families.values() if f.samples]


class Metrics:
    """The kiosk's metrics in their own registry. ``update`` and ``follow`` are called from
    the daemon's loop; ``exposition`` may be called from any thread."""

    def __init__(self, kiosk_id: str, device_id: str, version: str) -> None:
        self.kiosk_id, self.device_id, self.version = kiosk_id, device_id, version
        self.registry = CollectorRegistry(auto_describe=True)
        self._gauges = _Gauges()
        self._gauges.families = self._identity().built()
        self.registry.register(self._gauges)
        r = self.registry
        self.journeys = Counter(
            "kiosk_journeys_total",
            "Journeys ended, by terminal state",
            ["provider", "journey", "outcome"],
            registry=r,
        )
        self.notes_in = Counter(
            "kiosk_notes_in_total",
            "Notes stacked, by value (minor units)",
            ["currency", "denomination"],
            registry=r,
        )
        self.cash_in = Counter(
            "kiosk_cash_in_minor_total", "Cash stacked, minor units", ["currency"], registry=r
        )
        self.cash_out = Counter(
            "kiosk_cash_out_minor_total", "Cash paid out, minor units", ["currency"], registry=r
        )
        self.codes = Counter(
            "kiosk_codes_total",
            "Codes scanned: started a journey or refused",
            ["result"],
            registry=r,
        )
        self.requests = Histogram(
            "kiosk_provider_request_seconds",
            "Provider HTTP requests, from sending to the reply's headers",
            ["provider"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self._seq: int | None = None  # the last journal event followed

    # --- gauges ---------------------------------------------------------------------------------

    def _identity(self) -> _Builder:
        b = _Builder()
        b.set("kiosk_info", 1, self.kiosk_id, self.device_id, self.version)
        return b

    def update(self, view: KioskView, *, missed: int = 0, last_sent: float | None = None) -> None:
        """Set every gauge from ``view``; ``missed``: heartbeats not delivered since the last
        one that was; ``last_sent``: time.time() of that one (None: none yet)."""
        b = self._identity()
        b.set("kiosk_in_service", view.state in ("in_service", "busy"))
        for slug in sorted({reason_slug(r) for r in view.reasons}):
            b.set("kiosk_out_of_service", 1, slug)
        for device in view.devices:
            _device(b, device, view.currency)
        for kind in sorted({t.kind for t in view.tamper}):
            b.set("kiosk_tamper", 1, kind)
        b.set("kiosk_cashbox_notes", view.cashbox_notes)
        b.set("kiosk_cashbox_capacity_notes", view.cashbox_capacity)
        b.set("kiosk_cashbox_value_minor", view.cashbox_value, view.currency)
        b.set("kiosk_pending_transactions", view.pending)
        b.set("kiosk_pending_oldest_seconds", view.pending_oldest_s)
        b.set("kiosk_approvals_waiting", len(view.approvals))
        oldest = view.approvals[0] if view.approvals else None
        waited = max(0.0, view.now - oldest.since) if oldest is not None else 0.0
        b.set("kiosk_approval_oldest_wait_seconds", waited)
        b.set("kiosk_outbox_depth", view.outbox_depth)
        b.set("kiosk_outbox_oldest_seconds", view.outbox_oldest_s)
        b.set("kiosk_liabilities_open", view.liabilities_count)
        for currency, amount in sorted(view.liabilities.items()):
            b.set("kiosk_liabilities_open_minor", amount, currency)
        for p in view.providers:
            b.set("kiosk_provider_up", p.reachable, p.name)
            b.set("kiosk_provider_auth_refused", p.auth_refused, p.name)
            if p.clock_offset_s is not None:
                b.set("kiosk_provider_clock_offset_seconds", p.clock_offset_s, p.name)
        b.set("kiosk_heartbeats_missed", missed)
        if last_sent is not None:
            b.set("kiosk_heartbeat_last_sent_timestamp_seconds", last_sent)
        b.set("kiosk_disk_free_bytes", view.disk_free_bytes)
        if view.cpu_temperature_c is not None:
            b.set("kiosk_cpu_temperature_celsius", view.cpu_temperature_c)
        b.set("kiosk_uptime_seconds", max(0.0, view.now - view.started_at))
        self._gauges.families = b.built()

    # --- counters from the journal --------------------------------------------------------------

    def follow(self, journal_path: Path) -> int:
        """Count the journal's events written since the last call (read-only, one snapshot).
        The first call only notes where the journal ends: call it once at start-up, before
        recovery. A journal that cannot be read now is read at the next call, from where the
        last call ended. Returns the number of events counted."""
        since = _NEVER if self._seq is None else self._seq
        rows = read_rows(journal_path, _FOLLOW_SQL, [since, *_FOLLOWED, *_TERMINAL])
        if not rows:  # not there yet (counted from 0 once it is), or not readable now
            if self._seq is None and not journal_path.exists():
                self._seq = 0
            return 0
        top = next(int(r[0]) for r in rows if r[1] is None)  # the one row without a kind
        found = [r for r in rows if r[1] is not None]
        if self._seq is None or top < self._seq:  # first call, or a journal started afresh
            self._seq = top
            return 0
        events = [
            _Event(r[1], r[2] or "", json.loads(r[3] or "{}"), r[4] or "", r[5] or "", r[6] or "")
            for r in found
        ]
        amounts = _effect_amounts(journal_path, events)
        for event in events:
            self._count(event, amounts)
        self._seq = top
        return len(events)

    def _count(self, e: _Event, amounts: dict[int, int]) -> None:
        if e.kind == "transition":
            self.journeys.labels(e.provider, e.journey, e.to_state).inc()
        elif e.kind == "begin":
            if e.provider != "none":  # the technician's journeys start from no code
                self.codes.labels("started").inc()
        elif e.kind == "code.refused":
            self.codes.labels("refused").inc()
        elif e.kind == "stack.done":
            value = int(e.data.get("credit") or amounts.get(e.effect, 0))
            if value > 0:
                self.notes_in.labels(e.currency, str(value)).inc()
                self.cash_in.labels(e.currency).inc(value)
        else:  # payout.done | payout.failed (a short payout paid part of its amount)
            paid = e.data.get("dispensed")
            if paid is None and e.kind == "payout.done":
                paid = amounts.get(e.effect, 0)
            if isinstance(paid, int) and paid > 0:
                self.cash_out.labels(e.currency).inc(paid)

    # --- provider requests ----------------------------------------------------------------------

    def observe_request(self, provider: str, seconds: float) -> None:
        self.requests.labels(provider).observe(max(0.0, seconds))

    def httpx_hooks(self, provider: str) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
        """``event_hooks`` for ``provider``'s ``httpx.AsyncClient``: each request (each hop of
        a redirect) is timed from sending to its reply's headers. A request that gets no reply
        (connect error, timeout) is not timed: ``kiosk_provider_up`` shows it."""

        async def on_request(request: httpx.Request) -> None:
            request.extensions[_START] = time.perf_counter()

        async def on_response(response: httpx.Response) -> None:
            start = response.request.extensions.get(_START)
            if isinstance(start, float):
                self.observe_request(provider, time.perf_counter() - start)

        return {"request": [on_request], "response": [on_response]}

    # --- exposition and push --------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format (version 0.0.4) of every metric."""
        return generate_latest(self.registry)

    async def push(self, gateway_url: str, kiosk_id: str, http: httpx.AsyncClient) -> None:
        """PUT the exposition to a Pushgateway, grouped by ``job="kiosk", kiosk=<id>``: the PUT
        replaces the whole group, so a series gone here is gone there. The Pushgateway stamps
        ``push_time_seconds``: a kiosk that stops pushing shows by its age. The request runs on
        ``http`` with that client's timeouts. Raises ``httpx.HTTPError`` (not delivered, or a
        status other than 2xx)."""
        url = f"{gateway_url.rstrip('/')}/metrics/job/kiosk/{_group_label('kiosk', kiosk_id)}"
        response = await http.put(
            url, content=self.exposition(), headers={"Content-Type": PUSH_CONTENT_TYPE}
        )
        response.raise_for_status()


def scrape_cpu_ms(metrics: Metrics, runs: int) -> float:
    """Mean CPU time (milliseconds of ``time.process_time``) of one ``metrics.exposition()``
    (``kiosk bench heartbeat``)."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    start = time.process_time()
    for _ in range(runs):
        metrics.exposition()
    return (time.process_time() - start) * 1000 / runs


def _device(b: _Builder, device: DeviceView, currency: str) -> None:
    detail = device.detail
    up = device.ok and not (device.name == "door" and device.status == "open")
    b.set("kiosk_device_up", up, device.name)
    if device.name == "validator":
        fault = detail.get("fault")
        if fault in VALIDATOR_FAULTS:
            b.set("kiosk_validator_fault", 1, str(fault))
    elif device.name == "printer":
        paper = detail.get("paper")
        if isinstance(paper, str) and paper in PAPER:
            b.set("kiosk_printer_paper", PAPER[paper])
    elif device.name == "recycler":
        levels = detail.get("levels")
        if isinstance(levels, dict):
            held = {int(v): n for v, n in levels.items() if str(v).isdigit() and isinstance(n, int)}
            for denomination, count in sorted(held.items()):
                b.set("kiosk_recycler_notes", count, str(denomination))
        value = detail.get("value")
        if isinstance(value, int):
            b.set("kiosk_recycler_value_minor", value, str(detail.get("currency") or currency))


@dataclass(frozen=True, slots=True)
class _Event:
    """A journal event that moves a counter, with its transaction's columns."""

    kind: str
    to_state: str
    data: dict[str, Any]
    journey: str
    provider: str
    currency: str

    @property
    def effect(self) -> int:
        effect = self.data.get("effect")
        return effect if isinstance(effect, int) else 0


def _effect_amounts(path: Path, events: Iterable[_Event]) -> dict[int, int]:
    """The intended amounts of the effects whose events carry no amount of their own (a note
    credited without its value, a payout done without ``dispensed`` in its outcome)."""
    wanted = sorted(
        {
            e.effect
            for e in events
            if (e.kind == "stack.done" and not e.data.get("credit"))
            or (e.kind == "payout.done" and e.data.get("dispensed") is None)
        }
        - {0}
    )
    if not wanted:
        return {}
    rows = read_rows(
        path,
        f"SELECT id, amount FROM effects WHERE id IN ({','.join('?' * len(wanted))})",  # noqa: S608
        wanted,
    )
    return {int(r[0]): int(r[1] or 0) for r in rows}


def _group_label(name: str, value: str) -> str:
    """A Pushgateway grouping-key path segment; base64 (URL-safe) when the value is not
    plain, as the Pushgateway's API specifies."""
    if _PLAIN_LABEL.fullmatch(value) and value.strip("."):  # "." and ".." are path steps
        return f"{name}/{value}"
    encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
    return f"{name}@base64/{encoded}"
