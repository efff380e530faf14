"""PayBy cash-out with a kiosk order: the kiosk, as a PayBy merchant, creates an order
(``DYNQR``), prints its QR, the customer pays it in the PayBy app, and the cash comes out;
what the recycler could not pay is refunded to the customer.

States (``JOURNEY``)::

    checking ─> creating ─> waiting ─> paid ─> dispensing ─> completed
       └> refused  └> refused  │  │      └> refunding   ├─> refunding ─> completed | void | owed
                               │  └> void (failed)      └─> owed | unknown
                               └> pending ─> void (cancelled) | refunding (paid meanwhile)

- the amount (envelope or presets), ``cashout_max`` and the recycler first;
- the order is created with ``merchantOrderNo = <ref>-order`` (idempotent at PayBy: a create
  whose answer was lost is sent again, and PayBy returns the same order); the slip shows its
  ``tokenUrl`` as a QR; the kiosk reads the order every ``poll_interval_s`` for
  ``cashout_pay_timeout_s``: paid (``PAID_SUCCESS``/``SETTLED``) ⇒ one payout; ``FAILURE`` ⇒
  void;
- time up or the red button: the order is cancelled through the outbox (``payby.cancel``); if
  PayBy says it was paid meanwhile, the whole amount is refunded (never paid out to a customer
  who left);
- a payout short after paid: exactly what was not paid out is refunded through the outbox
  (``payby.refund``, ``refundMerchantOrderNo = <ref>-refund``, idempotent), followed to SUCCESS
  or FAILURE through the refund query; the customer is owed only if the refund fails for good.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Final

from drivers.panel import PanelEvent, PanelState
from kiosk import receipts
from kiosk.errors import KioskError, ProviderError, ProviderRefused
from kiosk.flows import cashout, steps
from kiosk.flows.context import Context, Sources
from kiosk.journal import Call, Tx
from kiosk.journeys import define
from kiosk.money import Money
from kiosk.outbox import Attempt, Delivery, Verdict, classify
from kiosk.providers.payby import config as payby_config
from kiosk.providers.payby.client import PAID, AcquireOrder, OrderStatus, RefundStatus
from kiosk.providers.payby.config import PayByConfig

log = logging.getLogger("kiosk.flows.payby")

JOURNEY = define(
    "payby_cashout",
    "payby",
    "out",
    "checking",
    {
        "checking": "creating refused",
        "creating": "waiting refused",
        "waiting": "paid void pending",
        "pending": "void refunding completed owed",
        "paid": "dispensing refunding",
        "dispensing": "completed refunding owed unknown",
        "refunding": "completed void owed pending",
    },
    {
        "checking": "nothing moved: refused",
        "creating": "no QR was printed (nobody can pay the order; it expires): refused",
        "waiting": "the QR may be paid: pending; the outbox cancels the order, or refunds it "
        "in full if it was paid",
        "pending": "the outbox goes on",
        "paid": "paid and no payout began: refunded in full (never paid out to a customer who "
        "may have left)",
        "dispensing": "the recycler's report or levels settle what was paid; the rest is "
        "refunded; levels unreadable ⇒ unknown (technician)",
        "refunding": "the outbox follows the refund (queued again if it was lost): SUCCESS ⇒ "
        "done, FAILURE ⇒ owed",
    },
)
STARTS = frozenset({"payby_cashout"})
KEEP_MS: Final = 30 * 24 * 3600 * 1000
"""How long the outbox follows a cancel or a refund before giving up (PayBy refunds within
180 days; a refund still CREATED after this is a technician's matter)."""
PAID_CODES: Final = frozenset({"62001", "62003"})
"""PayBy's answers to a cancel of an order that is paid: ORDER_PAID, ORDER_SETTLED."""
PENDING = (
    "VOID - do not pay this QR any more. If you paid it already, PayBy refunds you in full;"
    " if it cannot, support pays you. Keep this receipt."
)


def _refs(tx: Tx) -> dict[str, str]:
    return {"PayBy order": tx.provider_ref or "-"}


LOOK = steps.Look("PayBy cash-out", pending=PENDING, references=_refs)


def settings(ctx: Context) -> PayByConfig:
    p = payby_config.of(ctx.config)
    if p is None:
        raise LookupError("PayBy is not configured on this kiosk")
    return p


class PayByCashOut:
    def __init__(self, ctx: Context, amount: Money | None) -> None:
        self.ctx, self.j = ctx, ctx.journal
        self.cfg = settings(ctx)
        self.payby = ctx.client("payby")
        self.amount = amount

    async def run(self) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        ctx.panel.show(PanelState.WAIT)
        tx = await j.call(j.sync.begin, JOURNEY.name, currency=ctx.config.currency.code)
        log.info("%s: PayBy cash-out started", tx.ref)
        if (
            ended := await cashout.open_for(ctx, tx, cfg.cashout_max, "payby", "PayBy")
        ) is not None:
            return ended
        amount = await cashout.prepare(ctx, tx, self.amount, cfg.cashout_max)
        if isinstance(amount, Tx):
            return amount
        tx = await j.call(j.sync.transition, tx.id, "creating", amount_due=amount)
        return await self._create(tx)

    async def _create(self, tx: Tx) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        expires = ctx.clock_ms() + int((cfg.cashout_pay_timeout_s + 60) * 1000)
        order: AcquireOrder | None = None
        token: str | None = None
        for attempt in (1, 2):  # idempotent on merchantOrderNo: a lost answer is asked again
            try:
                order, token = await self.payby.place_order(
                    f"{tx.ref}-order",
                    "Cash out",
                    Money.of(tx.amount_due, tx.currency),
                    expired_time_ms=expires,
                    scene="DYNQR",
                )
                break
            except ProviderRefused as exc:
                return await steps.decline(
                    ctx, tx, f"order_refused:{exc.code}", "PayBy refused the order."
                )
            except ProviderError as exc:
                log.warning("%s: placeOrder attempt %d: %s", tx.ref, attempt, type(exc).__name__)
        if order is None or token is None or order.status is not OrderStatus.CREATED:
            return await steps.decline(ctx, tx, "order_unconfirmed", "PayBy did not answer.")
        tx = await j.call(j.sync.transition, tx.id, "waiting", provider_ref=order.order_no)
        return await self._wait(tx, token)

    async def _wait(self, tx: Tx, token: str) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        look = steps.look_of(tx)
        doc = receipts.for_kiosk(
            ctx.config,
            tx,
            "slip",
            provider_name=look.provider,
            references=look.references(tx),
            status_text="Scan the QR with the PayBy app and pay; the cash then comes out.",
            extra={"pay_url": token, "pay_code": ""},
        )
        await receipts.issue(j, ctx.printer, tx, "slip", doc)
        ctx.panel.show(PanelState.WAIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.cashout_pay_timeout_s
        sources = Sources(panel=ctx.panel.next_event)
        why = "pay_timeout"
        try:
            while loop.time() < deadline:
                order = await self._read(tx)
                if order is not None and order.status in PAID:
                    tx, _ = await j.call(j.sync.decide, tx.id, "paid", reason="paid")
                    return await pay_out(ctx, tx)
                if order is not None and order.status is OrderStatus.FAILURE:
                    return await _void(ctx, tx, "order_failed", "The PayBy order failed.")
                got = await sources.next(min(cfg.poll_interval_s, deadline - loop.time()))
                if got is not None and got[1] == PanelEvent.CANCEL:
                    why = "cancelled_at_kiosk"
                    break
        finally:
            await sources.close()
        call = cancel_call(tx, ctx.clock_ms())
        tx, eff, _ = await j.call(j.sync.start_call, tx.id, None, call)
        return await steps.pend(ctx, tx, eff.id, why)

    async def _read(self, tx: Tx) -> AcquireOrder | None:
        try:
            order: AcquireOrder = await self.payby.get_order(order_no=tx.provider_ref)
        except ProviderError as exc:  # a read: again at the next tick
            log.info("%s: getOrder failed (%s); reading again", tx.ref, type(exc).__name__)
            return None
        if order.total != Money.of(tx.amount_due, tx.currency):
            log.error("%s: PayBy's order does not match the transaction", tx.ref)
            return None
        return order


async def _void(ctx: Context, tx: Tx, reason: str, line: str) -> Tx:
    j = ctx.journal
    doc = await steps.receipt(
        ctx, steps.projected(tx, "void", 0, reason), "declined", f"NOT DONE: {line}"
    )
    tx, receipt_id = await j.call(
        j.sync.decide, tx.id, "void", receipt=("declined", receipts.to_json(doc)), reason=reason
    )
    if receipt_id is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def pay_out(ctx: Context, tx: Tx) -> Tx:
    """The order is paid: one payout; what it does not pay is refunded."""
    j = ctx.journal
    tx = await j.call(j.sync.transition, tx.id, "dispensing")
    tx = await cashout.dispense(ctx, tx, tx.amount_due, short="refunding")
    if tx.state == "refunding":
        call = refund_call(tx, ctx.clock_ms())
        wait = settings(ctx).pay_wait_s
        tx = await steps.deliver(ctx, tx, None, call, wait, "refund_unconfirmed")
        await steps.print_queued(ctx, tx)
        ctx.panel.show(PanelState.DONE if tx.state == "completed" else PanelState.REFUSED)
    return tx


def cancel_call(tx: Tx, now_ms: int) -> Call:
    return Call(
        op=PayByCancel.name,
        kind="cancel",
        idem_key=f"{tx.ref}-cancel",
        amount=0,
        request={"order_no": tx.provider_ref},
        public={"order_no": tx.provider_ref},
        request_time_ms=now_ms,
        void_after_ms=now_ms + KEEP_MS,
    )


def refund_call(
    tx: Tx,
    now_ms: int,
    *,
    amount: Money | None = None,
    key: str | None = None,
    technician: str | None = None,
) -> Call:
    """The refund of what was not paid out (the journey's, ``<ref>-refund``), or a
    technician's (``<ref>-refund-t<n>``, any amount up to what the order still refunds)."""
    money = amount or Money.of(tx.amount_due - tx.dispensed, tx.currency)
    idem_key = key or f"{tx.ref}-refund"
    public: dict[str, Any] = {"order_no": tx.provider_ref, "refund_no": idem_key}
    if technician is not None:
        public["technician"] = technician
    return Call(
        op=PayByRefund.name,
        kind="refund",
        idem_key=idem_key,
        amount=money.minor,
        request={
            "order_no": tx.provider_ref,
            "amount": money.minor,
            "currency": money.code,
            "reason": "cash not paid out" if technician is None else "technician refund",
        },
        public=public,
        request_time_ms=now_ms,
        void_after_ms=now_ms + KEEP_MS,
    )


async def _queue_refund(ctx: Context, tx: Tx) -> Tx:
    j = ctx.journal
    rows = await j.call(j.sync.outbox_rows, tx.id, queued_only=True)
    if not any(r["op"] == PayByRefund.name for r in rows):
        await j.call(j.sync.start_call, tx.id, None, refund_call(tx, ctx.clock_ms()))
    ctx.outbox().wake()
    return await j.call(j.sync.get, tx.id)


class PayByCancel:
    """``payby.cancel``: the customer stopped (or the time ran out) with the QR unpaid. Applied =
    the order is cancelled (FAILURE) ⇒ void; PayBy says it was paid ⇒ refunded in full."""

    name = "payby.cancel"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        try:
            order = await self.ctx.client("payby").cancel_order(order_no=request["order_no"])
        except ProviderRefused as exc:
            if exc.signed and exc.code in PAID_CODES:  # PayBy says, signed: the order is paid
                detail = {"code": exc.code, "paid": True, "final": True}
                return Attempt(Delivery.REFUSED, detail, str(exc))
            return Attempt(classify(exc), {"code": exc.code} if exc.code else {}, str(exc))
        except ProviderError as exc:
            return Attempt(classify(exc), {"code": exc.code} if exc.code else {}, str(exc))
        if order.status is OrderStatus.FAILURE:
            return Attempt(Delivery.DONE, {"status": "FAILURE", "settled_by": "cancel"})
        return Attempt(Delivery.REFUSED, {"status": str(order.status)})

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        j = self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        try:
            order = await self.ctx.client("payby").get_order(order_no=tx.provider_ref)
        except ProviderError as exc:
            return Verdict.UNKNOWN, {"error": f"getOrder: {type(exc).__name__}"}
        if order.status is OrderStatus.FAILURE:
            return Verdict.APPLIED, {"status": "FAILURE", "settled_by": "getOrder"}
        if order.status in PAID:
            return Verdict.NOT_APPLIED, {"status": str(order.status), "paid": True, "final": True}
        return Verdict.UNKNOWN, {"status": str(order.status)}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await steps.call_end(ctx, row, applied, detail)
        if tx.closed or tx.state != "pending":
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            return
        if applied or not detail.get("paid"):
            await j.call(
                j.sync.decide,
                tx.id,
                "void",
                outcome=outcome,
                finish_call=finish,
                reason="order_cancelled",
            )
            log.info("%s: PayBy order cancelled, nothing paid", tx.ref)
            return
        tx, _ = await j.call(
            j.sync.decide,
            tx.id,
            "refunding",
            outcome=outcome,
            finish_call=finish,
            reason="paid_after_qr_void",
        )
        log.warning("%s: the void QR was paid: refunding it in full", tx.ref)
        await _queue_refund(ctx, tx)


class PayByRefund:
    """``payby.refund``: refund exactly what was not paid out; followed through the refund
    query to SUCCESS (or REFUNDED_SETTLED) or FAILURE (then owed)."""

    name = "payby.refund"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        try:
            refund = await self.ctx.client("payby").refund(
                row["idem_key"],
                Money.of(request["amount"], request["currency"]),
                origin_order_no=request["order_no"],
                reason=request.get("reason", "cash not paid out"),
                device_id=self.ctx.config.kiosk_id,
            )
        except ProviderError as exc:
            return Attempt(classify(exc), {"code": exc.code} if exc.code else {}, str(exc))
        return _refund_attempt(refund.status, refund.fail_code)

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        try:
            refund = await self.ctx.client("payby").get_refund(
                refund_merchant_order_no=row["idem_key"]
            )
        except ProviderRefused as exc:
            if exc.signed and exc.code == "62007":  # no such refund (yet)
                return Verdict.NOT_APPLIED, {"code": exc.code}
            return Verdict.UNKNOWN, {"error": f"refund query refused ({exc.code})"}
        except ProviderError as exc:
            return Verdict.UNKNOWN, {"error": f"refund query: {type(exc).__name__}"}
        if refund.status in (RefundStatus.SUCCESS, RefundStatus.REFUNDED_SETTLED):
            return Verdict.APPLIED, {"status": str(refund.status), "settled_by": "query"}
        if refund.status is RefundStatus.FAILURE:
            detail = {"status": "FAILURE", "fail_code": refund.fail_code, "final": True}
            return Verdict.NOT_APPLIED, detail
        return Verdict.UNKNOWN, {"status": str(refund.status)}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await steps.call_end(ctx, row, applied, detail)
        eff = await j.call(j.sync.effect_by_key, row["idem_key"])
        if eff is not None and "technician" in eff.request:
            await _settle_technician(ctx, tx, row, eff, applied, detail, inline=inline)
            return
        if tx.closed:
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            return
        back = Money.of(tx.amount_due - tx.dispensed, tx.currency)
        if applied:
            if tx.dispensed:
                kind, state = "cashout", "completed"
                paid = Money.of(tx.dispensed, tx.currency)
                text = f"PAID OUT {paid} - {back} refunded to your PayBy account"
            else:
                kind, state = "declined", "void"
                text = f"NOT DONE: the kiosk paid nothing out; {back} refunded to your account."
            doc = await steps.receipt(ctx, steps.projected(tx, state, 0, "refunded"), kind, text)
            await j.call(
                j.sync.decide,
                tx.id,
                state,
                outcome=outcome,
                finish_call=finish,
                receipt=(kind, receipts.to_json(doc)) if inline else None,
                reason="refunded" if tx.dispensed else "refunded_all",
            )
            log.info("%s: PayBy refunded %s", tx.ref, back)
            return
        reason = f"refund_failed:{detail.get('fail_code') or detail.get('code') or '?'}"
        short = tx.amount_due - tx.dispensed
        text = "NOT FULLY PAID - keep this receipt; support will pay the rest"
        doc = await steps.receipt(ctx, steps.projected(tx, "owed", short, reason), "owed", text)
        await j.call(
            j.sync.decide,
            tx.id,
            "owed",
            outcome=outcome,
            finish_call=finish,
            owe=[(short, reason)],
            receipt=("owed", receipts.to_json(doc)),
            reason=reason,
        )
        log.warning("%s: the refund failed (%s): owed %s", tx.ref, reason, back)


def _refund_attempt(status: RefundStatus, fail_code: str | None) -> Attempt:
    if status in (RefundStatus.SUCCESS, RefundStatus.REFUNDED_SETTLED):
        return Attempt(Delivery.DONE, {"status": str(status), "settled_by": "refund"})
    if status is RefundStatus.FAILURE:
        return Attempt(Delivery.REFUSED, {"status": "FAILURE", "fail_code": fail_code})
    return Attempt(Delivery.IN_DOUBT, {"status": str(status)}, "refund accepted, not final yet")


# --- a technician's refund (kiosk refund REF [--amount A]) ---------------------------------


async def refund(ctx: Context, tx: Tx, amount: str | None, technician: str) -> dict[str, Any]:
    """Refund (part of) the PayBy order of a finished cash-out: by default what the kiosk owes
    on it, else ``amount`` (in the order's currency: a BUSD order gets the crypto refund), at
    most what PayBy can still refund. One outbox call under its own key (``<ref>-refund-t<n>``,
    so the same refund sent twice refunds once); a success settles the transaction's open
    liabilities up to the amount, in the same commit. The reply says where it stands."""
    j = ctx.journal
    if tx.closed is False:
        raise ValueError(f"{tx.ref} is still {tx.state}: the kiosk settles it itself")
    if not tx.provider_ref:
        raise ValueError(f"{tx.ref} created no PayBy order: nothing to refund")
    queued = await j.call(j.sync.outbox_rows, tx.id, queued_only=True)
    if any(r["op"] == PayByRefund.name for r in queued):
        raise ValueError(f"a refund of {tx.ref} is still being followed: see kiosk journal")
    try:
        order = await ctx.client("payby").get_order(order_no=tx.provider_ref)
    except ProviderError as exc:
        raise ValueError(f"PayBy did not answer ({exc}): nothing was sent; try again") from exc
    if order.status not in PAID:
        raise ValueError(f"PayBy order {tx.provider_ref} is {order.status}: nothing to refund")
    done = await j.call(j.sync.effects, tx.id, kind="refund", status="done")
    left = order.total - Money.of(sum(e.amount or 0 for e in done), order.total.code)
    want = _refund_amount(tx, amount, order.total.code, await _open_liabilities(ctx, tx))
    if not 0 < want.minor <= left.minor:
        raise ValueError(f"PayBy can refund at most {left} of {tx.ref}'s order, not {want}")
    n = 1 + sum(
        1 for e in await j.call(j.sync.effects, tx.id, kind="refund") if "technician" in e.request
    )
    call = refund_call(
        tx, ctx.clock_ms(), amount=want, key=f"{tx.ref}-refund-t{n}", technician=technician
    )
    log.info("%s: technician refund of %s (%s)", tx.ref, want, call.idem_key)
    tx = await steps.deliver(ctx, tx, None, call, settings(ctx).pay_wait_s, "refund_unconfirmed")
    eff = await j.call(j.sync.effect_by_key, call.idem_key)
    status = {"done": "refunded", "failed": "failed"}.get(eff.status if eff else "", "pending")
    out: dict[str, Any] = {
        "ref": tx.ref,
        "refund_no": call.idem_key,
        "amount": str(want),
        "status": status,
        "owed": str(Money.of(tx.owed, tx.currency)),
    }
    if eff is not None and status == "failed":
        out["why"] = eff.outcome.get("fail_code") or eff.outcome.get("code") or "refused"
    return out


def _refund_amount(tx: Tx, text: str | None, code: str, owed: list[dict[str, Any]]) -> Money:
    if text is not None:
        try:
            return Money.from_decimal(text, code)
        except KioskError as exc:
            raise ValueError(f"--amount: {exc}") from exc
    if code != tx.currency or not owed:
        raise ValueError(f"nothing is owed on {tx.ref}: say how much with --amount")
    return Money.of(sum(r["amount"] for r in owed), code)


async def _open_liabilities(ctx: Context, tx: Tx) -> list[dict[str, Any]]:
    j = ctx.journal
    return [r for r in await j.call(j.sync.liabilities) if r["tx_id"] == tx.id]


async def _settle_technician(
    ctx: Context,
    tx: Tx,
    row: dict[str, Any],
    eff: Any,
    applied: bool,
    detail: dict[str, Any],
    *,
    inline: bool,
) -> None:
    """A technician's refund ended: applied ⇒ the transaction's open liabilities (in the
    order's currency) are paid up to its amount, a larger one settled and owed again for the
    rest, with a refund receipt when the technician is there; failed ⇒ the liabilities stay."""
    j = ctx.journal
    outcome, finish = await steps.call_end(ctx, row, applied, detail)
    if not applied:
        await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
        log.warning("%s: the technician's refund failed (%s)", tx.ref, detail)
        return
    amount = Money.of(eff.amount or 0, eff.request.get("currency") or tx.currency)
    left, settle, owe = eff.amount or 0, [], []
    note = f"refunded to PayBy ({row['idem_key']}, {eff.request['technician']})"
    for r in await _open_liabilities(ctx, tx) if amount.code == tx.currency else []:
        if left <= 0:
            break
        settle.append((r["id"], note))
        if r["amount"] > left:
            owe.append((r["amount"] - left, r["reason"]))
        left -= r["amount"]
    receipt = None
    if inline:
        doc = receipts.for_kiosk(
            ctx.config,
            dataclasses.replace(tx, amount_due=amount.minor, currency=amount.code),
            "refund",
            provider_name="PayBy",
            references={"PayBy order": tx.provider_ref or "-", "Refund": row["idem_key"]},
            status_text=f"{amount} refunded to your PayBy account",
        )
        receipt = ("refund", receipts.to_json(doc))
    _, receipt_id = await j.call(
        j.sync.decide,
        tx.id,
        None,
        outcome=outcome,
        finish_call=finish,
        settle=settle,
        owe=owe,
        receipt=receipt,
    )
    log.info("%s: technician refund of %s done", tx.ref, amount)
    if receipt_id is not None and receipt is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, receipts.from_json(receipt[1]))


async def run(ctx: Context, request: Any) -> Tx:
    return await PayByCashOut(ctx, request.amount).run()


def operations(ctx: Context) -> list[Any]:
    return [PayByCancel(ctx), PayByRefund(ctx)]


# --- recovery ------------------------------------------------------------------------------


async def recover(ctx: Context, tx: Tx) -> Tx:
    """Local decisions only; the outbox cancels, refunds and follows in the background."""
    j = ctx.journal
    if tx.state in ("checking", "creating"):
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    if tx.state == "waiting":
        tx, eff, _ = await j.call(j.sync.start_call, tx.id, None, cancel_call(tx, ctx.clock_ms()))
        return await steps.pend(ctx, tx, eff.id, "interrupted")
    if tx.state == "paid":
        tx = await j.call(j.sync.transition, tx.id, "refunding", reason="paid_payout_not_started")
        return await _queue_refund(ctx, tx)
    if tx.state == "dispensing":
        tx = await cashout.recover_payout(ctx, tx, short="refunding")
        return await _queue_refund(ctx, tx) if tx.state == "refunding" else tx
    if tx.state == "refunding":
        return await _queue_refund(ctx, tx)
    return tx
