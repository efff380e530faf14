"""``kiosk sim fleet``: many simulated kiosks in one asyncio process, each pushing signed
heartbeats (and its metrics to a Pushgateway) from a seeded random walk of its state, to test a
fleet side at scale on one machine. No daemon, no devices, no journal: a :class:`SimKiosk` is
only the :class:`~kiosk.fleet.view.KioskView` a real kiosk would build, walked in time.

Wiring::

    world = World(seed)                          # provider outages every kiosk sees at once
    k = SimKiosk(1, seed, world=world)           # "SIM-00001", its own fresh Ed25519 key
    activity = k.step(60.0)                      # 60 s of customers and faults
    k.view(), k.faults(), k.silent               # what it would send; what is wrong; is it mute

    summary = await run_fleet(1000, url="https://fleet.example/hb", pushgateway=None,
                              interval_s=60, duration_s=600, seed=1)

The walk runs in *fleet time*: seconds since the fleet started (``view().now`` is ``epoch`` plus
that). It depends on the seed, the kiosk's number and the steps' lengths only, never on the wall
clock or the network: the same seed gives the same kiosks in the same states. A step longer
than :data:`MAX_STEP_S` is walked in parts of at most that.

What a kiosk does (rates per kiosk, in :data:`RATES`' words): customers come (3-25 an hour;
journeys of its providers complete, or end refused, cancelled, owed; a few stay pending at the
provider; the outbox queues calls and drains them); the cashbox fills (cash-in); the recycler
drains (cash-out) and is refilled; the paper roll runs near its end then out; notes jam; the
cashbox fills up; a provider stops answering for a while (the kiosk's link, or the provider
itself: then at every kiosk at once); the clock drifts until NTP catches it; liabilities open
(a short payout) and are settled hours later; the kiosk goes silent (its link, or its power:
it comes back rebooted, ``seq`` and uptime from zero). A technician comes some minutes after
a fault that needs one (a jam, paper out, a full cashbox), hours after one that can wait, and
now and then for routine service: the door opens (service mode), everything is fixed, the door
closes, and the kiosk waits for the green button. Reasons are the daemon's words.

The runner (:func:`run_fleet`): one ``httpx.AsyncClient`` for all, each kiosk its own
:class:`~kiosk.fleet.push.HeartbeatPusher` (signed with its own key) and, with a Pushgateway,
its own :class:`~kiosk.fleet.metrics.Metrics` (counters from its walk's journeys); at most
``concurrency`` requests in flight; kiosks start spread over the first interval. Without a
fleet URL each heartbeat is still built, signed and checked (its signature, and the JSON Schema
when ``jsonschema`` is installed): a dry run. The fleet sees many kiosks on few connections.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import hashlib
import importlib
import json
import logging
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kiosk.errors import KioskError
from kiosk.fleet.view import DeviceView, KioskView, ProviderView

if TYPE_CHECKING:  # imported where used: `kiosk sim` builds its parser on every kiosk command
    import httpx

    from kiosk.fleet.metrics import Metrics
    from kiosk.fleet.push import HeartbeatPusher
    from kiosk.identity import Identity

log = logging.getLogger("kiosk.fleet.sim")

MIN: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0
MAX_STEP_S: Final = 60.0
MAX_KIOSKS: Final = 99_999

# The daemon's words (kiosk.daemon: Daemon.reasons, FAULT_WORDS); a test checks they still are.
DOOR_OPEN: Final = "door open (service mode)"
SERVICE_WAIT: Final = "service mode: the door is closed, press the green button to end it"
PAPER_OUT: Final = "printer: paper out"
FAULT_WORDS: Final = {
    "jam": "a note is jammed in the bill validator: open it and clear the note path",
    "cashbox_full": "the cashbox is full: empty it (kiosk cash collect)",
}


def no_provider(down: list[str]) -> str:
    return "no payment provider answers (" + ", ".join(down) + ")"


JOURNEYS: Final[dict[str, tuple[str, ...]]] = {
    "payby": ("payby_cashin", "payby_cashout"),
    "paysera": ("paysera_cashin", "paysera_cashout"),
    "rapyd": ("rapyd_cashin", "rapyd_cashout"),
    "cashii": ("cashii_cashout",),
}
"""Each provider's journeys (``JOURNEY.name``; a test checks them against the registry)."""


