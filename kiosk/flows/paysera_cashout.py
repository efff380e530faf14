"""Paysera cash-out: the customer's wallet pays, the recycler pays the customer notes.

States (``JOURNEY``)::

    checking ──> creating ──> reserving ──> confirming ──> confirmed ──> dispensing ──> completed
       │            │             │            │ └──> pending ──> owed | void    └──> owed | unknown
       └> refused   └> refused    └> refused   └──> refused | owed

Paysera's guidance is the design: **confirm only what can be paid**.

- before anything is created: the code is new to this kiosk (a keyed hash only, never the
  code), Paysera is reachable, the amount (from the envelope, or chosen from ``[cashout]
  presets``) is within ``cashout_max`` and what ``cashout_day_max`` leaves today, the kiosk
  is not cooling down after ``code_attempts`` refused codes in a row, the recycler can pay the
  exact amount, and an amount above ``approval_above`` (or ``[limits] approval_above``) is
  approved by a technician (:mod:`kiosk.flows.approval`);
- create (``reserve_for_s``, at most 5 minutes) → reserve with the customer's code; the
  transaction key is journalled before the reserve. Any refusal or doubt before the confirm:
  ``refused`` with a DECLINED receipt saying why, and the transaction revoked (outbox
  ``paysera.revoke``). A reservation moves no money: nothing is owed;
- the recycler is asked again, then the confirm is an outbox call (``paysera.confirm``,
  :mod:`kiosk.flows.paysera_ops`), committed with ``confirming`` before it is sent. A lost reply
  is settled by Paysera's state (a still-reserved transaction is revoked, which makes "not
  confirmed" final); the confirm itself is never sent twice;
- confirmed ⇒ one payout (:func:`kiosk.flows.cashout.dispense`): a payout that fails or stops
  short records the exact amount paid and owes the rest, with its receipt;
- the customer waits ``confirm_wait_s`` for an answer, then leaves with a PENDING receipt; a
  confirm found later is owed in full (never paid out to an empty tray); one found not
  confirmed is ``void``.
"""

from __future__ import annotations

import calendar
import logging
import time
from typing import Any, Final

from drivers.panel import PanelState
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.flows import cashout, paysera_ops, steps
from kiosk.flows.context import Context
from kiosk.journal import Tx
from kiosk.journeys import define
from kiosk.money import Money
from kiosk.providers.paysera.config import PayseraConfig
from kiosk.providers.paysera.outcomes import Told, told

log = logging.getLogger("kiosk.flows.paysera")

JOURNEY = define(
    "paysera_cashout",
    "paysera",
    "out",
    "checking",
    {
        "checking": "creating refused",
        "creating": "reserving refused",
        "reserving": "confirming refused",
        "confirming": "confirmed refused pending owed",
        "pending": "owed void",
        "confirmed": "dispensing owed",
        "dispensing": "completed owed unknown",
    },
    {
        "checking": "nothing moved: refused",
        "creating": "nothing was reserved (the key was not journalled): refused; an unreserved "
        "transaction lapses at Paysera",
        "reserving": "never confirmed: refused, and the transaction revoked",
        "confirming": "the confirm may have been sent: pending (a PENDING receipt); the outbox "
        "settles it from Paysera's state: confirmed ⇒ owed in full, else void",
        "pending": "the outbox goes on (as confirming)",
        "confirmed": "the wallet paid and no payout began: owed in full (never paid out to a "
        "customer who may have left)",
        "dispensing": "the recycler's report or levels settle what was paid; the rest is owed; "
        "levels unreadable ⇒ unknown (technician)",
    },
)
STARTS = frozenset({"paysera_cashout"})

COOL_DOWN_S: Final = 600
"""After ``code_attempts`` refused codes in a row, no code is sent to Paysera for this long."""
CODE_FAULTS: Final = frozenset({"invalid_code", "code_expired"})
PAID = "PAID OUT - count your notes"
PENDING = (
    "PENDING - Paysera has not answered yet. If Paysera took the money, support pays you the"
    " full amount; if not, nothing was taken. Keep this receipt."
)


def _refs(tx: Tx) -> dict[str, str]:
    return {"Paysera transaction": tx.provider_ref or "-"}


