"""Paysera cash-in: the customer's notes, credited to their wallet from the kiosk's allowance.

States (``JOURNEY``)::

    checking ──> accepting ──> creating ──> reserving ──> confirming ──> confirmed ──> completed
       │             │            │             │            │ └──> pending ──> confirmed | owed
       └> refused    └> cancelled └> owed       └> owed      └──> owed
                        | owed

- before any note: cash-in is on (an allowance and ``cashin_max``), the wallet id is sane and
  Paysera is reachable, else ``refused`` (nothing taken);
- notes up to ``cashin_max``; the customer presses confirm to end (``confirm_ends``); each note
  is credited in the journal at the device's safe point;
- create (with the allowance, ``reserve_for_s``) → reserve to the wallet → confirm through the
  outbox (``paysera.cashin_confirm``: the same confirm is sent again while in doubt, the
  transaction key makes it once at Paysera). Any refusal, or a transaction that lapses
  unconfirmed: the cash is **owed**, with a receipt. A reservation that may exist is revoked;
- the customer waits ``confirm_wait_s`` for an answer, then leaves with a PENDING receipt.
"""

from __future__ import annotations

import logging
from typing import Any

from drivers.panel import PanelState
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.flows import paysera_ops, steps
from kiosk.flows.context import Context
from kiosk.journal import Tx
from kiosk.journeys import define
from kiosk.money import Money
from kiosk.providers.paysera.config import PayseraConfig
from kiosk.providers.paysera.outcomes import told

log = logging.getLogger("kiosk.flows.paysera")

JOURNEY = define(
    "paysera_cashin",
    "paysera",
    "in",
    "checking",
    {
        "checking": "accepting refused",
        "accepting": "creating cancelled owed",
        "creating": "reserving owed",
        "reserving": "confirming owed",
        "confirming": "confirmed owed pending",
        "pending": "confirmed owed",
        "confirmed": "completed",
    },
    {
        "checking": "nothing moved: refused",
        "accepting": "settle notes in flight with the device's power-up report; no note ⇒ "
        "cancelled, else owed (nothing reached Paysera)",
        "creating": "the notes are owed (no transaction key was journalled; an unreserved "
        "transaction lapses at Paysera)",
        "reserving": "never confirmed: the notes are owed, the transaction revoked",
        "confirming": "the confirm may have been sent: pending (a PENDING receipt); the outbox "
        "confirms again while the reservation lives, then reads Paysera's state: confirmed ⇒ "
        "completed, else owed",
        "pending": "the outbox goes on (as confirming)",
        "confirmed": "the receipt, unless the customer left with a PENDING one ⇒ completed",
    },
)
STARTS = frozenset({"paysera_cashin"})
PAID = "PAID IN - your Paysera wallet is credited"
PENDING = (
    "PENDING - Paysera has not confirmed yet. The kiosk keeps trying: your wallet is credited"
    " as soon as Paysera confirms; if it cannot be, support refunds your cash. Keep this receipt."
)


def _refs(tx: Tx) -> dict[str, str]:
    return {"Paysera transaction": tx.provider_ref or "-"}


LOOK = steps.Look("Paysera Wallet cash-in", pending=PENDING, references=_refs)


def settings(ctx: Context) -> PayseraConfig:
    return paysera_ops.settings(ctx)