@dataclass(frozen=True, slots=True)
class Market:
    notes: tuple[int, ...]  # the notes customers feed, minor units
    weights: tuple[int, ...]
    recycler: tuple[int, ...]  # the notes the recycler pays out
    payouts: tuple[int, ...]  # what customers take out
    providers: tuple[str, ...]


MARKETS: Final = {
    "AED": Market(
        (500, 1000, 2000, 5000, 10000, 20000, 50000, 100000),
        (5, 10, 15, 25, 25, 12, 6, 2),
        (2000, 5000, 10000),
        (10000, 20000, 30000, 50000, 100000),
        ("payby", "rapyd", "cashii"),
    ),
    "EUR": Market(
        (500, 1000, 2000, 5000, 10000, 20000),
        (10, 20, 25, 30, 10, 5),
        (1000, 2000, 5000),
        (2000, 5000, 10000, 20000),
        ("paysera", "rapyd"),
    ),
}


@dataclass(frozen=True, slots=True)
class Rates:
    """How often things happen at a kiosk: mean seconds between events (``*_every_s``), or
    ``(low, high)`` ranges drawn uniformly."""

    customers_per_hour: tuple[float, float] = (3.0, 25.0)  # the kiosk's own rate, drawn once
    journey_s: float = 45.0  # how long a customer holds the kiosk (its "busy" share)
    paper_roll: tuple[int, int] = (400, 600)  # receipts per roll; near its end at NEAR_END left
    jam_per_note: float = 1 / 3000
    link_down_every_s: float = 1.5 * DAY  # the kiosk's link to one provider
    link_down_for_s: tuple[float, float] = (1 * MIN, 20 * MIN)
    provider_down_every_s: float = 2 * DAY  # the provider itself: every kiosk at once
    provider_down_for_s: tuple[float, float] = (5 * MIN, 40 * MIN)
    clock_drift_every_s: float = 4 * DAY
    clock_drift_for_s: tuple[float, float] = (1 * HOUR, 8 * HOUR)  # until NTP catches it
    clock_drift_s_per_hour: tuple[float, float] = (2.0, 20.0)
    silent_every_s: float = 3 * DAY
    silent_for_s: tuple[float, float] = (2 * MIN, 30 * MIN)
    routine_visit_every_s: tuple[float, float] = (1 * DAY, 4 * DAY)
    liability_settled_after_s: tuple[float, float] = (1 * HOUR, 12 * HOUR)
    pending_resolved_after_s: float = 5 * MIN
    outbox_sent_after_s: float = 30.0


RATES: Final = Rates()
NEAR_END: Final = 40


def _chance(dt: float, mean_s: float) -> float:
    """The probability that an event with mean interval ``mean_s`` happens within ``dt``."""
    return 1.0 - math.exp(-dt / mean_s)


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kiosk")
    except PackageNotFoundError:
        return "0+unknown"


class Fault(StrEnum):
    """What can be wrong with a simulated kiosk (:meth:`SimKiosk.faults`)."""

    PAPER_NEAR_END = "paper_near_end"
    PAPER_OUT = "paper_out"
    JAM = "jam"
    CASHBOX_FULL = "cashbox_full"
    DOOR_OPEN = "door_open"
    SERVICE_WAIT = "service_wait"  # door closed, waiting for the green button
    PROVIDER_DOWN = "provider_down"  # at least one provider does not answer
    NO_PROVIDER = "no_provider"  # none answers: out of service
    CLOCK_DRIFT = "clock_drift"
    LIABILITY = "liability"  # money owed to a customer
    SILENT_LINK = "silent_link"  # the kiosk runs but its heartbeats do not get out
    SILENT_POWER = "silent_power"  # off; back rebooted


