"""``kiosk status``: how the kiosk is, in words a technician reads (and as JSON for scripts).

The daemon builds the document (:func:`document`) from what it knows: why it is out of service
(each reason in words: the door, a jammed or silent validator, the printer, no provider
answering), each device, the pending transactions and open liabilities with their amounts as
money, the providers, what their daily limits leave today, the transactions waiting for a
technician's approval, the last errors. :func:`words` prints it for a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kiosk.journal import Tx
from kiosk.money import Money

ERROR_KINDS = frozenset(
    {
        "device.error",
        "device.fault",
        "device.garbled",
        "printer.status",
        "service.entered",
        "tamper.latched",
        "tamper.cleared",
    }
)
"""The events shown as "last errors" (a printer status only when it is not ready)."""


def money(minor: int, code: str) -> str:
    return str(Money.of(minor, code))


def liabilities(totals: Mapping[str, tuple[int, int]]) -> dict[str, str]:
    """Open liabilities per currency (``Journal.liability_totals``), as money ("AED 150.00")."""
    return {code: money(total, code) for code, (_, total) in sorted(totals.items())}


def pending(txs: Sequence[Tx]) -> list[dict[str, Any]]:
    return [
        {
            "ref": t.ref,
            "journey": t.journey,
            "amount": money(t.amount_due or t.credited, t.currency),
            "reason": t.reason,
            "since": t.updated_at,
        }
        for t in txs
        if t.state == "pending"
    ]


def left_today(left: Mapping[str, Mapping[str, int]], code: str) -> dict[str, dict[str, str]]:
    """What each provider's daily limits leave today (``kiosk.limits.left_by_provider``), as
    money: ``{"paysera": {"cash-out": "AED 1700.00"}}``."""
    words = {"out": "cash-out", "in": "cash-in"}
    return {
        name: {words[d]: money(minor, code) for d, minor in by.items()} for name, by in left.items()
    }


def last_errors(events: Sequence[Mapping[str, Any]], limit: int = 5) -> list[dict[str, Any]]:
    """The latest device errors and faults, newest first (``events``: newest first)."""
    out = []
    for e in events:
        if e["kind"] not in ERROR_KINDS:
            continue
        data = e.get("data") or {}
        if e["kind"] == "printer.status" and data.get("status") == "ready":
            continue
        detail = data.get("error") or data.get("kind") or data.get("status") or data.get("why")
        if e["kind"] == "tamper.cleared":
            detail = f"{', '.join(data.get('kinds') or [])} cleared by {data.get('by')}"
        elif e["kind"] == "device.garbled":
            detail = f"{data.get('device')}: {data.get('bad_frames')} bad frames"
        out.append({"at": e["at"], "kind": e["kind"], "detail": str(detail or "")})
        if len(out) == limit:
            break
    return out


def words(doc: Mapping[str, Any]) -> str:
    """The status document as lines a technician reads."""
    state = {"ready": "in service", "busy": "in service, serving a customer"}.get(
        doc["state"], "OUT OF SERVICE"
    )
    lines = [f"kiosk {doc['kiosk']}: {state}"]
    lines += [f"  because: {why}" for why in doc.get("reasons", [])]
    for latch in doc.get("tamper", []):
        lines.append(
            f"  TAMPER: {latch['kind']} since {latch['since']}"
            + (f" ({latch['detail']})" if latch.get("detail") else "")
            + ": inspect the validator and the cashbox; then open and close the door and press"
            " green, or run kiosk tamper clear --technician NAME"
        )
    lines.append("devices:")
    for name, dev in doc.get("devices", {}).items():
        lines.append(f"  {name:<10} {dev}")
    providers = doc.get("providers", {})
    if providers:
        lines.append("providers:")
        for name, p in providers.items():
            said = "answers" if p.get("reachable", True) else f"NOT answering for {p['for_s']} s"
            if "clock_skew_s" in p:
                said += f"; our clock {p['clock_skew_s']:+} s against theirs"
            if p.get("clock_refused"):
                said += "; it REFUSED our time: fix NTP"
            if p.get("auth_refused"):
                said = (
                    f"REFUSES the kiosk's credentials ({p['auth_refused']}): its journeys are out"
                    f" of service; fix the keys, then kiosk provider check {name}"
                )
            lines.append(f"  {name:<10} {said}")
    left = doc.get("left_today", {})
    if left:
        lines.append("left today (daily limits):")
        for name, by in left.items():
            lines.append(f"  {name:<10} " + ", ".join(f"{d} {m}" for d, m in by.items()))
    waiting = doc.get("waiting_approval", {})
    if waiting:
        lines.append("waiting for a technician's approval (service key, or the fleet's approve):")
        lines += [f"  {ref}  {amount}" for ref, amount in waiting.items()]
    pend = doc.get("pending", [])
    lines.append(f"pending transactions: {len(pend) or 'none'}")
    lines += [f"  {p['ref']}  {p['amount']}  {p['reason'] or ''}  since {p['since']}" for p in pend]
    owed = doc.get("liabilities", {})
    lines.append(
        "money owed to customers: "
        + (", ".join(owed.values()) if owed else "none")
        + (" (kiosk liabilities)" if owed else "")
    )
    if doc.get("outbox_queued"):
        lines.append(f"provider calls waiting to be delivered: {doc['outbox_queued']}")
    errors = doc.get("last_errors", [])
    if errors:
        lines.append("last errors:")
        lines += [f"  {e['at'][:19].replace('T', ' ')}  {e['kind']}  {e['detail']}" for e in errors]
    return "\n".join(lines)