class PayseraCashIn:
    def __init__(self, ctx: Context, wallet_id: int) -> None:
        self.ctx, self.j = ctx, ctx.journal
        self.cfg = settings(ctx)
        self.paysera = ctx.client("paysera")
        self.wallet_id = wallet_id

    async def run(self) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        ctx.panel.show(PanelState.WAIT)
        tx = await j.call(j.sync.begin, JOURNEY.name, currency=ctx.config.currency.code)
        log.info("%s: Paysera cash-in started", tx.ref)
        if cfg.allowance_id is None or cfg.cashin_max <= 0:
            return await steps.refuse(ctx, tx, "cashin_disabled")
        if ctx.reachability.is_down("paysera"):
            return await steps.refuse(ctx, tx, "provider_offline")
        cap = await steps.cap_today(ctx, tx, cfg.cashin_max)
        if isinstance(cap, Tx):
            return cap
        tx = await j.call(j.sync.transition, tx.id, "accepting", data={"wallet": self.wallet_id})
        ending = await steps.accept_notes(ctx, tx, up_to=cap, confirm_ends=True)
        tx = await j.call(j.sync.get, tx.id)
        if ending != "complete":
            return await steps.end_without_payment(ctx, tx, ending)
        return await self._credit(tx)

    async def _credit(self, tx: Tx) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        ctx.panel.show(PanelState.WAIT)
        tx = await j.call(j.sync.transition, tx.id, "creating", amount_due=tx.credited)
        created_ms = ctx.clock_ms()
        try:
            created = await self.paysera.create(
                Money.of(tx.credited, tx.currency),
                f"Cash deposit {tx.ref}",
                reserve_for_s=cfg.reserve_for_s,
                allowance_id=cfg.allowance_id,
            )
        except ProviderRefused as exc:
            return await steps.owe(ctx, tx, f"create_refused:{told(exc.code, str(exc)).reason}")
        except ProviderError as exc:
            return await steps.owe(ctx, tx, f"provider_unreachable:{type(exc).__name__}")
        tx = await j.call(
            j.sync.transition,
            tx.id,
            "reserving",
            provider_ref=created.key,
            data={"created_ms": created_ms},
        )
        try:
            found = await self.paysera.reserve_to_wallet(created.key, self.wallet_id)
        except ProviderRefused as exc:
            return await self._owe_and_revoke(tx, f"reserve_refused:{told(exc.code).reason}")
        except ProviderError as exc:
            return await self._owe_and_revoke(tx, f"provider_unreachable:{type(exc).__name__}")
        if found.status != "reserved" or found.total != tx.credited:
            return await self._owe_and_revoke(tx, f"reservation_mismatch:{found.status}")
        call = paysera_ops.cashin_confirm_call(
            tx,
            created.key,
            now_ms=ctx.clock_ms(),
            created_ms=created_ms,
            reserve_for_s=cfg.reserve_for_s,
        )
        wait = cfg.confirm_wait_s
        tx = await steps.deliver(ctx, tx, "confirming", call, wait, "confirm_unconfirmed")
        if tx.state == "confirmed":
            return await finish_confirmed(ctx, tx)
        if tx.state == "owed":
            await steps.print_queued(ctx, tx)
            ctx.panel.show(PanelState.REFUSED)
        return tx

    async def _owe_and_revoke(self, tx: Tx, reason: str) -> Tx:
        tx = await steps.owe(self.ctx, tx, reason)
        await paysera_ops.queue_revoke(self.ctx, tx, self.cfg.reserve_for_s)
        return tx


async def finish_confirmed(ctx: Context, tx: Tx) -> Tx:
    return await steps.finish(ctx, tx, "cashin", PAID)


async def run(ctx: Context, request: Any) -> Tx:
    return await PayseraCashIn(ctx, request.wallet_id).run()


def operations(ctx: Context) -> list[Any]:
    return [paysera_ops.PayseraCashInConfirm(ctx), paysera_ops.PayseraRevoke(ctx)]


# --- recovery ------------------------------------------------------------------------------


async def recover(ctx: Context, tx: Tx) -> Tx:
    """Local decisions only; the outbox settles pending confirms in the background."""
    j = ctx.journal
    if tx.state == "checking":
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    if tx.state == "accepting":
        return await steps.end_without_payment(ctx, tx, "interrupted")
    if tx.state == "creating":
        return await steps.owe(ctx, tx, "interrupted_before_reserve")
    if tx.state == "reserving":
        tx = await steps.owe(ctx, tx, "interrupted_before_confirm")
        await paysera_ops.queue_revoke(ctx, tx, settings(ctx).reserve_for_s)
        return tx
    if tx.state == "confirming":
        for row in await j.call(j.sync.outbox_rows, tx.id, queued_only=True):
            if row["op"] == paysera_ops.PayseraCashInConfirm.name:
                await j.call(j.sync.mark_in_doubt, row["id"], "interrupted")
        tx = await j.call(j.sync.get, tx.id)
        if tx.state != "confirming":
            return tx
        confirms = await j.call(j.sync.effects, tx.id, kind="confirm")
        return await steps.pend(ctx, tx, confirms[-1].id, "interrupted")
    if tx.state == "confirmed":
        return await finish_confirmed(ctx, tx)
    return tx