class World:
    """Outages of the providers themselves, seen by every kiosk at once. Windows are drawn per
    provider from the seed in order of time, as far as asked: the same seed gives the same
    outages whatever order kiosks ask in."""

    def __init__(self, seed: int) -> None:
        names = sorted(JOURNEYS)
        self._rng = {p: random.Random(f"{seed}:world:{p}") for p in names}
        self._windows: dict[str, list[tuple[float, float]]] = {p: [] for p in names}
        self._horizon = dict.fromkeys(names, 0.0)

    def down(self, provider: str, t: float) -> bool:
        windows = self._windows.get(provider)
        if windows is None:
            return False
        lo, hi = RATES.provider_down_for_s
        while self._horizon[provider] <= t:
            rng = self._rng[provider]
            start = self._horizon[provider] + rng.expovariate(1 / RATES.provider_down_every_s)
            end = start + rng.uniform(lo, hi)
            windows.append((start, end))
            self._horizon[provider] = end
        i = bisect.bisect_right(windows, (t, math.inf)) - 1
        return i >= 0 and windows[i][0] <= t < windows[i][1]


@dataclass(frozen=True, slots=True)
class Journey:
    """A journey that ended (a terminal state of :mod:`kiosk.journeys`) during a step."""

    provider: str
    journey: str
    outcome: str  # "completed" | "refused" | "cancelled" | "owed"
    notes: tuple[int, ...] = ()  # stacked, minor units
    paid: int = 0  # paid out, minor units


@dataclass(slots=True)
class Activity:
    """What the customers did during a step: what the metrics' counters count."""

    journeys: list[Journey] = field(default_factory=list)
    started: int = 0  # codes that started a journey
    refused: int = 0  # codes refused (unreadable, or the kiosk out of service)
    requests: list[tuple[str, float]] = field(default_factory=list)  # provider, seconds