LOOK = steps.Look("Paysera Wallet cash-out", pending=PENDING, references=_refs)


def settings(ctx: Context) -> PayseraConfig:
    return paysera_ops.settings(ctx)


class PayseraCashOut:
    def __init__(self, ctx: Context, code: str, amount: Money | None) -> None:
        self.ctx, self.j = ctx, ctx.journal
        self.cfg = settings(ctx)
        self.paysera = ctx.client("paysera")
        self.code, self.amount = code, amount

    async def run(self) -> Tx:
        ctx, j = self.ctx, self.j
        ctx.panel.show(PanelState.WAIT)
        code_hash = j.sync.code_hash(self.code)  # pure HMAC, no I/O
        cur = ctx.config.currency.code
        tx = await j.call(j.sync.begin, JOURNEY.name, currency=cur, code_hash=code_hash)
        log.info("%s: Paysera cash-out started", tx.ref)
        if self.cfg.cashout_max <= 0:
            return await steps.refuse(ctx, tx, "cashout_disabled")
        if ctx.dispenser is None:
            return await steps.refuse(ctx, tx, "no_recycler")
        if await j.call(j.sync.code_seen, self.code):
            return await self._decline(tx, Told("code_already_used", "This code was used."))
        if await j.call(cooling_down, j.sync, self.cfg.code_attempts):
            return await self._decline(
                tx, Told("too_many_code_attempts", "Too many refused codes. Try again later.")
            )
        if ctx.reachability.is_down("paysera"):
            return await self._decline(tx, Told("provider_offline", "Paysera cannot be reached."))
        amount = await cashout.prepare(
            ctx, tx, self.amount, self.cfg.cashout_max, approval_above=self.cfg.approval_above
        )
        if isinstance(amount, Tx):
            return amount
        return await self._create(tx, amount)

    # --- the transaction, its reservation and the confirm ------------------------------------

    async def _create(self, tx: Tx, amount: int) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        tx = await j.call(j.sync.transition, tx.id, "creating", amount_due=amount)
        created_ms = ctx.clock_ms()
        try:
            created = await self.paysera.create(
                Money.of(amount, tx.currency),
                f"Cash withdrawal {tx.ref}",
                reserve_for_s=cfg.reserve_for_s,
            )
        except ProviderRefused as exc:
            return await self._decline(tx, told(exc.code, str(exc)))
        except ProviderError as exc:
            # Perhaps created, never reserved: it lapses after reserve_for at Paysera.
            why = f"provider_unreachable:{type(exc).__name__}"
            return await self._decline(tx, Told(why, "Paysera did not answer."))
        tx = await j.call(
            j.sync.transition,
            tx.id,
            "reserving",
            provider_ref=created.key,
            data={"created_ms": created_ms},
        )
        return await self._reserve(tx, created_ms)

    async def _reserve(self, tx: Tx, created_ms: int) -> Tx:
        key, j = tx.provider_ref or "", self.j
        await j.call(j.sync.use_code, self.code, tx.id)  # sent once: never again here
        try:
            found = await self.paysera.reserve_with_code(key, self.code)
        except ProviderRefused as exc:
            outcome = told(exc.code, str(exc))
            return await self._decline(tx, outcome, revoke=True)
        except ProviderError as exc:
            why = f"provider_unreachable:{type(exc).__name__}"
            return await self._decline(tx, Told(why, "Paysera did not answer."), revoke=True)
        if (
            found.status != "reserved"
            or found.total != tx.amount_due
            or any(p.amount.code != tx.currency for p in found.payments)
        ):
            why = f"reservation_mismatch:{found.status}"
            mismatch = Told(why, "Paysera's reservation did not match.")
            return await self._decline(tx, mismatch, revoke=True)
        if not await cashout.can_pay(self.ctx, tx.amount_due):  # confirm only what can be paid
            cannot = Told("cannot_pay_amount", cashout.CANNOT_PAY)
            return await self._decline(tx, cannot, revoke=True)
        return await self._confirm(tx, created_ms)

    async def _confirm(self, tx: Tx, created_ms: int) -> Tx:
        ctx = self.ctx
        now = ctx.clock_ms()
        call = paysera_ops.confirm_call(
            tx,
            tx.provider_ref or "",
            now_ms=now,
            created_ms=created_ms,
            reserve_for_s=self.cfg.reserve_for_s,
        )
        wait_s = self.cfg.confirm_wait_s
        tx = await steps.deliver(ctx, tx, "confirming", call, wait_s, "confirm_unconfirmed")
        if tx.state == "pending":
            return tx
        if tx.state == "confirmed":
            return await pay_out(ctx, tx)
        await steps.print_queued(ctx, tx)
        ctx.panel.show(PanelState.REFUSED)
        return tx

    # --- refusals ----------------------------------------------------------------------------

    async def _decline(
        self, tx: Tx, outcome: Told, amount: int | None = None, *, revoke: bool = False
    ) -> Tx:
        """Nothing moved: ``refused`` with a DECLINED receipt saying why (and the reservation
        revoked through the outbox when Paysera holds one)."""
        tx = await decline(self.ctx, tx, outcome, amount)
        if revoke and tx.provider_ref:
            await paysera_ops.queue_revoke(self.ctx, tx, self.cfg.reserve_for_s)
        return tx


