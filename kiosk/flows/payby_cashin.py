"""PayBy Cash Top Up: the customer pays an online order in cash; the store wallet pays PayBy.

States (``kiosk.journeys.PAYBY_CASHIN``)::

    resolving ──> accepting ──> paying ──> paid ──> completed
        │             │            │ └──> pending ──> paid | owed   (the outbox, later)
        └> refused    └> cancelled (no note) | owed (notes in)   └──> owed (signed: not paid)

Money rules held here:

- before any note: the order must be payable (CREATED, our currency) and the store wallet's
  balance must cover it (the payment fails otherwise), else ``refused``;
- a note that would overpay is returned from escrow; a note is credited in the journal at the
  device's safe credit point, before the device is acknowledged;
- the pay is an outbox call (:mod:`kiosk.outbox`): ``storePaymentNo = <ref>-pay`` (idempotent
  at PayBy), the request sealed in the journal with its ``requestTime``, committed with
  ``paying`` before it is sent. Only a signed answer decides: paid ⇒ ``paid``; not paid, once
  no delivery is in doubt or the request's 15-minute window has closed ⇒ ``owed``. Otherwise
  the customer leaves with a PENDING receipt and the outbox goes on in the background;
- every decision (owe, pay, pend) is one journal commit with its liabilities and receipt.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from drivers.panel import PanelState
from kiosk.config import Config, OfflineConfig
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.flows import approval, steps
from kiosk.flows.context import Context
from kiosk.journal import Call, Journal, Outcome, Tx
from kiosk.journeys import define
from kiosk.limits import left_today
from kiosk.money import Money
from kiosk.outbox import Attempt, Delivery, Verdict, classify
from kiosk.providers.payby import config as payby_config
from kiosk.providers.payby.client import NOT_VISIBLE, PAID
from kiosk.providers.payby.config import PayByConfig

log = logging.getLogger("kiosk.flows.payby")

JOURNEY = define(
    "payby_cashin",
    "payby",
    "in",
    "resolving",
    {
        "resolving": "accepting refused",
        "accepting": "paying cancelled owed",
        "paying": "paid owed pending",
        "pending": "paid owed",
        "pay_unknown": "pending paying paid owed",  # journals written before the outbox
        "paid": "completed",
    },
    {
        "resolving": "nothing moved: refused",
        "accepting": "settle notes in flight with the device's power-up report; "
        "no note ⇒ cancelled, else owed (the notes never reached PayBy)",
        "paying": "the pay may have been sent: pending (a PENDING receipt); the outbox "
        "re-sends the same request until a signed answer, or until it is void",
        "pending": "the outbox goes on: signed paid ⇒ paid; signed not paid once no delivery "
        "is in doubt or the request is void ⇒ owed",
        "pay_unknown": "as pending (the outbox queries getOrder; it owes only after the "
        "request's 15-minute window)",
        "paid": "the receipt, unless the customer left with a PENDING one ⇒ completed",
    },
    legacy="pay_unknown",
)

STARTS = frozenset({"payby_tokenurl"})


def settings(cfg: Config) -> PayByConfig:
    """This kiosk's ``[payby]`` (the journey only starts when it is configured)."""
    p = payby_config.of(cfg)
    if p is None:
        raise LookupError("PayBy is not configured on this kiosk")
    return p


