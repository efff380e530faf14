"""``kiosk reconcile [--since T] [--json]``: the journal against each provider's own view.

For every transaction with a provider reference created since ``T``, its provider is asked
for its own state (``Provider.reconcile``: PayBy a signed getOrder, Paysera a get of the
transaction): ``APPLIED`` (the money moved there) or not, and the two are compared:

- journal ``completed`` / ``paid``  ⇔ applied;
- journal ``cancelled`` / ``refused`` / ``void`` ⇔ not applied;
- cash-in ``owed`` (the cash was kept) ⇔ not applied; applied *and* owed is the one mismatch
  that costs money twice: it is listed first;
- cash-out ``owed`` (not all the cash came out) ⇔ applied;
- journal ``pending``: listed with what the provider says now (the outbox is still on it).

Every mismatch is printed (or listed with ``--json``); exit 1 when there is one, 0 when the
journal and the providers agree, 2 on a bad configuration. The journal is only read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass

from kiosk.config import Config, Secrets
from kiosk.journal import Journal, Tx
from kiosk.journeys import JOURNEYS

APPLIED = "APPLIED"


@dataclass(frozen=True, slots=True)
class Finding:
    ref: str
    journal: str
    provider: str
    severity: str  # "double" (paid and owed), "mismatch", "pending", "unreachable"
    detail: str
    provider_name: str = ""

    def line(self) -> str:
        return (
            f"{self.severity:<11} {self.ref}  journal: {self.journal:<10}"
            f" {self.provider_name or 'provider'}: {self.provider}  {self.detail}"
        )


MOVED = frozenset({"completed", "paid"})
NOTHING = frozenset({"cancelled", "refused", "void"})
OPEN = frozenset({"pending", "pay_unknown", "paying", "confirming", "dispensing"})


def judge(tx: Tx, provider_state: str, cash_owed: bool) -> Finding | None:
    """The comparison for one transaction. ``provider_state``: ``APPLIED`` (the provider moved
    the money: paid the order, confirmed the transaction) or ``NOT_APPLIED:<status>``."""
    applied = provider_state == APPLIED
    direction = JOURNEYS[tx.journey].direction if tx.journey in JOURNEYS else "in"

    def found(severity: str, detail: str) -> Finding:
        return Finding(tx.ref, tx.state, provider_state, severity, detail)

    if tx.state in OPEN:
        return found("pending", "the outbox is settling it") if tx.state != "dispensing" else None
    if tx.state in MOVED and not applied:
        return found("mismatch", "journal says done, the provider did not move the money")
    if tx.state in NOTHING and applied:
        return found("mismatch", "the provider moved the money, the journal says nothing did")
    if tx.state == "owed":
        if direction == "in" and applied and cash_owed:
            return found("double", "paid at the provider AND owed to the customer")
        if direction == "out" and not applied and cash_owed:
            return found("mismatch", "owed for a cash-out the provider never debited")
    return None


async def reconcile(cfg: Config, secrets: Secrets, since: str | None) -> list[Finding]:
    """Every registered provider with a ``reconcile`` read, configured here, is asked."""
    from kiosk.providers.registry import providers

    findings: list[Finding] = []
    journal = Journal.open(cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=secrets.journal_key)
    try:
        owed_txs = {
            r["tx_id"]
            for r in journal.liabilities(open_only=False)
            if not str(r["reason"]).startswith(("unconfirmed", "stray"))
        }
        txs = journal.transactions(limit=1_000_000)
        for name, provider in providers().items():
            state_of = provider.resolve("reconcile")
            if state_of is None or name not in cfg.providers or name not in secrets.providers:
                continue
            conn = provider.resolve("connect")(cfg, secrets, lambda ok: None)
            try:
                for tx in txs:
                    if tx.provider != name or not tx.provider_ref:
                        continue
                    if since and tx.created_at < since:
                        continue
                    state = await state_of(conn.client, cfg, tx)
                    if state.startswith("UNREACHABLE"):
                        findings.append(
                            Finding(tx.ref, tx.state, state, "unreachable", "ask again later")
                        )
                    elif (finding := judge(tx, state, tx.id in owed_txs)) is not None:
                        findings.append(finding)
                findings = [
                    dataclasses.replace(f, provider_name=f.provider_name or provider.title)
                    for f in findings
                ]
            finally:
                await conn.aclose()
    finally:
        journal.close()
    order = {"double": 0, "mismatch": 1, "unreachable": 2, "pending": 3}
    return sorted(findings, key=lambda f: (order[f.severity], f.ref))


def main(cfg: Config, secrets: Secrets, since: str | None, as_json: bool) -> int:
    findings = asyncio.run(reconcile(cfg, secrets, since))
    if as_json:
        print(json.dumps([dataclasses.asdict(f) for f in findings], indent=2))
    elif not findings:
        print("journal and providers agree")
    else:
        for f in findings:
            print(f.line())
    return 1 if any(f.severity in ("double", "mismatch") for f in findings) else 0
