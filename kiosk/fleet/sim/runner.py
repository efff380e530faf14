"""The fleet of simulated kiosks in one event loop (:func:`run_fleet`): see
:mod:`kiosk.fleet.sim`."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kiosk.errors import KioskError
from kiosk.fleet.sim.walk import MAX_KIOSKS, Activity, SimKiosk, World

if TYPE_CHECKING:  # imported where used: `kiosk sim` builds its parser on every kiosk command
    import httpx

    from kiosk.fleet.metrics import Metrics
    from kiosk.fleet.push import HeartbeatPusher


log = logging.getLogger("kiosk.fleet.sim")


MIN_INTERVAL_S: Final = 1.0


class SimFleetError(KioskError, ValueError):
    """Bad arguments to ``kiosk sim fleet``: exit status 2, the message says what to change."""

    exit_status = 2


@dataclass
class Summary:
    """What a run did; the ``now`` figures are the kiosks' states at its end."""

    kiosks: int
    interval_s: float
    seed: int
    dry_run: bool
    elapsed_s: float = 0.0
    built: int = 0  # heartbeats built (every tick of a kiosk that is on)
    sent: int = 0  # delivered to the fleet (2xx)
    failed: int = 0  # not delivered (the fleet unreachable, a timeout, not 2xx)
    held: int = 0  # built while the kiosk's link was down: never tried (they count as missed)
    checked: int = 0  # no fleet URL: signed and verified (and checked against the schema)
    invalid: int = 0  # of those, refused by the signature check or the schema (a bug)
    bytes: int = 0  # their canonical size
    pushes: int = 0  # PUTs the Pushgateway took
    push_failed: int = 0
    journeys: int = 0  # ended, at every kiosk
    skipped: int = 0  # ticks a kiosk skipped because the one before overran: the sim is behind
    cpu_s: float = 0.0  # the process' CPU while the kiosks ran
    out_of_service: int = 0  # now (silent kiosks apart)
    reasons: dict[str, int] = field(default_factory=dict)  # now: kiosks per reason label
    silent: int = 0  # now

    @property
    def cpu_ms_per_heartbeat(self) -> float:
        """CPU per kiosk per tick: the walk, the heartbeat built, signed and sent, the metrics."""
        return self.cpu_s * 1000 / self.built if self.built else 0.0

    def core_share(self, kiosks: int = 1000, interval_s: float = 60.0) -> float:
        """The share of one core that ``kiosks`` kiosks every ``interval_s`` take at that cost."""
        return self.cpu_ms_per_heartbeat / 1000 * kiosks / interval_s

    def now(self) -> str:
        why = ", ".join(f"{slug} {n}" for slug, n in sorted(self.reasons.items(), key=_by_count))
        return (
            f"out of service {self.out_of_service}"
            + (f" ({why})" if why else "")
            + (f"; silent {self.silent}")
        )

    def text(self) -> str:
        lines = [
            f"summary: {self.kiosks} kiosks for {self.elapsed_s:.0f} s, every"
            f" {self.interval_s:g} s, seed {self.seed}",
            f"  heartbeats: {self.built} built; "
            + (
                f"{self.checked} signed and checked (dry run), {self.invalid} invalid,"
                f" {self.bytes // max(1, self.checked)} bytes each"
                if self.dry_run
                else f"{self.sent} sent, {self.failed} failed"
            )
            + f"; {self.held} held by kiosks whose link was down",
            f"  pushes: {self.pushes} to the Pushgateway, {self.push_failed} failed",
            f"  journeys ended: {self.journeys}",
            f"  now: {self.now()}",
            f"  CPU: {self.cpu_s:.2f} s ({self.cpu_s / max(self.elapsed_s, 1e-9):.0%} of one"
            f" core), {self.cpu_ms_per_heartbeat:.3f} ms per heartbeat (walk, build, sign, send,"
            f" metrics); 1000 kiosks every 60 s: {self.core_share():.1%} of one core",
        ]
        if self.skipped:
            lines.append(
                f"  behind: {self.skipped} ticks skipped, the simulator could not keep up (fewer"
                " kiosks or a longer interval): some failures may be its own"
            )
        return "\n".join(lines)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


