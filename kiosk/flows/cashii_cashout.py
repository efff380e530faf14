"""Cashii cash-out: the kiosk creates a remote payment, the customer pays it in the Cashii
app, and only a ``paid`` read through the API releases the cash.

States (``JOURNEY``)::

    checking ─> creating ─> waiting ─> paid ─> dispensing ─> completed
       └> refused  └> refused  │  │      └> owed       └─> owed | unknown
                               │  └> void (rejected, canceled)
                               └> pending ─> owed (paid after all) | void

- before the payment: the amount (the envelope's, or chosen from ``[cashout] presets``) is
  within ``cashout_max`` and the recycler can pay it exactly;
- the create's intent is committed before the request, its payment id right after (the seed's
  step 5): a create whose answer was lost is **never sent again** (Cashii has no idempotency:
  a second create would be a second payment); the journey ends ``refused``, and no slip was
  printed, so nobody can pay that payment;
- a pay slip (the payment page's QR and the 16-digit code); the kiosk reads the payment every
  ``poll_interval_s`` for ``pay_timeout_s``: ``paid`` (with our amount and currency) ⇒ one
  payout; ``rejected``/``canceled`` ⇒ ``void``, nothing paid out;
- time out, or the red button: the slip is void (a receipt says so); the outbox keeps reading
  the payment for ``watch_days`` (``cashii.watch``): paid after all ⇒ **owed** in full (never
  paid out to a customer who left); not paid ⇒ ``void``;
- a payout that fails or stops short after ``paid``: the exact amount paid is recorded and the
  rest owed (there is no refund API).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from drivers.panel import PanelEvent, PanelState
from kiosk import receipts
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.flows import cashout, steps
from kiosk.flows.context import Context, Sources
from kiosk.journal import Call, Outcome, Tx
from kiosk.journeys import define
from kiosk.money import Money
from kiosk.outbox import Attempt, Delivery, Verdict
from kiosk.providers.cashii.client import NOT_PAID, Payment
from kiosk.providers.cashii.config import CashiiConfig

log = logging.getLogger("kiosk.flows.cashii")

JOURNEY = define(
    "cashii_cashout",
    "cashii",
    "out",
    "checking",
    {
        "checking": "creating refused",
        "creating": "waiting refused",
        "waiting": "paid void pending",
        "pending": "owed void",
        "paid": "dispensing owed",
        "dispensing": "completed owed unknown",
    },
    {
        "checking": "nothing moved: refused",
        "creating": "the create may have happened but no slip was printed (nobody can pay it): "
        "refused; it is never sent again",
        "waiting": "the slip may be paid: pending; the outbox reads the payment: paid ⇒ owed "
        "in full, else void",
        "pending": "the outbox goes on",
        "paid": "paid and no payout began: owed in full (never paid out to a customer who may "
        "have left)",
        "dispensing": "the recycler's report or levels settle what was paid; the rest is owed; "
        "levels unreadable ⇒ unknown (technician)",
    },
)
STARTS = frozenset({"cashii_cashout"})
DAY_MS: Final = 24 * 3600 * 1000
VOID_SLIP = (
    "VOID - do not pay this slip any more. If you paid it already, keep this receipt: the"
    " kiosk sees the payment and support pays you the cash."
)


def _refs(tx: Tx) -> dict[str, str]:
    return {"Cashii payment": tx.provider_ref or "-"}


LOOK = steps.Look("Cashii", pending=VOID_SLIP, references=_refs)


def settings(ctx: Context) -> CashiiConfig:
    c: CashiiConfig | None = ctx.config.providers.get("cashii")
    if c is None:
        raise LookupError("Cashii is not configured on this kiosk")
    return c


def pay_url(cfg: CashiiConfig, payment_id: str) -> str:
    return f"{cfg.payment_page_url}?code={payment_id}"


class CashiiCashOut:
    def __init__(self, ctx: Context, amount: Money | None) -> None:
        self.ctx, self.j = ctx, ctx.journal
        self.cfg = settings(ctx)
        self.cashii = ctx.client("cashii")
        self.amount = amount

    async def run(self) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        ctx.panel.show(PanelState.WAIT)
        tx = await j.call(j.sync.begin, JOURNEY.name, currency=ctx.config.currency.code)
        log.info("%s: Cashii cash-out started", tx.ref)
        if (
            ended := await cashout.open_for(ctx, tx, cfg.cashout_max, "cashii", "Cashii")
        ) is not None:
            return ended
        amount = await cashout.prepare(ctx, tx, self.amount, cfg.cashout_max)
        if isinstance(amount, Tx):
            return amount
        tx = await j.call(j.sync.transition, tx.id, "creating", amount_due=amount)
        return await self._create(tx)

    async def _create(self, tx: Tx) -> Tx:
        ctx, j = self.ctx, self.j
        eff = await j.call(j.sync.intent, tx.id, "create", f"{tx.ref}-create", amount=tx.amount_due)
        try:
            payment_id = await self.cashii.create(
                Money.of(tx.amount_due, tx.currency),
                f"Cash withdrawal {tx.ref}",
                metadata={"kiosk_id": ctx.config.kiosk_id, "reference": tx.ref},
            )
        except ProviderRefused as exc:
            await j.call(j.sync.outcome, eff.id, "failed", outcome={"code": exc.code})
            return await steps.decline(
                ctx, tx, f"create_refused:{exc.code}", "Cashii refused the payment."
            )
        except ProviderError as exc:
            # Perhaps created: never again (a second create is a second payment); no slip was
            # printed, so nobody can pay it.
            await j.call(j.sync.outcome, eff.id, "unknown", outcome={"error": type(exc).__name__})
            why = f"create_unconfirmed:{type(exc).__name__}"
            return await steps.decline(ctx, tx, why, "Cashii did not answer.")
        tx, _ = await j.call(
            j.sync.decide,
            tx.id,
            "waiting",
            outcome=Outcome(eff.id, "done", outcome={"payment_id": payment_id}),
            provider_ref=payment_id,
        )
        return await self._wait(tx, payment_id)

    async def _wait(self, tx: Tx, payment_id: str) -> Tx:
        """The slip, then the customer pays: read the payment until it settles, the time is
        up, or the red button."""
        ctx, j, cfg = self.ctx, self.j, self.cfg
        code = " ".join(payment_id[i : i + 4] for i in range(0, 16, 4))
        doc = await _slip(ctx, tx, pay_url(cfg, payment_id), code)
        await receipts.issue(j, ctx.printer, tx, "slip", doc)
        ctx.panel.show(PanelState.WAIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.pay_timeout_s
        sources = Sources(panel=ctx.panel.next_event)
        why = "pay_timeout"
        try:
            while loop.time() < deadline:
                payment = await self._read(payment_id)
                if payment is not None and _ours(payment, tx):
                    if payment.status == "paid":
                        return await self._paid(tx, payment)
                    if payment.status in NOT_PAID:
                        return await self._not_paid(tx, payment.status)
                got = await sources.next(min(cfg.poll_interval_s, deadline - loop.time()))
                if got is not None and got[1] == PanelEvent.CANCEL:
                    why = "cancelled_at_kiosk"
                    break
        finally:
            await sources.close()
        return await self._give_up(tx, payment_id, why)

    async def _read(self, payment_id: str) -> Payment | None:
        try:
            payment: Payment = await self.cashii.get(payment_id)
        except ProviderError as exc:  # a read: try again at the next tick
            log.info("Cashii read failed (%s); reading again", type(exc).__name__)
            return None
        return payment

    async def _paid(self, tx: Tx, payment: Payment) -> Tx:
        j = self.j
        tx, _ = await j.call(
            j.sync.decide, tx.id, "paid", data={"payer": bool(payment.payer)}, reason="paid"
        )
        log.info("%s: Cashii says the payment is paid", tx.ref)
        return await pay_out(self.ctx, tx)

    async def _not_paid(self, tx: Tx, status: str) -> Tx:
        ctx, j = self.ctx, self.j
        reason = f"payment_{status}"
        line = f"The payment was {status} in the app."
        doc = await steps.receipt(
            ctx, steps.projected(tx, "void", 0, reason), "declined", f"NOT DONE: {line}"
        )
        tx, receipt_id = await j.call(
            j.sync.decide,
            tx.id,
            "void",
            receipt=("declined", receipts.to_json(doc)),
            reason=reason,
        )
        if receipt_id is not None:
            await receipts.print_queued(j, ctx.printer, receipt_id, doc)
        ctx.panel.show(PanelState.REFUSED)
        return tx

    async def _give_up(self, tx: Tx, payment_id: str, why: str) -> Tx:
        """The slip is void at the kiosk; the outbox watches the payment in the background."""
        ctx, j = self.ctx, self.j
        call = watch_call(tx, payment_id, ctx.clock_ms(), self.cfg.watch_days)
        tx, eff, _ = await j.call(j.sync.start_call, tx.id, None, call)
        return await steps.pend(ctx, tx, eff.id, why)


async def _slip(ctx: Context, tx: Tx, url: str, code: str) -> Any:
    look = steps.look_of(tx)
    return receipts.for_kiosk(
        ctx.config,
        tx,
        "slip",
        provider_name=look.provider,
        references=look.references(tx),
        status_text="The cash comes out as soon as Cashii confirms your payment.",
        extra={"pay_url": url, "pay_code": code},
    )


def _ours(payment: Payment, tx: Tx) -> bool:
    """The payment read is the one this transaction created, for its amount."""
    ok = payment.id == tx.provider_ref and payment.amount == Money.of(tx.amount_due, tx.currency)
    if not ok:
        log.error("%s: Cashii's payment does not match the transaction: not paid out", tx.ref)
    return ok


async def pay_out(ctx: Context, tx: Tx) -> Tx:
    """Cashii says paid: one payout; what it does not pay is owed (no refund API)."""
    j = ctx.journal
    tx = await j.call(j.sync.transition, tx.id, "dispensing")
    return await cashout.dispense(ctx, tx, tx.amount_due)


def watch_call(tx: Tx, payment_id: str, now_ms: int, days: int) -> Call:
    return Call(
        op=CashiiWatch.name,
        kind="watch",
        idem_key=f"{tx.ref}-watch",
        amount=tx.amount_due,
        request={"payment_id": payment_id},
        public={"payment_id": payment_id},
        request_time_ms=now_ms,
        void_after_ms=now_ms + days * DAY_MS,
    )


class CashiiWatch:
    """``cashii.watch``: read a payment whose slip is void until it settles. Reads move no
    money, so nothing is ever in doubt: a failed read is simply tried again. Paid ⇒ owed in
    full (the customer left); rejected, canceled or refunded ⇒ void; still pending once
    ``watch_days`` have passed ⇒ void [INF: Cashii documents no expiry]."""

    name = "cashii.watch"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _state(self, payment_id: str, tx: Tx) -> tuple[Verdict, dict[str, Any]]:
        try:
            payment = await self.ctx.client("cashii").get(payment_id)
        except ProviderError as exc:
            return Verdict.UNKNOWN, {"error": f"get: {type(exc).__name__}"}
        if not _ours(payment, tx):
            return Verdict.UNKNOWN, {"error": "payment does not match"}
        if payment.status == "paid":
            return Verdict.APPLIED, {"status": "paid", "settled_by": "get"}
        if payment.status in NOT_PAID:
            return Verdict.NOT_APPLIED, {"status": payment.status, "final": True}
        return Verdict.UNKNOWN, {"status": payment.status}

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        j = self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        verdict, detail = await self._state(request["payment_id"], tx)
        if verdict is Verdict.APPLIED:
            return Attempt(Delivery.DONE, detail)
        if verdict is Verdict.NOT_APPLIED:
            return Attempt(Delivery.REFUSED, detail, f"payment {detail.get('status')}")
        return Attempt(Delivery.NOT_SENT, detail, str(detail.get("error") or "still pending"))

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        j = self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        verdict, detail = await self._state(tx.provider_ref or "", tx)
        if (
            verdict is Verdict.UNKNOWN
            and self.ctx.outbox().provider_now_ms(row) >= row["void_after_ms"]
        ):
            return Verdict.NOT_APPLIED, {**detail, "gave_up": True}
        return verdict, detail

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        eff = await j.call(j.sync.effect_by_key, row["idem_key"])
        assert eff is not None
        status = "done" if applied else "failed"
        outcome = Outcome(eff.id, status, outcome=detail)
        finish = (row["id"], status, detail)
        if tx.closed:
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            return
        if applied:
            reason = "paid_after_slip_void"
            text = "NOT PAID OUT - you paid after the kiosk stopped waiting; support pays you"
            projected = steps.projected(tx, "owed", tx.amount_due, reason)
            doc = await steps.receipt(ctx, projected, "owed", text)
            await j.call(
                j.sync.decide,
                tx.id,
                "owed",
                outcome=outcome,
                finish_call=finish,
                owe=[(tx.amount_due, reason)],
                receipt=("owed", receipts.to_json(doc)),
                reason=reason,
            )
            log.warning("%s: the void slip was paid: owed %s", tx.ref, tx.amount_due)
            return
        reason = f"payment_{detail.get('status') or 'not_paid'}"
        await j.call(
            j.sync.decide, tx.id, "void", outcome=outcome, finish_call=finish, reason=reason
        )
        log.info("%s: the void slip was not paid (%s)", tx.ref, reason)


async def run(ctx: Context, request: Any) -> Tx:
    return await CashiiCashOut(ctx, request.amount).run()


def operations(ctx: Context) -> list[Any]:
    return [CashiiWatch(ctx)]


# --- recovery ------------------------------------------------------------------------------


async def recover(ctx: Context, tx: Tx) -> Tx:
    """Local decisions only; the outbox reads the payment in the background."""
    j = ctx.journal
    cfg = settings(ctx)
    if tx.state == "checking":
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    if tx.state == "creating":
        for eff in await j.call(j.sync.effects, tx.id, kind="create", status="intent"):
            await j.call(j.sync.outcome, eff.id, "unknown", outcome={"settled_by": "recovery"})
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted_create")
    if tx.state == "waiting":
        call = watch_call(tx, tx.provider_ref or "", ctx.clock_ms(), cfg.watch_days)
        tx, eff, _ = await j.call(j.sync.start_call, tx.id, None, call)
        return await steps.pend(ctx, tx, eff.id, "interrupted")
    if tx.state == "paid":
        reason = "paid_payout_not_started"
        text = "NOT PAID OUT - the kiosk restarted before paying; support pays you"
        projected = steps.projected(tx, "owed", tx.amount_due, reason)
        doc = await steps.receipt(ctx, projected, "owed", text)
        tx, _ = await j.call(
            j.sync.decide,
            tx.id,
            "owed",
            owe=[(tx.amount_due, reason)],
            receipt=("owed", receipts.to_json(doc)),
            reason=reason,
        )
        return tx
    if tx.state == "dispensing":
        return await cashout.recover_payout(ctx, tx)
    return tx
