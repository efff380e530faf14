"""Rapyd cash-out by OTP: the customer's wallet is debited, the recycler pays the notes, and
what it could not pay goes back to the wallet (Reverse Withdrawal).

States (``JOURNEY``)::

    checking ─> opening ─> open ─> withdrawing ─> withdrawn ─> dispensing ─> completed
       └> refused  └> refused └> refused │  └> refused           ├─> owed | unknown
                                         └> pending ─> void      └─> reversing ─> completed
                                              └──────> reversing       │      void | owed
                                                                       └─> pending

- before the session: the amount (the envelope's, or chosen from ``[cashout] presets``) is
  within ``cashout_max`` and the recycler can pay it exactly (the OTP lives 30 s: everything
  that can be checked locally is checked before it is used);
- open session (``login``) with the OTP and the phone; its close (``rapyd.logout``) is an outbox
  row from that moment, and goes once the session is no longer needed, whatever happened;
- the account of the kiosk's currency, its balance, then the withdraw through the outbox
  (``rapyd.withdraw``, idempotent); a lost answer is settled by replaying the same request;
- one payout; what it did not pay is reversed (``rapyd.reverse``, keyed by the withdrawal's
  ``transaction_id``) and the receipt says what was paid and what went back; a reversal that
  fails for good leaves the rest owed;
- no answer within ``call_wait_s``: a PENDING receipt; a withdrawal found later is reversed in
  full (never paid out to a customer who left).
"""

from __future__ import annotations

import logging
from typing import Any

from drivers.panel import PanelState
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.flows import cashout, rapyd_ops, steps
from kiosk.flows.context import Context
from kiosk.journal import Tx
from kiosk.journeys import define
from kiosk.money import Money
from kiosk.providers.rapyd.config import RapydConfig
from kiosk.providers.rapyd.outcomes import Told, told

log = logging.getLogger("kiosk.flows.rapyd")

JOURNEY = define(
    "rapyd_cashout",
    "rapyd",
    "out",
    "checking",
    {
        "checking": "opening refused",
        "opening": "open refused",
        "open": "withdrawing refused",
        "withdrawing": "withdrawn refused pending",
        "pending": "reversing void completed owed",
        "withdrawn": "dispensing reversing",
        "dispensing": "completed reversing owed unknown",
        "reversing": "completed void owed pending",
    },
    {
        "checking": "nothing moved: refused",
        "opening": "nothing moved: refused (a session opened without our knowing expires)",
        "open": "nothing moved: refused; the logout goes",
        "withdrawing": "the withdraw may have been sent: pending (a PENDING receipt); the "
        "outbox replays it: withdrawn ⇒ reversed in full, else void",
        "pending": "the outbox goes on",
        "withdrawn": "debited, no payout began: reversed in full",
        "dispensing": "the recycler's report or levels settle what was paid; the rest is "
        "reversed; levels unreadable ⇒ unknown (technician)",
        "reversing": "the outbox goes on with the reversal (queued again if it was lost)",
    },
)
STARTS = frozenset({"rapyd_cashout"})
PENDING = (
    "PENDING - Rapyd has not answered yet. If your wallet was debited, the kiosk gives it"
    " back in full; if it cannot, support pays you. Keep this receipt."
)


def _refs(tx: Tx) -> dict[str, str]:
    return {"Rapyd transaction": tx.provider_ref or "-"}


LOOK = steps.Look("Rapyd cash-out", pending=PENDING, references=_refs)


def settings(ctx: Context) -> RapydConfig:
    return rapyd_ops.settings(ctx)


async def decline(ctx: Context, tx: Tx, outcome: Told, amount: int | None = None) -> Tx:
    return await steps.decline(ctx, tx, outcome.reason, outcome.line, amount)