@dataclass
class _Slot:
    kiosk: SimKiosk
    public_b64: str
    pusher: HeartbeatPusher | None = None
    metrics: Metrics | None = None
    seq: int = 0
    boots: int = 0
    missed: int = 0  # a dry run's own count (a pusher counts its own)
    reasons: tuple[str, ...] = ()


class _Fleet:
    """The kiosks' tasks on one client; counts into ``summary``."""

    def __init__(
        self,
        kiosks: list[SimKiosk],
        http: httpx.AsyncClient,
        summary: Summary,
        *,
        url: str | None,
        pushgateway: str | None,
        concurrency: int,
    ) -> None:
        from kiosk.fleet import heartbeat, push
        from kiosk.fleet.metrics import Metrics, reason_slug

        self.heartbeat, self.push, self.metrics_class, self.reason_slug = (
            heartbeat,
            push,
            Metrics,
            reason_slug,
        )
        self.http, self.summary = http, summary
        self.url, self.pushgateway = url, pushgateway
        self.interval_s = summary.interval_s
        self.timeout_s = min(10.0, max(0.5, self.interval_s / 2))
        self.requests = asyncio.Semaphore(concurrency)
        self.validator = _schema_validator() if url is None else None
        self.said_invalid = False
        self.slots = [_Slot(k, k.identity.public_b64, reasons=tuple(k.reasons())) for k in kiosks]
        for slot in self.slots:
            self._boot(slot)
        self._last = (0, 0, 0, 0, 0, 0, 0)

    def _boot(self, slot: _Slot) -> None:
        """A new daemon: ``seq`` from 1, nothing missed, counters from zero."""
        k = slot.kiosk
        slot.seq, slot.boots, slot.missed = 0, k.boots, 0
        if self.url is not None:
            slot.pusher = self.push.HeartbeatPusher(
                self.http, self.url, k.identity, timeout_s=self.timeout_s
            )
        if self.pushgateway is not None:
            slot.metrics = self.metrics_class(k.kiosk_id, k.device_id, k.version)

    async def run_kiosk(self, slot: _Slot, t0: float) -> None:
        """Tick ``n`` at loop time ``t0`` + the kiosk's start + ``n`` intervals; a tick that
        overran skips the ones it covered (the walk catches up, in fleet time)."""
        loop = asyncio.get_running_loop()
        k, start, n = slot.kiosk, slot.kiosk.t, 0
        while True:
            await asyncio.sleep(max(0.0, t0 + start + n * self.interval_s - loop.time()))
            dt = start + n * self.interval_s - k.t
            await self.tick(slot, k.step(dt) if dt > 1e-9 else Activity())
            late = math.floor((loop.time() - t0 - start) / self.interval_s) + 1
            self.summary.skipped += max(0, late - n - 1)
            n = max(n + 1, late)

    async def tick(self, slot: _Slot, activity: Activity) -> None:
        k, s = slot.kiosk, self.summary
        s.journeys += len(activity.journeys)
        if k.boots != slot.boots:
            self._boot(slot)
        if k.silent == "power":
            return
        if slot.metrics is not None:
            _count(slot.metrics, activity, k.currency)
        view = k.view()
        slot.reasons = view.reasons
        slot.seq += 1
        pusher = slot.pusher
        doc = self.heartbeat.build(view, slot.seq, pusher.missed if pusher else slot.missed)
        s.built += 1
        if k.silent == "link":  # offered, never sent: missed counts it
            s.held += 1
            if pusher is not None:
                pusher.offer(doc)
            slot.missed += 1
            return
        if pusher is None:
            self._check(slot, doc)
            slot.missed = 0
        else:
            pusher.offer(doc)
            async with self.requests:
                delivered = await pusher.send()
            s.sent += delivered
            s.failed += not delivered
        if slot.metrics is not None and self.pushgateway is not None:
            missed, last = (pusher.missed, pusher.last_sent_at) if pusher else (0, None)
            slot.metrics.update(view, missed=missed, last_sent=last)
            await self._push(slot.metrics, k.kiosk_id, self.pushgateway)

    async def _push(self, metrics: Metrics, kiosk_id: str, gateway: str) -> None:
        import httpx

        try:
            async with self.requests, asyncio.timeout(self.timeout_s):
                await metrics.push(gateway, kiosk_id, self.http)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError):
            self.summary.push_failed += 1
        else:
            self.summary.pushes += 1

    def _check(self, slot: _Slot, doc: dict[str, Any]) -> None:
        """A dry run's heartbeat: signed as it would be, the signature verified, the schema."""
        body = self.heartbeat.canonical(doc)
        sign, verify = self.push.signature_header, self.push.verify
        good = verify(body, sign(slot.kiosk.identity, body), slot.public_b64)
        problem = "" if good else "its signature does not verify"
        if good and self.validator is not None:
            errors = [e.message for e in self.validator.iter_errors(doc)]
            problem = "; ".join(errors[:3])
        s = self.summary
        s.checked += 1
        s.bytes += len(body)
        if problem:
            s.invalid += 1
            if not self.said_invalid:
                log.error("sim fleet: %s: an invalid heartbeat: %s", slot.kiosk.kiosk_id, problem)
            self.said_invalid = True

    def take_stock(self) -> None:
        """The ``now`` figures of the summary."""
        s, reasons = self.summary, Counter[str]()
        s.out_of_service = s.silent = 0
        for slot in self.slots:
            if slot.kiosk.silent is not None:
                s.silent += 1
            elif slot.reasons:
                s.out_of_service += 1
                reasons.update({self.reason_slug(r) for r in slot.reasons})
        s.reasons = dict(reasons)

    def line(self, elapsed_s: float) -> str:
        """One progress line: this interval's counts, the kiosks' states now."""
        s = self.summary
        now = (s.built, s.sent, s.failed, s.held, s.pushes, s.push_failed, s.skipped)
        d = [a - b for a, b in zip(now, self._last, strict=True)]
        self._last = now
        self.take_stock()
        if s.dry_run:
            beats = f"heartbeats {d[0]} built and checked (dry run)"
        else:
            beats = f"heartbeats {d[1]} sent, {d[2]} failed"
        if d[3]:
            beats += f", {d[3]} held"
        pushes = f"; pushes {d[4]}, {d[5]} failed" if self.pushgateway else ""
        behind = f"; behind: {d[6]} ticks skipped" if d[6] else ""
        return f"+{elapsed_s:.0f}s {s.kiosks} kiosks; {beats}{pushes}; {s.now()}{behind}"


