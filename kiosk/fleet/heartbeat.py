"""The heartbeat document: what a kiosk tells the fleet, built from a :class:`KioskView`.

Wiring (the daemon, every ``fleet.interval_s``)::

    from kiosk.fleet import heartbeat

    doc = heartbeat.build(view, seq, missed)  # a dict that validates against SCHEMA_PATH
    body = heartbeat.canonical(doc)           # the exact bytes signed and POSTed

The JSON Schema (draft 2020-12) is ``heartbeat.schema.json`` beside this module
(:data:`SCHEMA_PATH`); its top level admits no other key. Amounts are objects
``{"currency": "AED", "minor": 15000, "amount": "150.00"}``: integer minor units and the exact
decimal as a string, never a float. Times are ISO 8601 UTC (``2025-01-31T12:00:00.000Z``),
durations are seconds (rounded to 0.1 s), sizes bytes, temperatures degrees Celsius.

:func:`build` never raises on odd data in the view (a device's loose ``detail``, an unparsable
time, a NaN): it leaves the value out (``null``, ``"unknown"``) instead, so a heartbeat is sent
whatever state the kiosk is in.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from kiosk.errors import MoneyError
from kiosk.fleet.view import ApprovalView, DeviceView, KioskView, ProviderView, TamperView
from kiosk.money import Money

SCHEMA: Final = "kiosk.heartbeat/1"
SCHEMA_PATH: Final = Path(__file__).with_name("heartbeat.schema.json")
PAPER: Final = frozenset({"ok", "near_end", "out"})
_DENOM_RE: Final = re.compile(r"[1-9][0-9]{0,11}")


def canonical(doc: dict[str, Any]) -> bytes:
    """The exact bytes signed and sent: sorted keys, no spaces, ASCII only (and no NaN)."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def iso(t: float) -> str:
    """``time.time()`` as ISO 8601 UTC with milliseconds: ``2025-01-31T12:00:00.000Z``."""
    ms = round(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _iso_or_none(text: str | None) -> str | None:
    """An ISO 8601 time in any offset, as UTC in :func:`iso`'s form; ``None`` if unparsable."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # the view promises UTC
    return iso(when.timestamp())


def money(minor: int, code: str) -> dict[str, Any]:
    """``{"currency", "minor", "amount"}``; ``amount`` is ``None`` for an unknown currency."""
    try:
        amount: str | None = Money.of(minor, code).to_decimal_str()
    except MoneyError:
        amount = None
    return {"currency": code, "minor": minor, "amount": amount}


def _seconds(value: float) -> float:
    return round(value, 1) if math.isfinite(value) and value > 0 else 0.0


def _number(value: float | None) -> float | None:
    return round(value, 1) if value is not None and math.isfinite(value) else None


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _text(value: object) -> str | None:
    return value[:64] if isinstance(value, str) and value else None


def _device(dev: DeviceView, currency: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": dev.ok, "status": (dev.status or "unknown")[:120]}
    detail = dev.detail
    if dev.name == "validator":
        out["model"] = _text(detail.get("model"))
        out["fault"] = _text(detail.get("fault"))
    elif dev.name == "recycler":
        levels = detail.get("levels")
        out["levels"] = {
            str(denom): count
            for denom, count in (levels.items() if isinstance(levels, dict) else ())
            if _DENOM_RE.fullmatch(str(denom)) and type(count) is int and count >= 0
        }
        code = detail.get("currency")
        value = detail.get("value")
        out["value"] = money(
            value if type(value) is int else 0, code if isinstance(code, str) else currency
        )
    elif dev.name == "printer":
        paper = detail.get("paper")
        out["paper"] = paper if isinstance(paper, str) and paper in PAPER else "unknown"
    return out


def _provider(p: ProviderView) -> dict[str, Any]:
    return {
        "reachable": p.reachable,
        "for_s": _seconds(p.for_s),
        "clock_offset_s": _number(p.clock_offset_s),
        "last_success_at": _iso_or_none(p.last_success_at),
        "auth_refused": p.auth_refused,
    }


def _tamper(t: TamperView) -> dict[str, Any]:
    return {"kind": t.kind[:32], "since": _iso_or_none(t.since), "detail": t.detail[:120]}


def _approval(a: ApprovalView) -> dict[str, Any]:
    return {
        "reference": a.reference[:64],
        "provider": a.provider[:32],
        "amount": money(a.amount, a.currency),
        "waiting_since": iso(a.since),
        "expires_at": iso(a.expires_at),
    }


def build(view: KioskView, seq: int, missed: int) -> dict[str, Any]:
    """The heartbeat for ``view``: ``seq`` numbers heartbeats (monotonic per boot, the
    daemon's counter); ``missed`` is how many were not delivered since the last that was."""
    capacity = _count(view.cashbox_capacity)
    notes = _count(view.cashbox_notes)
    return {
        "schema": SCHEMA,
        "device_id": view.device_id,
        "kiosk_id": view.kiosk_id,
        "version": view.version,
        "uptime_s": max(0, int(view.now - view.started_at)),
        "sent_at": iso(view.now),
        "seq": seq,
        "state": view.state,
        "reasons": [r[:200] for r in view.reasons if r][:32],
        "devices": {d.name: _device(d, view.currency) for d in view.devices},
        "cashbox": {
            "notes": notes,
            "value": money(view.cashbox_value, view.currency),
            "capacity": capacity,
            "fill": round(notes / capacity, 3) if capacity else None,
        },
        "pending": {"count": _count(view.pending), "oldest_s": _seconds(view.pending_oldest_s)},
        "outbox": {
            "depth": _count(view.outbox_depth),
            "oldest_s": _seconds(view.outbox_oldest_s),
        },
        "liabilities": {
            "count": _count(view.liabilities_count),
            "open": [
                money(minor, code) for code, minor in sorted(view.liabilities.items()) if minor
            ],
        },
        "providers": {p.name: _provider(p) for p in view.providers},
        "tamper": [_tamper(t) for t in view.tamper][:8],
        "disk_free_bytes": _count(view.disk_free_bytes),
        "cpu_temperature_c": _number(view.cpu_temperature_c),
        "missed": max(0, missed),
        "approvals": [_approval(a) for a in view.approvals][:32],
    }