class PayByCashIn:
    def __init__(self, ctx: Context, token_url: str) -> None:
        self.cfg = settings(ctx.config)
        self.ctx, self.payby, self.token_url = ctx, ctx.client("payby"), token_url
        self.j = ctx.journal
        self.cur = ctx.config.currency
        self._retried = False

    async def run(self) -> Tx:
        j, panel = self.j, self.ctx.panel
        panel.show(PanelState.WAIT)
        code_hash = j.sync.code_hash(self.token_url)  # pure HMAC, no I/O
        tx = await j.call(j.sync.begin, "payby_cashin", currency=self.cur.code, code_hash=code_hash)
        log.info("%s: PayBy Cash Top Up started", tx.ref)
        if await j.call(j.sync.code_seen, self.token_url):
            return await steps.refuse(self.ctx, tx, "code_already_used")
        if self.ctx.reachability.is_down("payby"):
            return await self._offline(tx, "provider_offline")
        try:
            order = await self.payby.resolve_token_url(self.token_url)
            if order.status != "CREATED":
                return await steps.refuse(self.ctx, tx, f"order_{order.status.lower()}")
            if order.total.currency != self.cur or order.total.minor <= 0:
                return await steps.refuse(self.ctx, tx, "order_currency_or_amount")
            balance = await self.payby.get_balance(self.cur.code)
        except ProviderRefused as exc:
            return await steps.refuse(self.ctx, tx, f"order_not_payable:{exc.code}")
        except ProviderError as exc:
            return await self._offline(tx, f"provider_unreachable:{type(exc).__name__}")
        if balance < order.total:
            return await steps.refuse(self.ctx, tx, "store_balance_short")
        ended = await self._limits(tx, order.total.minor)
        if ended is not None:
            return ended

        await j.call(j.sync.use_code, self.token_url, tx.id)
        tx = await j.call(
            j.sync.transition,
            tx.id,
            "accepting",
            amount_due=order.total.minor,
            provider_ref=order.order_no,
            data={"merchant_order_no": order.merchant_order_no},
        )
        ending = await steps.accept_notes(self.ctx, tx, up_to=tx.amount_due)
        tx = await j.call(j.sync.get, tx.id)
        if ending != "complete":
            return await steps.end_without_payment(self.ctx, tx, ending)
        return await self._pay(tx)

    async def _limits(self, tx: Tx, amount: int) -> Tx | None:
        """The order's amount within what ``[payby] cashin_day_max`` leaves today, and approved
        by a technician when above the threshold, before any note; else ``tx`` ended."""
        ctx, j = self.ctx, self.j
        left = await j.call(left_today, j.sync, ctx.config.providers, tx, ctx.clock_ms())
        if left is not None and amount > left:
            line = steps.day_limit_in(tx, left)
            return await steps.decline(ctx, tx, "day_limit", line, amount)
        above = approval.threshold(ctx)
        if above and amount > above:
            return await approval.ask(ctx, tx, amount)
        return None

    # --- offline ----------------------------------------------------------------------------

    async def _offline(self, tx: Tx, reason: str) -> Tx:
        """PayBy cannot be asked: refused, unless the operator allows offline cash-in
        (``[offline]``). Then the customer inserts up to the cap and presses confirm; the cash
        is *pending* and the outbox resolves the order when PayBy answers: paid if the order is
        payable and its total is exactly what was inserted, else owed."""
        j, ctx = self.j, self.ctx
        room = await j.call(offline_room, j.sync, ctx.config.offline)
        left = await j.call(left_today, j.sync, ctx.config.providers, tx, ctx.clock_ms())
        room = room if left is None else min(room, left)
        if room <= 0:
            return await steps.refuse(self.ctx, tx, reason)
        await j.call(j.sync.use_code, self.token_url, tx.id)
        tx = await j.call(j.sync.transition, tx.id, "accepting", reason=OFFLINE, data={"cap": room})
        log.warning("%s: PayBy unreachable (%s): cash-in offline, up to %s", tx.ref, reason, room)
        ending = await steps.accept_notes(ctx, tx, up_to=room, confirm_ends=True)
        tx = await j.call(j.sync.get, tx.id)
        if ending != "complete":
            return await steps.end_without_payment(ctx, tx, ending)
        now = ctx.clock_ms()
        call = Call(
            op=PayByResolveOffline.name,
            kind="resolve",
            idem_key=f"{tx.ref}-resolve",
            amount=tx.credited,
            request={"token_url": self.token_url, "device_id": ctx.config.kiosk_id},
            public={"offline": True, "credited": tx.credited},
            request_time_ms=now,
            void_after_ms=now + OFFLINE_KEEP_MS,
        )
        tx, eff, _ = await j.call(j.sync.start_call, tx.id, "paying", call)
        return await pend(ctx, tx, eff.id, OFFLINE)

    async def _pay(self, tx: Tx) -> Tx:
        """Pay the order through the outbox: the row (the request, sealed), the effect's
        intent and ``paying`` commit together; the customer waits up to ``pay_wait_s`` for a
        definitive answer, then leaves with a PENDING receipt and the outbox goes on."""
        ctx = self.ctx
        ctx.panel.show(PanelState.WAIT)
        now = ctx.clock_ms()
        call = pay_call(ctx.config, tx, self.token_url, tx.provider_ref or "", tx.amount_due, now)
        tx = await steps.deliver(ctx, tx, "paying", call, self.cfg.pay_wait_s, "pay_unconfirmed")
        if tx.state == "pending":
            return tx
        return await after_settled(ctx, tx)


