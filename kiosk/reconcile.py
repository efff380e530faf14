"""``kiosk reconcile [--since T] [--json]``: the journal against each provider's own view.

For every transaction with a provider reference (PayBy's orderNo today) created since ``T``,
the provider is asked for its state (PayBy: a signed getOrder) and the two are compared:

- journal ``completed`` / ``paid``  ⇔ PayBy: paid by this store;
- journal ``owed`` (the cash was kept)  ⇔ PayBy: **not** paid by this store; paid *and*
  owed is the one mismatch that costs money twice: it is listed first;
- journal ``cancelled`` / ``refused`` ⇔ not paid by this store;
- journal ``pending``: listed with what PayBy says now (the outbox is still on it).

Every mismatch is printed (or listed with ``--json``); exit 1 when there is one, 0 when the
journal and the providers agree, 2 on a bad configuration. The journal is only read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from kiosk.config import Config, Secrets
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.journal import Journal, Tx

PAID = frozenset({"PAID_SUCCESS", "SETTLED"})
NOT_VISIBLE = frozenset({"62004", "62035"})


@dataclass(frozen=True, slots=True)
class Finding:
    ref: str
    journal: str
    provider: str
    severity: str  # "double" (paid and owed), "mismatch", "pending", "unreachable"
    detail: str

    def line(self) -> str:
        return (
            f"{self.severity:<11} {self.ref}  journal: {self.journal:<10}"
            f" PayBy: {self.provider}  {self.detail}"
        )


def judge(tx: Tx, provider_state: str, cash_owed: bool) -> Finding | None:
    """The comparison for one transaction (``provider_state``: PAID_BY_STORE, NOT_PAID:<s>)."""
    paid = provider_state == "PAID_BY_STORE"
    if tx.state in ("completed", "paid"):
        if not paid:
            return Finding(tx.ref, tx.state, provider_state, "mismatch", "journal paid, PayBy not")
        return None
    if tx.state == "owed":
        if paid and cash_owed:
            return Finding(
                tx.ref, tx.state, provider_state, "double", "paid at PayBy AND owed to the customer"
            )
        return None
    if tx.state in ("pending", "pay_unknown", "paying"):
        return Finding(tx.ref, tx.state, provider_state, "pending", "the outbox is settling it")
    if paid:
        return Finding(tx.ref, tx.state, provider_state, "mismatch", "PayBy paid, journal did not")
    return None


async def _provider_state(client: Any, partner: str, order_no: str) -> str:
    try:
        order = await client.get_order(order_no=order_no)
    except ProviderRefused as exc:
        if exc.signed and exc.code in NOT_VISIBLE:
            return "NOT_PAID:NOT_VISIBLE_TO_STORE"
        return f"UNREACHABLE:{exc.code}"
    except ProviderError as exc:
        return f"UNREACHABLE:{type(exc).__name__}"
    if str(order.status) in PAID and order.payer_mid == partner:
        return "PAID_BY_STORE"
    return f"NOT_PAID:{order.status}"


async def reconcile(cfg: Config, secrets: Secrets, since: str | None) -> list[Finding]:
    if cfg.payby is None:
        return []
    from kiosk.daemon import Daemon

    http, client = Daemon(cfg, secrets)._payby_client()
    journal = Journal.open(cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=secrets.journal_key)
    try:
        findings: list[Finding] = []
        for tx in journal.transactions(limit=1_000_000):
            if tx.provider != "payby" or not tx.provider_ref or (since and tx.created_at < since):
                continue
            state = await _provider_state(client, cfg.payby.partner_id, tx.provider_ref)
            if state.startswith("UNREACHABLE"):
                findings.append(Finding(tx.ref, tx.state, state, "unreachable", "ask again later"))
                continue
            cash_owed = any(
                r["tx_id"] == tx.id and not str(r["reason"]).startswith(("unconfirmed", "stray"))
                for r in journal.liabilities(open_only=False)
            )
            finding = judge(tx, state, cash_owed)
            if finding is not None:
                findings.append(finding)
        order = {"double": 0, "mismatch": 1, "unreachable": 2, "pending": 3}
        return sorted(findings, key=lambda f: (order[f.severity], f.ref))
    finally:
        journal.close()
        await http.aclose()


def main(cfg: Config, secrets: Secrets, since: str | None, as_json: bool) -> int:
    findings = asyncio.run(reconcile(cfg, secrets, since))
    if as_json:
        print(json.dumps([dataclasses.asdict(f) for f in findings], indent=2))
    elif not findings:
        print("journal and PayBy agree")
    else:
        for f in findings:
            print(f.line())
    return 1 if any(f.severity in ("double", "mismatch") for f in findings) else 0