class RapydCashOut:
    def __init__(self, ctx: Context, otp: str, phone: str, amount: Money | None) -> None:
        self.ctx, self.j = ctx, ctx.journal
        self.cfg = settings(ctx)
        self.rapyd = ctx.client("rapyd")
        self.otp, self.phone, self.amount = otp, phone, amount

    async def run(self) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        ctx.panel.show(PanelState.WAIT)
        tx = await j.call(j.sync.begin, JOURNEY.name, currency=ctx.config.currency.code)
        log.info("%s: Rapyd cash-out started", tx.ref)
        if (
            ended := await cashout.open_for(ctx, tx, cfg.cashout_max, "rapyd", "Rapyd")
        ) is not None:
            return ended
        amount = await cashout.prepare(ctx, tx, self.amount, cfg.cashout_max)
        if isinstance(amount, Tx):
            return amount
        tx = await j.call(j.sync.transition, tx.id, "opening", amount_due=amount)
        return await self._open(tx)

    async def _open(self, tx: Tx) -> Tx:
        ctx, j = self.ctx, self.j
        ctx.panel.show(PanelState.WAIT)
        try:
            session = await self.rapyd.login(self.cfg.pos_id, self.otp, self.phone)
        except ProviderRefused as exc:
            return await decline(ctx, tx, told(exc.code))
        except ProviderError as exc:
            why = f"provider_unreachable:{type(exc).__name__}"
            return await decline(ctx, tx, Told(why, "Rapyd did not answer."))
        logout = rapyd_ops.logout_call(tx, session, ctx.clock_ms())
        with ctx.outbox().serving(tx.id):
            tx, _, _ = await j.call(j.sync.start_call, tx.id, "open", logout)
            account = session.account(tx.currency)
            if account is None:
                no = Told("no_account", f"Your wallet has no {tx.currency} account.")
                tx = await decline(ctx, tx, no)
            elif account.balance.minor < tx.amount_due:
                tx = await decline(ctx, tx, told("ERROR_INSUFFICIENT_FUNDS"))
            else:
                tx = await self._withdraw(tx, session, account.id)
        await rapyd_ops.close_now(ctx, tx)
        return tx

    async def _withdraw(self, tx: Tx, session: Any, account_id: str) -> Tx:
        ctx = self.ctx
        call = rapyd_ops.withdraw_call(tx, session, account_id, ctx.clock_ms())
        wait = self.cfg.call_wait_s
        tx = await steps.deliver(ctx, tx, "withdrawing", call, wait, "withdraw_unconfirmed")
        if tx.state == "pending":
            return tx
        if tx.state != "withdrawn":
            await steps.print_queued(ctx, tx)
            ctx.panel.show(PanelState.REFUSED)
            return tx
        return await pay_out(ctx, tx, wait)


async def pay_out(ctx: Context, tx: Tx, wait_s: float) -> Tx:
    """Rapyd debited the wallet: one payout; what it did not pay is reversed."""
    j = ctx.journal
    tx = await j.call(j.sync.transition, tx.id, "dispensing")
    tx = await cashout.dispense(ctx, tx, tx.amount_due, short="reversing")
    if tx.state == "reversing":
        tx = await reverse(ctx, tx, wait_s)
    return tx


async def reverse(ctx: Context, tx: Tx, wait_s: float) -> Tx:
    """Reverse what was not paid out, the customer waiting for the answer."""
    j = ctx.journal
    session = await rapyd_ops.session_of(ctx, tx)
    withdrawals = await j.call(j.sync.effects, tx.id, kind="withdraw")
    account = str(withdrawals[-1].request.get("account_id")) if withdrawals else ""
    if session is None or not account or not tx.provider_ref:
        tx = await rapyd_ops.owe_rest(ctx, tx, "reversal_impossible:no_session")
        ctx.panel.show(PanelState.REFUSED)
        return tx
    amount = tx.amount_due - tx.dispensed
    call = rapyd_ops.reverse_call(tx, session, account, tx.provider_ref, amount, ctx.clock_ms())
    tx = await steps.deliver(ctx, tx, None, call, wait_s, "reversal_unconfirmed")
    await steps.print_queued(ctx, tx)
    ctx.panel.show(PanelState.DONE if tx.state == "completed" else PanelState.REFUSED)
    return tx


async def run(ctx: Context, request: Any) -> Tx:
    return await RapydCashOut(ctx, request.otp, request.phone, request.amount).run()


def operations(ctx: Context) -> list[Any]:
    return [
        rapyd_ops.RapydWithdraw(ctx),
        rapyd_ops.RapydReverse(ctx),
        rapyd_ops.RapydLogout(ctx),
    ]


# --- recovery ------------------------------------------------------------------------------


async def recover(ctx: Context, tx: Tx) -> Tx:
    """Local decisions only; the outbox replays, reverses and closes in the background."""
    j = ctx.journal
    if tx.state in ("checking", "opening", "open"):
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    if tx.state == "withdrawing":
        for row in await j.call(j.sync.outbox_rows, tx.id, queued_only=True):
            if row["op"] == rapyd_ops.RapydWithdraw.name:
                await j.call(j.sync.mark_in_doubt, row["id"], "interrupted")
        tx = await j.call(j.sync.get, tx.id)
        if tx.state != "withdrawing":
            return tx
        withdrawals = await j.call(j.sync.effects, tx.id, kind="withdraw")
        return await steps.pend(ctx, tx, withdrawals[-1].id, "interrupted")
    if tx.state == "withdrawn":
        tx = await j.call(j.sync.transition, tx.id, "reversing", reason="interrupted_before_payout")
        return await _reversal_queued(ctx, tx)
    if tx.state == "dispensing":
        tx = await cashout.recover_payout(ctx, tx, short="reversing")
        return await _reversal_queued(ctx, tx) if tx.state == "reversing" else tx
    if tx.state == "reversing":
        return await _reversal_queued(ctx, tx)
    return tx  # pending: the outbox goes on


async def _reversal_queued(ctx: Context, tx: Tx) -> Tx:
    j = ctx.journal
    rows = await j.call(j.sync.outbox_rows, tx.id, queued_only=True)
    if any(r["op"] == rapyd_ops.RapydReverse.name for r in rows):
        return tx
    return await rapyd_ops.start_reversal(ctx, tx, tx.provider_ref or "")
