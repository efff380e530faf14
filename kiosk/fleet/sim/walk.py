"""The simulated kiosks' random walk (:class:`SimKiosk`, :class:`World`): see
:mod:`kiosk.fleet.sim`."""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from kiosk.fleet.view import DeviceView, KioskView, ProviderView

if TYPE_CHECKING:  # imported where used: `kiosk sim` builds its parser on every kiosk command
    from kiosk.identity import Identity


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