REQUEST_WINDOW_MS = 15 * 60 * 1000  # PayBy refuses a requestTime older than this


def pay_call(cfg: Config, tx: Tx, token_url: str, order_no: str, amount: int, now: int) -> Call:
    """The outbox call that pays ``order_no`` for ``tx``: ``storePaymentNo = <ref>-pay``,
    signed at ``now`` (epoch ms), void once PayBy's window and our clock margin have passed."""
    return Call(
        op=PayByPay.name,
        kind="pay",
        idem_key=f"{tx.ref}-pay",
        amount=amount,
        request={
            "token_url": token_url,
            "order_no": order_no,
            "amount": amount,
            "currency": tx.currency,
            "payment_no": f"{tx.ref}-pay",
            "device_id": cfg.kiosk_id,
        },
        public={"order_no": order_no, "payment_no": f"{tx.ref}-pay"},
        request_time_ms=now,
        void_after_ms=void_after_ms(cfg, now),
    )


def void_after_ms(cfg: Config, request_time_ms: int) -> int:
    """When a pay request signed at ``request_time_ms`` can no longer be applied: PayBy's
    15-minute window, plus our clock's margin against PayBy's."""
    p = payby_config.of(cfg)
    margin = int((p.clock_margin_s if p else 120.0) * 1000)
    return request_time_ms + REQUEST_WINDOW_MS + margin


class PayByPay:
    """The outbox operation ``payby.pay``: pay a Cash Top Up order from the store's wallet."""

    name = "payby.pay"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        payby = self.ctx.client("payby")
        try:
            order = await payby.pay_token_order(
                request["token_url"],
                order_no=request["order_no"],
                amount=Money.of(request["amount"], request["currency"]),
                payment_no=request["payment_no"],
                device_id=request["device_id"],
                request_time_ms=row["request_time_ms"],
            )
        except ProviderError as exc:
            return Attempt(classify(exc), {"code": exc.code}, f"{type(exc).__name__}: {exc}")
        if order.status in PAID and order.payer_mid in (None, self._partner()):
            return Attempt(Delivery.DONE, {"status": str(order.status), "settled_by": "pay"})
        # A signed answer that is not "paid": the state query decides.
        return Attempt(Delivery.REFUSED, {"status": str(order.status)}, f"status {order.status}")

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        payby = self.ctx.client("payby")
        tx = await self.ctx.journal.call(self.ctx.journal.sync.get, row["tx_id"])
        try:
            order = await payby.get_order(order_no=tx.provider_ref)
        except ProviderRefused as exc:
            if exc.signed and exc.code in NOT_VISIBLE:
                # Another merchant's order is visible to this store only once the store paid it.
                return Verdict.NOT_APPLIED, {"status": "NOT_PAID_BY_STORE", "code": exc.code}
            return Verdict.UNKNOWN, {"error": f"getOrder refused ({exc.code})"}
        except ProviderError as exc:
            return Verdict.UNKNOWN, {"error": f"getOrder: {type(exc).__name__}"}
        if order.status in PAID:
            if order.payer_mid == self._partner():
                return Verdict.APPLIED, {"status": str(order.status), "settled_by": "getOrder"}
            return Verdict.NOT_APPLIED, {"status": "PAID_BY_ANOTHER", "settled_by": "getOrder"}
        return Verdict.NOT_APPLIED, {"status": str(order.status), "settled_by": "getOrder"}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await steps.call_end(ctx, row, applied, detail)
        if applied:
            # The customer who waits gets the PAID receipt (then ``completed``); one who left
            # holds a PENDING receipt: ``completed`` in the same commit.
            then = None if inline else "completed"
            await j.call(
                j.sync.decide, tx.id, "paid", outcome=outcome, finish_call=finish, then=then
            )
            log.info("%s: PayBy confirmed the payment (%s)", tx.ref, detail.get("settled_by"))
            return
        code = detail.get("code")
        reason = f"pay_refused:{code}" if code else f"pay_not_done:{detail.get('status', '?')}"
        await steps.owe_cash_in(ctx, tx, reason, outcome=outcome, finish_call=finish, inline=inline)

    def _partner(self) -> str:
        return settings(self.ctx.config).partner_id