async def decline(ctx: Context, tx: Tx, outcome: Told, amount: int | None = None) -> Tx:
    """``refused`` for ``outcome.reason``, with the DECLINED receipt saying why."""
    return await steps.decline(ctx, tx, outcome.reason, outcome.line, amount)


def cooling_down(journal: Any, attempts: int, now_s: float | None = None) -> bool:
    """``attempts`` Paysera cash-outs in a row refused for their code, the last within
    :data:`COOL_DOWN_S`: the kiosk stops sending codes to Paysera for a while."""
    now = time.time() if now_s is None else now_s
    ended = [t for t in journal.transactions(limit=200) if t.journey == JOURNEY.name and t.closed]
    streak: list[Tx] = []
    for tx in ended:  # newest first
        if tx.reason in CODE_FAULTS:
            streak.append(tx)
        elif tx.reason != "too_many_code_attempts":
            break
        if len(streak) >= attempts:
            break
    if len(streak) < attempts:
        return False
    return now - _epoch_s(streak[0].updated_at) < COOL_DOWN_S


def _epoch_s(iso: str) -> float:
    whole = iso.rstrip("Z").partition(".")[0]
    return float(calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")))


async def pay_out(ctx: Context, tx: Tx) -> Tx:
    """Paysera confirmed: one payout of the whole amount (what it does not pay is owed)."""
    j = ctx.journal
    tx = await j.call(j.sync.transition, tx.id, "dispensing")
    return await cashout.dispense(ctx, tx, tx.amount_due)


async def run(ctx: Context, request: Any) -> Tx:
    return await PayseraCashOut(ctx, request.code, request.amount).run()


def operations(ctx: Context) -> list[Any]:
    return [paysera_ops.PayseraConfirm(ctx), paysera_ops.PayseraRevoke(ctx)]


# --- recovery ------------------------------------------------------------------------------


async def recover(ctx: Context, tx: Tx) -> Tx:
    """Local decisions only (READY must come within the start budget whatever Paysera does):
    the outbox confirms nothing after a restart, it only reads, revokes and settles."""
    j = ctx.journal
    cfg = settings(ctx)
    if tx.state in ("checking", "creating"):
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    if tx.state == "reserving":
        tx = await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
        await paysera_ops.queue_revoke(ctx, tx, cfg.reserve_for_s)
        return tx
    if tx.state == "confirming":
        rows = await j.call(j.sync.outbox_rows, tx.id, queued_only=True)
        for row in rows:
            if row["op"] == paysera_ops.PayseraConfirm.name:
                await j.call(j.sync.mark_in_doubt, row["id"], "interrupted")
        tx = await j.call(j.sync.get, tx.id)
        if tx.state != "confirming":
            return tx
        confirms = await j.call(j.sync.effects, tx.id, kind="confirm")
        return await steps.pend(ctx, tx, confirms[-1].id, "interrupted")
    if tx.state == "confirmed":
        return await paysera_ops.owe_all(ctx, tx, "confirmed_payout_not_started")
    if tx.state == "dispensing":
        return await cashout.recover_payout(ctx, tx)
    return tx  # pending: the outbox goes on
