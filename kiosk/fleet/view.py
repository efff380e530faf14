"""What the daemon knows about itself, as plain data: the one input of the heartbeat, the
health endpoint and the metrics' gauges (the daemon fills it; tests and ``kiosk sim fleet``
make their own). Amounts are integers in minor units with their currency."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeviceView:
    name: str  # "validator" | "recycler" | "printer" | "camera" | "door"
    ok: bool
    status: str  # in words: "ok", "paper out", "jam", "not answering", "open"...
    detail: dict[str, object] = field(default_factory=dict)
    """Per device: printer {"paper": "ok"|"near_end"|"out"}; recycler {"levels": {"5000": 3},
    "value": 15000, "currency": "AED"}; validator {"model": "NV200", "fault": "jam"|None}."""


@dataclass(frozen=True, slots=True)
class ProviderView:
    name: str  # "payby" | "paysera" | "rapyd" | "cashii"
    reachable: bool
    for_s: float  # how long it has been so
    clock_offset_s: float | None = None  # our clock minus theirs, when measured
    last_success_at: str | None = None  # ISO 8601 UTC of the last completed journey
    auth_refused: bool = False  # it refuses the kiosk's credentials (its journeys are off)


@dataclass(frozen=True, slots=True)
class TamperView:
    """A tamper latch in force (:mod:`kiosk.tamper`): out of service until a technician
    clears it."""

    kind: str  # "fraud" | "cashbox_removed"
    since: str  # ISO 8601 UTC, when it latched
    detail: str = ""  # the device's words


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """A transaction waiting for a technician's approval (:mod:`kiosk.approvals`)."""

    reference: str  # the transaction's reference, as on its receipts
    provider: str
    amount: int  # minor units of ``currency``
    currency: str
    since: float  # time.time() when it started waiting
    expires_at: float  # time.time() when it is declined unless approved


@dataclass(frozen=True, slots=True)
class KioskView:
    kiosk_id: str
    device_id: str
    version: str  # the firmware (the kiosk package's version)
    started_at: float  # time.time() at start
    now: float  # time.time() of this view
    state: str  # "in_service" | "busy" | "out_of_service" | "offline"
    reasons: tuple[str, ...]  # why out of service, in words ([] in service)
    devices: tuple[DeviceView, ...]
    providers: tuple[ProviderView, ...]
    currency: str
    cashbox_notes: int  # notes stacked since the last collection
    cashbox_value: int  # their value, minor units of ``currency``
    cashbox_capacity: int  # notes the cashbox holds when full (0: unknown)
    pending: int  # transactions pending at a provider
    pending_oldest_s: float  # age of the oldest (0 when none)
    outbox_depth: int  # provider calls queued
    outbox_oldest_s: float
    liabilities: dict[str, int]  # open liabilities per currency, minor units
    liabilities_count: int
    disk_free_bytes: int
    cpu_temperature_c: float | None  # None off a Pi
    tamper: tuple[TamperView, ...] = ()  # the tamper latches in force
    approvals: tuple[ApprovalView, ...] = ()  # waiting for approval, oldest first