OFFLINE = "offline"
OFFLINE_KEEP_MS = 30 * 24 * 3600 * 1000  # an offline cash-in waits this long for PayBy


def offline_room(journal: Journal, policy: OfflineConfig) -> int:
    """How much one more customer may insert offline (minor units): the per-transaction cap,
    within what the kiosk may hold pending in all. 0 when offline cash-in is off."""
    if not policy.cashin_allowed:
        return 0
    held = sum(
        tx.credited
        for tx in journal.transactions(open_only=True, limit=100_000)
        if tx.reason == OFFLINE
    )
    return max(0, min(policy.cashin_max_per_tx, policy.cashin_max_outstanding - held))


class PayByResolveOffline:
    """The outbox operation ``payby.resolve_offline``: once PayBy answers, read the order
    behind an offline cash-in's tokenUrl. Payable and its total exactly the cash taken ⇒ the
    pay becomes an ordinary ``payby.pay`` outbox call (its own requestTime from now on);
    otherwise the cash is owed. A read moves no money: nothing here is ever in doubt."""

    name = "payby.resolve_offline"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        payby, j = self.ctx.client("payby"), self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        try:
            order = await payby.resolve_token_url(request["token_url"])
        except ProviderRefused as exc:
            if exc.signed:
                return Attempt(Delivery.REFUSED, {"code": exc.code, "status": "NOT_PAYABLE"})
            return Attempt(Delivery.NOT_SENT, {}, f"resolve: unsigned refusal {exc.code}")
        except ProviderError as exc:  # a read: nothing can land later
            return Attempt(Delivery.NOT_SENT, {}, f"resolve: {type(exc).__name__}")
        payable = (
            order.status == "CREATED"
            and order.total.currency.code == tx.currency
            and order.total.minor == tx.credited
        )
        detail = {
            "order_no": order.order_no,
            "total": order.total.minor,
            "status": str(order.status),
        }
        if not payable:
            return Attempt(Delivery.REFUSED, {**detail, "status": "NOT_PAYABLE"})
        return Attempt(Delivery.DONE, {**detail, "token_url": request["token_url"]})

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        return Verdict.NOT_APPLIED, {}  # nothing was paid by a read

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        eff = await j.call(j.sync.effect_by_key, row["idem_key"])
        assert eff is not None
        token_url = detail.pop("token_url", None)
        if not applied or token_url is None:
            reason = f"offline_not_payable:{detail.get('code') or detail.get('status', '?')}"
            await j.call(
                j.sync.decide,
                tx.id,
                "owed",
                outcome=Outcome(eff.id, "failed", outcome=detail),
                finish_call=(row["id"], "failed", detail),
                owe=[(tx.credited, reason)],
                owe_unconfirmed=True,
                reason=reason,
            )
            log.warning("%s: offline cash-in not payable (%s): owed", tx.ref, reason)
            return
        pay = pay_call(ctx.config, tx, token_url, detail["order_no"], tx.credited, ctx.clock_ms())
        await j.call(
            j.sync.resolve_call,
            row["id"],
            Outcome(eff.id, "done", outcome=detail),
            pay,
            provider_ref=detail["order_no"],
            amount_due=detail["total"],
        )
        log.info("%s: offline cash-in resolved to order %s: paying", tx.ref, detail["order_no"])