def _count(metrics: Metrics, activity: Activity, currency: str) -> None:
    """A step's journeys into the kiosk's counters (what ``Metrics.follow`` reads in a journal)."""
    for j in activity.journeys:
        metrics.journeys.labels(j.provider, j.journey, j.outcome).inc()
        for value in j.notes:
            metrics.notes_in.labels(currency, str(value)).inc()
            metrics.cash_in.labels(currency).inc(value)
        if j.paid:
            metrics.cash_out.labels(currency).inc(j.paid)
    if activity.started:
        metrics.codes.labels("started").inc(activity.started)
    if activity.refused:
        metrics.codes.labels("refused").inc(activity.refused)
    for provider, seconds in activity.requests:
        metrics.observe_request(provider, seconds)


def _schema_validator() -> Any:
    """The heartbeat's JSON Schema validator, if ``jsonschema`` is installed (it is a dev
    dependency: a dry run on a kiosk checks the signatures only)."""
    from kiosk.fleet.heartbeat import SCHEMA_PATH

    try:
        jsonschema = importlib.import_module("jsonschema")
    except ImportError:
        return None
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def check_url(url: str, what: str) -> str:
    """``url`` if it is an http(s) URL with a host; else :class:`SimFleetError`."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise SimFleetError(f"{what} {url!r}: expected http://host[:port]/path or https://...")
    return url


def check_args(n: int, interval_s: float, duration_s: float | None, concurrency: int) -> None:
    if not 1 <= n <= MAX_KIOSKS:
        raise SimFleetError(f"--kiosks {n}: expected 1 to {MAX_KIOSKS}")
    if not interval_s >= MIN_INTERVAL_S or not math.isfinite(interval_s):
        raise SimFleetError(f"--interval-s {interval_s:g}: expected at least {MIN_INTERVAL_S:g}")
    if duration_s is not None and not (duration_s > 0 and math.isfinite(duration_s)):
        raise SimFleetError(f"--duration-s {duration_s:g}: expected a positive number of seconds")
    if concurrency < 1:
        raise SimFleetError(f"--concurrency {concurrency}: expected at least 1")


def write_keys(path: Path, kiosks: list[SimKiosk], seed: int) -> None:
    """The kiosks' ids and public keys (raw Ed25519, base64: what :func:`kiosk.fleet.push.verify`
    takes), as JSON, so that a fleet side can check their signatures."""
    doc = {
        "schema": "kiosk.sim-fleet-keys/1",
        "seed": seed,
        "kiosks": [
            {"kiosk_id": k.kiosk_id, "device_id": k.device_id, "public_key": k.identity.public_b64}
            for k in kiosks
        ],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SimFleetError(f"--print-keys {path}: cannot write it ({exc.strerror})") from None


def _say(line: str) -> None:
    print(line, flush=True)


async def run_fleet(
    n: int,
    *,
    url: str | None,
    pushgateway: str | None,
    interval_s: float,
    duration_s: float | None,
    seed: int,
    concurrency: int = 50,
    keys_file: Path | None = None,
    report: Callable[[str], None] = _say,
    stop: asyncio.Event | None = None,
) -> Summary:
    """Run ``n`` kiosks in this event loop for ``duration_s`` (``None``: until ``stop`` is set);
    ``report`` gets a line every ``interval_s`` and the summary at the end. Without ``url``
    the heartbeats are checked instead of sent. Raises :class:`SimFleetError` for bad
    arguments; an unreachable fleet or Pushgateway is counted, never raised."""
    import httpx

    check_args(n, interval_s, duration_s, concurrency)
    for given, what in ((url, "--url"), (pushgateway, "--pushgateway")):
        if given is not None:
            check_url(given, what)
    world = World(seed)
    kiosks = [
        SimKiosk(i, seed, world=world, start_t=(i - 1) * interval_s / n, epoch=0.0)
        for i in range(1, n + 1)
    ]
    if keys_file is not None:
        write_keys(keys_file, kiosks, seed)
    summary = Summary(n, interval_s, seed, dry_run=url is None)
    report(
        f"kiosk sim fleet: {n} kiosks every {interval_s:g} s, seed {seed}; heartbeats "
        + (f"to {url}" if url else "checked, not sent (dry run)")
        + (f"; metrics to {pushgateway}" if pushgateway else "")
        + (f"; keys in {keys_file}" if keys_file else "")
        + (f"; for {duration_s:g} s" if duration_s else "; Ctrl-C ends")
    )
    # Sized for N: up to `concurrency` requests in flight per origin, but only about 100 ms of
    # requests kept alive (at least 4): httpcore looks at every pooled connection for every
    # request, and 100 idle ones doubled the CPU per heartbeat at 100 heartbeats/s.
    origins = max(1, (url is not None) + (pushgateway is not None))
    in_flight = min(n, concurrency)
    kept = min(in_flight, max(4, math.ceil(n / interval_s * 0.1)))
    limits = httpx.Limits(
        max_connections=in_flight * origins, max_keepalive_connections=kept * origins
    )
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10.0)) as http:
        fleet = _Fleet(
            kiosks, http, summary, url=url, pushgateway=pushgateway, concurrency=concurrency
        )
        epoch, t0, cpu0 = time.time(), loop.time(), time.process_time()
        for k in kiosks:
            k.epoch = epoch
        tasks = [asyncio.create_task(fleet.run_kiosk(slot, t0)) for slot in fleet.slots]
        tasks.append(asyncio.create_task(_progress(fleet, t0, report)))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                [stopped, *tasks], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (stopped, *tasks):
                task.cancel()
            results = await asyncio.gather(stopped, *tasks, return_exceptions=True)
        summary.cpu_s = time.process_time() - cpu0
        summary.elapsed_s = loop.time() - t0
    for result in results:  # a task that ended on its own: a bug in the walk or the runner
        if isinstance(result, Exception):
            raise result
    fleet.take_stock()
    report(summary.text())
    return summary


async def _progress(fleet: _Fleet, t0: float, report: Callable[[str], None]) -> None:
    loop, n = asyncio.get_running_loop(), 1
    while True:
        await asyncio.sleep(max(0.0, t0 + n * fleet.interval_s - loop.time()))
        report(fleet.line(loop.time() - t0))
        n += 1