class SimKiosk:
    """One virtual kiosk: number ``index`` of the fleet of ``seed``; see the module's docstring.
    ``start_t``: its fleet time now; ``epoch``: the wall time of fleet time 0."""

    def __init__(
        self,
        index: int,
        seed: int,
        *,
        world: World | None = None,
        start_t: float = 0.0,
        epoch: float | None = None,
        identity: Identity | None = None,
    ) -> None:
        if not 1 <= index <= MAX_KIOSKS:
            raise ValueError(f"a kiosk's number is 1 to {MAX_KIOSKS}, not {index}")
        self.index = index
        self.kiosk_id = f"SIM-{index:05d}"
        digest = hashlib.sha256(f"kiosk sim fleet:{seed}:{index}".encode()).hexdigest()
        self.device_id = f"sim-{digest[:16]}"
        if identity is None:
            from kiosk.identity import Identity, new_key

            identity = Identity(self.device_id, new_key())
        self.identity = identity
        self.version = _version()
        self.world = world if world is not None else World(seed)
        self.epoch = time.time() if epoch is None else epoch
        self.t = start_t
        rng = self.rng = random.Random(f"{seed}:{index}")

        self.currency = "AED" if rng.random() < 0.8 else "EUR"
        m = self.market = MARKETS[self.currency]
        self.has_recycler = rng.random() < 0.7
        usable = [p for p in m.providers if self.has_recycler or _cashin(p)]
        self.providers = tuple(sorted(rng.sample(usable, rng.randint(1, len(usable)))))
        self.customers_per_h = rng.uniform(*RATES.customers_per_hour)
        self.model = rng.choice(("NV200", "NV200 Spectral", "iVIZION"))
        self.booted_t = start_t - rng.uniform(HOUR, 30 * DAY)
        self.boots = 0  # reboots since the fleet started (a power cut)
        self.busy = False

        self.cashbox_capacity = rng.choice((600, 1000, 1000, 1200)) if rng.random() > 0.05 else 0
        full = self.cashbox_capacity or 1000
        self.cashbox_notes = rng.randrange(0, int(full * 0.75))
        self.cashbox_value = sum(rng.choices(m.notes, m.weights, k=self.cashbox_notes))
        self.recycler_full = dict.fromkeys(m.recycler, 80) if self.has_recycler else {}
        self.recycler = {v: rng.randint(15, 80) for v in self.recycler_full}
        self.paper_roll = rng.randint(*RATES.paper_roll)
        self.paper_left = rng.randint(NEAR_END // 2, self.paper_roll)
        self.validator_fault: str | None = None

        self.service: str | None = None  # None | "door open" | "door closed"
        self.service_until = 0.0
        self.visit_at: float | None = None
        self.routine_at = start_t + rng.uniform(*RATES.routine_visit_every_s)

        self.link_down_until = dict.fromkeys(self.providers, -math.inf)
        self.up = dict.fromkeys(self.providers, True)
        self.since = {p: start_t - rng.uniform(0, DAY) for p in self.providers}
        self.last_success: dict[str, float | None] = {
            p: start_t - rng.uniform(0, 2 * HOUR) for p in self.providers
        }
        self.their_clock = {p: rng.gauss(0, 0.05) for p in self.providers}
        self.clock_offset = rng.gauss(0, 0.2)
        self.offsets: dict[str, float | None] = dict.fromkeys(self.providers)
        self.drift = 0.0  # seconds per second while the clock drifts
        self.drift_until = 0.0

        self.silent: str | None = None  # None | "link" | "power"
        self.silent_until = 0.0
        self.liabilities: list[tuple[int, float]] = []  # (minor units, settled at)
        self.pending: list[tuple[str, str, float]] = []  # (provider, journey, since)
        self.outbox: list[tuple[str, float]] = []  # (provider, since)
        self.disk_free = rng.randint(6, 24) * 10**9
        self.temperature = rng.uniform(45, 60)
        self._refresh(0.0)

    # --- the walk -------------------------------------------------------------------------------

    def step(self, dt: float) -> Activity:
        """Walk ``dt`` seconds (in parts of at most :data:`MAX_STEP_S`)."""
        if not dt > 0:
            raise ValueError(f"a step is a positive number of seconds, not {dt}")
        done = Activity()
        while dt > 1e-9:
            part = min(dt, MAX_STEP_S)
            self._step(part, done)
            dt -= part
        return done

    def _step(self, dt: float, done: Activity) -> None:
        self.t += dt
        self._silence(dt)
        self._technician()
        self._refresh(dt)
        self._clock(dt)
        self._customers(dt, done)
        self._drain(dt, done)
        self.liabilities = [(a, when) for a, when in self.liabilities if when > self.t]
        self.disk_free = max(0, self.disk_free - int(dt * 40))  # the journal and the logs grow
        self.temperature += self.rng.gauss((52 - self.temperature) * dt / 3600, 0.05 * dt**0.5)

    def _call(self, low_s: float, high_s: float) -> None:
        """A technician is on the way: here in ``low_s`` to ``high_s`` (or sooner if called)."""
        at = self.t + self.rng.uniform(low_s, high_s)
        self.visit_at = at if self.visit_at is None else min(self.visit_at, at)

    def _technician(self) -> None:
        rng, t = self.rng, self.t
        if self.service is not None and t >= self.service_until:
            if self.service == "door open":
                self.service, self.service_until = "door closed", t + rng.uniform(20, 180)
            else:
                self.service = None  # the green button
        if t >= self.routine_at:
            self.routine_at = t + rng.uniform(*RATES.routine_visit_every_s)
            self._call(0, 30 * MIN)
        if self.service is None and self.visit_at is not None and t >= self.visit_at:
            self.visit_at = None
            self.service, self.service_until = "door open", t + rng.uniform(3 * MIN, 15 * MIN)
            self.busy = False
            if self.paper_left < self.paper_roll // 2:
                self.paper_left = self.paper_roll = rng.randint(*RATES.paper_roll)
            full = self.cashbox_capacity or 1000
            if self.validator_fault == "cashbox_full" or self.cashbox_notes > full // 2:
                self.cashbox_notes = self.cashbox_value = 0  # kiosk cash collect
            self.validator_fault = None  # the jam cleared, the cashbox emptied
            if self._recycler_value() < self._recycler_value(self.recycler_full) * 0.6:
                self.recycler = dict(self.recycler_full)  # kiosk cash refill

    def _silence(self, dt: float) -> None:
        rng = self.rng
        if self.silent is None and rng.random() < _chance(dt, RATES.silent_every_s):
            self.silent = "link" if rng.random() < 0.6 else "power"
            self.silent_until = self.t + rng.uniform(*RATES.silent_for_s)
            self.busy = False
        elif self.silent is not None and self.t >= self.silent_until:
            if self.silent == "power":
                self.boots += 1
                self.booted_t = self.t
                self.offsets = dict.fromkeys(self.providers)  # measured again after a boot
            self.silent = None

    def _refresh(self, dt: float) -> None:
        """Which providers answer now: the kiosk's own link, and the providers themselves."""
        rng, t = self.rng, self.t
        lo, hi = RATES.link_down_for_s
        for p in self.providers:
            starts = dt and t >= self.link_down_until[p]
            if starts and rng.random() < _chance(dt, RATES.link_down_every_s):
                self.link_down_until[p] = t + rng.uniform(lo, hi)
            up = t >= self.link_down_until[p] and not self.world.down(p, t)
            if up != self.up[p]:
                self.up[p], self.since[p] = up, t

    def _clock(self, dt: float) -> None:
        rng = self.rng
        if self.drift == 0 and rng.random() < _chance(dt, RATES.clock_drift_every_s):
            per_hour = rng.uniform(*RATES.clock_drift_s_per_hour)
            self.drift = rng.choice((-1, 1)) * per_hour / HOUR
            self.drift_until = self.t + rng.uniform(*RATES.clock_drift_for_s)
        elif self.drift and self.t >= self.drift_until:
            self.drift, self.clock_offset = 0.0, rng.gauss(0, 0.2)  # NTP caught it
        self.clock_offset += self.drift * dt
        for p in self.providers:
            if self.up[p] and self.silent is None:
                self.offsets[p] = round(self.clock_offset - self.their_clock[p], 3)

    def _customers(self, dt: float, done: Activity) -> None:
        rng = self.rng
        if self.silent == "power":
            return
        rate = self.customers_per_h / HOUR
        arrivals = _poisson(rng, rate * dt)
        if self.reasons():
            done.refused += arrivals  # the panel refuses codes while out of service
            self.busy = False
            return
        for _ in range(arrivals):
            if self.reasons():
                done.refused += 1
            elif rng.random() < 0.02:
                done.refused += 1  # not a code of any provider
            else:
                self._journey(done)
        self.busy = not self.reasons() and rng.random() < _chance(RATES.journey_s, 1 / rate)

    def _journey(self, done: Activity) -> None:
        rng = self.rng
        provider = rng.choice(self.providers)
        names = [j for j in JOURNEYS[provider] if self.has_recycler or _cashin(j)]
        journey = rng.choice(names)
        done.started += 1
        if not self.up[provider]:
            done.journeys.append(Journey(provider, journey, "refused"))  # its own check
            return
        done.requests.append((provider, min(30.0, rng.lognormvariate(math.log(0.08), 0.5))))
        roll = rng.random()
        if roll < 0.04:
            done.journeys.append(Journey(provider, journey, "refused"))  # the provider said no
            return
        if roll < 0.07:
            done.journeys.append(Journey(provider, journey, "cancelled"))
            return
        if _cashin(journey):
            ended = self._cash_in(provider, journey)
        else:
            ended = self._cash_out(provider, journey)
        if ended is None:  # pending at the provider: it ends later (_drain)
            self.pending.append((provider, journey, self.t))
            return
        done.journeys.append(ended)
        if ended.outcome in ("completed", "owed"):
            self._receipt()
            if rng.random() < 0.4:
                self.outbox.append((provider, self.t))
        if ended.outcome == "completed":
            self.last_success[provider] = self.t

    def _cash_in(self, provider: str, journey: str) -> Journey | None:
        rng, m = self.rng, self.market
        notes = []
        for value in rng.choices(m.notes, m.weights, k=1 + min(5, int(rng.expovariate(0.7)))):
            if rng.random() < RATES.jam_per_note:
                self.validator_fault = "jam"
                self._call(15 * MIN, 2 * HOUR)
                break
            notes.append(value)
            if value in self.recycler and self.recycler[value] < self.recycler_full[value]:
                self.recycler[value] += 1  # a payout note is kept for payouts
                continue
            self.cashbox_notes += 1
            self.cashbox_value += value
            cap = self.cashbox_capacity
            if cap and self.cashbox_notes == int(cap * 0.8):
                self._call(2 * HOUR, 24 * HOUR)
            if cap and self.cashbox_notes >= cap:
                self.validator_fault = "cashbox_full"
                self._call(30 * MIN, 4 * HOUR)
                break
        if not notes:
            return Journey(provider, journey, "cancelled")
        if rng.random() < 0.02:
            return None
        return Journey(provider, journey, "completed", tuple(notes))

    def _cash_out(self, provider: str, journey: str) -> Journey | None:
        rng = self.rng
        amount = rng.choice(self.market.payouts)
        plan = _payout(self.recycler, amount)
        if plan is None:
            return Journey(provider, journey, "refused")  # the recycler cannot pay it
        if rng.random() < 0.02:
            return None
        before = self._recycler_value()
        short = rng.random() < 0.006  # a note stuck on its way out
        paid = 0
        for i, value in enumerate(plan):
            if short and i == len(plan) - 1:
                break
            self.recycler[value] -= 1
            paid += value
        full = self._recycler_value(self.recycler_full)
        if before >= full * 0.25 > self._recycler_value():
            self._call(1 * HOUR, 8 * HOUR)
        if short:
            lo, hi = RATES.liability_settled_after_s
            self.liabilities.append((amount - paid, self.t + rng.uniform(lo, hi)))
            return Journey(provider, journey, "owed", paid=paid)
        return Journey(provider, journey, "completed", paid=paid)

    def _receipt(self) -> None:
        if self.paper_left <= 0:
            return
        self.paper_left -= 1
        if self.paper_left == NEAR_END and self.rng.random() < 0.5:
            self._call(2 * HOUR, 12 * HOUR)
        elif self.paper_left == 0:
            self._call(10 * MIN, 90 * MIN)

    def _drain(self, dt: float, done: Activity) -> None:
        rng = self.rng
        if self.pending:
            p_end = _chance(dt, RATES.pending_resolved_after_s)
            still = []
            for provider, journey, since in self.pending:
                if self.up[provider] and self.silent is None and rng.random() < p_end:
                    outcome = "completed" if rng.random() < 0.9 else "refused"
                    done.journeys.append(Journey(provider, journey, outcome))
                    if outcome == "completed":
                        self.last_success[provider] = self.t
                else:
                    still.append((provider, journey, since))
            self.pending = still
        if self.outbox:
            p_sent = _chance(dt, RATES.outbox_sent_after_s)
            self.outbox = [
                (p, since)
                for p, since in self.outbox
                if not (self.up[p] and self.silent is None and rng.random() < p_sent)
            ]

    def _recycler_value(self, levels: dict[int, int] | None = None) -> int:
        return sum(v * n for v, n in (self.recycler if levels is None else levels).items())

    # --- what it shows --------------------------------------------------------------------------

    def down(self) -> list[str]:
        return [p for p in self.providers if not self.up[p]]

    def reasons(self) -> list[str]:
        """Why it is out of service, in the daemon's words and order; [] in service."""
        why = []
        if self.service == "door open":
            why.append(DOOR_OPEN)
        elif self.service == "door closed":
            why.append(SERVICE_WAIT)
        if self.validator_fault is not None:
            why.append(FAULT_WORDS[self.validator_fault])
        if self.paper_left <= 0:
            why.append(PAPER_OUT)
        down = self.down()
        if len(down) == len(self.providers):
            why.append(no_provider(down))
        return why

    def faults(self) -> frozenset[Fault]:
        f = set()
        if self.paper_left <= 0:
            f.add(Fault.PAPER_OUT)
        elif self.paper_left <= NEAR_END:
            f.add(Fault.PAPER_NEAR_END)
        if self.validator_fault is not None:
            f.add(Fault(self.validator_fault))
        if self.service == "door open":
            f.add(Fault.DOOR_OPEN)
        elif self.service == "door closed":
            f.add(Fault.SERVICE_WAIT)
        down = self.down()
        if down:
            f.add(Fault.PROVIDER_DOWN)
        if len(down) == len(self.providers):
            f.add(Fault.NO_PROVIDER)
        if self.drift:
            f.add(Fault.CLOCK_DRIFT)
        if self.liabilities:
            f.add(Fault.LIABILITY)
        if self.silent is not None:
            f.add(Fault.SILENT_LINK if self.silent == "link" else Fault.SILENT_POWER)
        return frozenset(f)

    def view(self) -> KioskView:
        """What the kiosk would send now (pure: it draws nothing, it changes nothing)."""
        t, why = self.t, tuple(self.reasons())
        state = "out_of_service" if why else ("busy" if self.busy else "in_service")
        paper = (
            "out" if self.paper_left <= 0 else "near_end" if self.paper_left <= NEAR_END else "ok"
        )
        fault = self.validator_fault
        door_open = self.service == "door open"
        devices = [
            DeviceView(
                "validator", fault is None, fault or "ok", {"model": self.model, "fault": fault}
            ),
            DeviceView(
                "printer",
                paper != "out",
                "ok" if paper != "out" else "not ready (paper out)",
                {"paper": paper},
            ),
            DeviceView("door", not door_open, "open" if door_open else "closed"),
            DeviceView("camera", True, "ok"),
        ]
        if self.has_recycler:
            levels = {str(v): n for v, n in sorted(self.recycler.items())}
            detail = {"levels": levels, "value": self._recycler_value(), "currency": self.currency}
            devices.append(DeviceView("recycler", True, "ok", detail))
        providers = tuple(
            ProviderView(
                p,
                self.up[p],
                t - self.since[p],
                self.offsets[p],
                None if (last := self.last_success[p]) is None else _iso(self.epoch + last),
            )
            for p in self.providers
        )
        owed = sum(a for a, _ in self.liabilities)
        return KioskView(
            kiosk_id=self.kiosk_id,
            device_id=self.device_id,
            version=self.version,
            started_at=self.epoch + self.booted_t,
            now=self.epoch + t,
            state=state,
            reasons=why,
            devices=tuple(devices),
            providers=providers,
            currency=self.currency,
            cashbox_notes=self.cashbox_notes,
            cashbox_value=self.cashbox_value,
            cashbox_capacity=self.cashbox_capacity,
            pending=len(self.pending),
            pending_oldest_s=t - min(s for *_, s in self.pending) if self.pending else 0.0,
            outbox_depth=len(self.outbox),
            outbox_oldest_s=t - min(s for _, s in self.outbox) if self.outbox else 0.0,
            liabilities={self.currency: owed} if owed else {},
            liabilities_count=len(self.liabilities),
            disk_free_bytes=self.disk_free,
            cpu_temperature_c=round(self.temperature, 1),
        )


def _iso(t: float) -> str:
    from kiosk.fleet.heartbeat import iso

    return iso(t)


def _cashin(name: str) -> bool:
    """Has this provider (or is this journey) a cash-in?"""
    return name.endswith("_cashin") or any(j.endswith("_cashin") for j in JOURNEYS.get(name, ()))


def _payout(levels: dict[int, int], amount: int) -> list[int] | None:
    """The notes that pay ``amount``, largest first; ``None`` if the levels cannot."""
    plan, left = [], amount
    for value in sorted(levels, reverse=True):
        n = min(levels[value], left // value)
        plan += [value] * n
        left -= n * value
    return plan if left == 0 else None


# --- the fleet ------------------------------------------------------------------------------------

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


def _check_args(n: int, interval_s: float, duration_s: float | None, concurrency: int) -> None:
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

    _check_args(n, interval_s, duration_s, concurrency)
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


# --- the command ----------------------------------------------------------------------------------


def _arg(parse: Callable[[str], Any], check: Callable[[Any], None]) -> Callable[[str], Any]:
    """An argparse ``type``: a bad value is argparse's clean message and exit status 2."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
            check(value)
        except (SimFleetError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc).partition(": ")[2] or str(exc)) from None
        return value

    return convert


def _kiosks(n: int) -> None:
    _check_args(n, MIN_INTERVAL_S, None, 1)


def _interval(s: float) -> None:
    _check_args(1, s, None, 1)


def _duration(s: float) -> None:
    _check_args(1, MIN_INTERVAL_S, s, 1)


def _concurrency(n: int) -> None:
    _check_args(1, MIN_INTERVAL_S, None, n)


def add_sim_parser(simsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``kiosk sim fleet`` on the ``kiosk sim`` subparsers (``kiosk.cli``)."""
    p = simsub.add_parser(
        "fleet",
        help="N simulated kiosks pushing signed heartbeats and metrics, to test a fleet side",
        description="N simulated kiosks in one process, each with its own Ed25519 key, push"
        " heartbeats (and metrics to a Pushgateway) from a seeded random walk: customers,"
        " faults (paper, jams, the door, providers, the clock, silence, liabilities) that come"
        " and go. A line every interval, a summary at the end (Ctrl-C). Without --url and"
        " --pushgateway: a dry run (heartbeats built, signed and checked). Exit 0; 1 when"
        " nothing was delivered or a heartbeat was invalid; 2 bad arguments.",
    )
    p.add_argument(
        "--kiosks", type=_arg(int, _kiosks), default=100, metavar="N", help="default 100"
    )
    p.add_argument(
        "--url",
        type=_arg(lambda u: check_url(u, "--url"), lambda _: None),
        metavar="URL",
        help="the fleet's heartbeat endpoint (POST)",
    )
    p.add_argument(
        "--pushgateway",
        type=_arg(lambda u: check_url(u, "--pushgateway"), lambda _: None),
        metavar="URL",
        help="a Prometheus Pushgateway (PUT /metrics/job/kiosk/kiosk/<id>)",
    )
    p.add_argument(
        "--interval-s",
        type=_arg(float, _interval),
        default=60.0,
        metavar="S",
        help="seconds between a kiosk's heartbeats (default 60, at least 1)",
    )
    p.add_argument(
        "--duration-s",
        type=_arg(float, _duration),
        metavar="S",
        help="stop after S seconds (default: at Ctrl-C)",
    )
    p.add_argument("--seed", type=int, default=1, help="the same seed, the same kiosks' walks")
    p.add_argument(
        "--concurrency",
        type=_arg(int, _concurrency),
        default=50,
        metavar="N",
        help="requests in flight at most (default 50)",
    )
    p.add_argument(
        "--print-keys",
        metavar="FILE",
        help="write the kiosks' ids and public keys (JSON) for the fleet to verify signatures",
    )
    p.set_defaults(fn=cmd_sim_fleet)


def cmd_sim_fleet(args: argparse.Namespace) -> int:
    """``kiosk sim fleet``; Ctrl-C (or SIGTERM) ends it with the summary."""
    fleet_log = logging.getLogger("kiosk.fleet")
    level = fleet_log.level
    if not getattr(args, "verbose", False):  # else every kiosk would say "unreachable"
        fleet_log.setLevel(logging.ERROR)
    try:
        summary = asyncio.run(_main(args))
    except SimFleetError as exc:
        print(f"kiosk sim fleet: {exc}", file=sys.stderr)
        return 2
    finally:
        fleet_log.setLevel(level)
    tried = summary.sent + summary.failed + summary.pushes + summary.push_failed
    nothing = tried > 0 and summary.sent + summary.pushes == 0
    return 1 if summary.invalid or nothing else 0


async def _main(args: argparse.Namespace) -> Summary:
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def interrupted() -> None:
        stop.set()
        for sig in signals:  # a second Ctrl-C stops at once
            loop.remove_signal_handler(sig)

    for sig in signals:
        loop.add_signal_handler(sig, interrupted)
    try:
        return await run_fleet(
            args.kiosks,
            url=args.url,
            pushgateway=args.pushgateway,
            interval_s=args.interval_s,
            duration_s=args.duration_s,
            seed=args.seed,
            concurrency=args.concurrency,
            keys_file=Path(args.print_keys) if args.print_keys else None,
            stop=stop,
        )
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