PENDING = (
    "PENDING - PayBy has not confirmed your payment yet. The kiosk keeps trying: your order"
    " is paid as soon as PayBy confirms it; if it cannot be paid, support refunds your cash."
    " Keep this receipt."
)


async def after_settled(ctx: Context, tx: Tx) -> Tx:
    """The customer is still here and the outbox settled the pay: paid ⇒ the receipt and
    ``completed``; owed ⇒ the receipt the decision queued."""
    if tx.state == "paid":
        return await finish_paid(ctx, tx)
    await steps.print_queued(ctx, tx)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def finish_paid(ctx: Context, tx: Tx) -> Tx:
    return await steps.finish(ctx, tx, "cashin", "PAID - your order is paid")


pend = steps.pend
owe = steps.owe


LOOK = steps.Look(
    "PayBy Cash Top Up",
    pending=PENDING,
    references=lambda tx: {"PayBy order": tx.provider_ref or "-"},
)


async def run(ctx: Context, request: Any) -> Tx:
    return await PayByCashIn(ctx, request.token_url).run()


def operations(ctx: Context) -> list[Any]:
    return [PayByPay(ctx), PayByResolveOffline(ctx)]


# --- recovery ------------------------------------------------------------------------------


async def recover(ctx: Context, tx: Tx) -> Tx:
    """Local decisions only: nothing here waits on PayBy (READY must come within the start
    budget whatever PayBy does); the outbox settles pending payments in the background."""
    j = ctx.journal
    if tx.state == "resolving":
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    if tx.state == "accepting":
        return await steps.end_without_payment(ctx, tx, "interrupted")
    if tx.state in ("paying", "pay_unknown"):
        rows = await j.call(j.sync.outbox_rows, tx.id, queued_only=True)
        if rows:
            # The crash may have cut a delivery short: the request may have been sent.
            await j.call(j.sync.mark_in_doubt, rows[0]["id"], "interrupted")
        else:
            await _legacy_pay_call(ctx, tx)
        pays = await j.call(j.sync.effects, tx.id, kind="pay")
        tx = await j.call(j.sync.get, tx.id)
        if tx.state == "paying" or tx.state == "pay_unknown":
            return await pend(ctx, tx, pays[-1].id, "interrupted")
        return tx
    if tx.state == "paid":
        return await finish_paid(ctx, tx)
    return tx


async def _legacy_pay_call(ctx: Context, tx: Tx) -> None:
    """A journal written before the outbox: its pay effects but no row. The tokenUrl is gone,
    so the row can only query PayBy; it owes only after the last request's window closed."""
    j = ctx.journal
    pays = await j.call(j.sync.effects, tx.id, kind="pay")
    last = max((_epoch_ms(e.started_at) for e in pays), default=int(time.time() * 1000))
    for eff in pays:
        if eff.status == "intent":
            await j.call(j.sync.outcome, eff.id, "unknown", outcome={"settled_by": "recovery"})
    call = Call(
        op=PayByPay.name,
        kind="pay",
        idem_key=f"{tx.ref}-pay",
        amount=tx.amount_due,
        request=None,
        public={"order_no": tx.provider_ref, "legacy": True},
        request_time_ms=last,
        void_after_ms=void_after_ms(ctx.config, last),
    )
    _, _, row_id = await j.call(j.sync.start_call, tx.id, None, call)
    await j.call(j.sync.mark_in_doubt, row_id, "written before the outbox")


def _epoch_ms(iso: str) -> int:
    import calendar

    whole, _, frac = iso.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1000 + int((frac or "0")[:3].ljust(3, "0"))
