"""PayBy Cash Top Up: the customer pays an online order in cash; the store wallet pays PayBy.

States (``kiosk.journeys.PAYBY_CASHIN``)::

    resolving ──> accepting ──> paying ──> paid ──> completed
        │             │            │ └──> pay_unknown ──> paid | owed | paying (retry)
        └> refused    └> cancelled (no note) | owed (notes in)   └──> owed (refused)

Money rules held here:

- before any note: the order must be payable (CREATED, our currency) and the store wallet's
  balance must cover it (the payment fails otherwise), else ``refused``;
- a note that would overpay is returned from escrow; a note is credited in the journal at the
  device's safe credit point, before the device is acknowledged;
- the pay call carries ``storePaymentNo = <ref>-pay`` (idempotent at PayBy) and its intent is
  committed before it is sent; an ambiguous outcome is settled with getOrder before anything
  is repeated; a refusal for good leaves the customer's cash ``owed``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from drivers.errors import DriverError
from drivers.panel import PanelEvent, PanelState
from drivers.printer.base import Document
from drivers.validator.base import (
    Fault,
    Note,
    NoteCredited,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
)
from kiosk import receipts
from kiosk.errors import (
    ProviderAmbiguous,
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)
from kiosk.flows import device_events
from kiosk.flows.context import Context, Sources
from kiosk.journal import Tx
from kiosk.money import Money

log = logging.getLogger("kiosk.flows.payby")

PAID = frozenset({"PAID_SUCCESS", "SETTLED"})
NOT_VISIBLE = frozenset({"62004", "62035"})  # MERCHANT_ORDER_NO / ORDER_NO_NOT_EXIST
PAY_ATTEMPTS = 3  # deliveries of the same pay request when PayBy is unreachable
SETTLE_ATTEMPTS = 5  # getOrder attempts to settle an ambiguous pay, with backoff


class PayByCashIn:
    def __init__(self, ctx: Context, token_url: str) -> None:
        if ctx.payby is None or ctx.config.payby is None:
            raise ValueError("PayBy is not configured")
        self.ctx, self.payby, self.token_url = ctx, ctx.payby, token_url
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
            return await self._refuse(tx, "code_already_used")
        try:
            order = await self.payby.resolve_token_url(self.token_url)
            if order.status != "CREATED":
                return await self._refuse(tx, f"order_{order.status.lower()}")
            if order.total.currency != self.cur or order.total.minor <= 0:
                return await self._refuse(tx, "order_currency_or_amount")
            balance = await self.payby.get_balance(self.cur.code)
        except ProviderRefused as exc:
            return await self._refuse(tx, f"order_not_payable:{exc.code}")
        except ProviderError as exc:
            return await self._refuse(tx, f"provider_unreachable:{type(exc).__name__}")
        if balance < order.total:
            return await self._refuse(tx, "store_balance_short")

        await j.call(j.sync.use_code, self.token_url, tx.id)
        tx = await j.call(
            j.sync.transition,
            tx.id,
            "accepting",
            amount_due=order.total.minor,
            provider_ref=order.order_no,
            data={"merchant_order_no": order.merchant_order_no},
        )
        ending = await self._accept_notes(tx)
        tx = await j.call(j.sync.get, tx.id)
        if ending != "complete":
            return await self._end_without_payment(tx, ending)
        return await self._pay(tx)

    # --- notes ----------------------------------------------------------------------------------

    async def _accept_notes(self, tx: Tx) -> str:
        """Take notes until the amount due is reached. Returns complete|cancel|timeout|fault."""
        v, panel, j = self.ctx.validator, self.ctx.panel, self.j
        due, credited = tx.amount_due, tx.credited
        sources = Sources(validator=v.next_event, panel=panel.next_event)
        try:
            try:
                await v.enable()
            except (DriverError, OSError) as exc:
                log.error("%s: validator: enable failed (%s): out of service", tx.ref, exc)
                await j.call(
                    j.sync.log, "device.error", {"call": "enable", "error": str(exc)}, tx.id
                )
                self.ctx.out_of_service.set()
                return "fault"
            panel.show(PanelState.INSERT_NOTES)
            while credited < due:
                got = await sources.next(self.ctx.config.inactivity_timeout_s)
                if got is None:
                    return "timeout"
                _, event = got
                if event == PanelEvent.CANCEL:
                    return "cancel"
                if event == PanelEvent.CONFIRM:
                    log.info("%s: confirm pressed with %s of %s in", tx.ref, credited, due)
                    continue  # the order can only be paid in full: keep inserting or cancel
                if isinstance(event, NoteEscrowed):
                    note = event.note
                    if note.currency != self.cur.code or credited + note.value > due:
                        returned = await v.return_note()
                        await j.call(
                            j.sync.log,
                            "note.returned",
                            {"value": returned.value, "reason": "would_overpay"},
                            tx.id,
                        )
                        continue
                    if not await self._stack(tx, note):
                        return "fault"
                    credited += note.value
                elif isinstance(event, NoteRejected):
                    await j.call(j.sync.log, "note.rejected", {"reason": event.reason}, tx.id)
                elif isinstance(event, NoteReturned):
                    await j.call(
                        j.sync.log,
                        "note.returned",
                        {"value": event.note.value, "reason": "device"},
                        tx.id,
                    )
                elif isinstance(event, NoteCredited):
                    await device_events.credit_stray(self.ctx, event.note)
                    credited = (await j.call(j.sync.get, tx.id)).credited
                elif isinstance(event, Fault):
                    await j.call(j.sync.log, "device.fault", {"kind": str(event.kind)}, tx.id)
                    self.ctx.fault = event.kind
                    self.ctx.out_of_service.set()
                    return "fault"
            return "complete"
        finally:
            left = await sources.close()
            try:
                await v.disable()
            except (DriverError, OSError) as exc:
                log.warning("validator: disable failed: %s", exc)
            # A note that reached escrow (or was credited) after we stopped listening is
            # returned or committed now, never left in escrow with no trace.
            for name, event in left:
                if name == "validator":
                    await device_events.handle(self.ctx, event)
            await device_events.drain(self.ctx)

    async def _stack(self, tx: Tx, note: Note) -> bool:
        """Intent, stack, credit at the device's safe point. False on a device fault."""
        j = self.j
        n = len(await j.call(j.sync.effects, tx.id, kind="stack")) + 1
        eff = await j.call(
            j.sync.intent,
            tx.id,
            "stack",
            f"{tx.ref}-note{n}",
            amount=note.value,
            request={"channel": note.channel, "currency": note.currency},
        )

        async def on_credit(credited: Note) -> None:
            await j.call(
                j.sync.outcome,
                eff.id,
                "done",
                credit=credited.value,
                outcome={"channel": credited.channel},
            )

        try:
            await self.ctx.validator.stack(on_credit)
        except DriverError as exc:
            current = await j.call(j.sync.effect, eff.id)
            if current.status == "intent":
                await j.call(j.sync.outcome, eff.id, "unknown", outcome={"error": str(exc)})
            self.ctx.out_of_service.set()
            log.error("%s: stacking failed: %s", tx.ref, exc)
            return False
        return True

    # --- endings --------------------------------------------------------------------------------

    async def _refuse(self, tx: Tx, reason: str) -> Tx:
        log.info("%s: refused (%s)", tx.ref, reason)
        tx = await self.j.call(self.j.sync.transition, tx.id, "refused", reason=reason)
        self.ctx.panel.show(PanelState.REFUSED)
        return tx

    async def _end_without_payment(self, tx: Tx, ending: str) -> Tx:
        j = self.j
        unknown = await j.call(j.sync.effects, tx.id, kind="stack", status="unknown")
        for eff in unknown:
            await j.call(j.sync.owe, tx.id, eff.amount or 0, "unconfirmed_note")
        if tx.credited == 0 and not unknown:
            tx = await j.call(j.sync.transition, tx.id, "cancelled", reason=ending)
            self.ctx.panel.show(PanelState.READY if ending == "cancel" else PanelState.REFUSED)
            return tx
        return await owe(self.ctx, tx, f"ended_by_{ending}")

    async def _pay(self, tx: Tx) -> Tx:
        """Pay the order (tx in ``paying``). Each delivery has its own effect; all carry the
        same storePaymentNo, so PayBy pays at most once."""
        j = self.j
        self.ctx.panel.show(PanelState.WAIT)
        if tx.state != "paying":
            tx = await j.call(j.sync.transition, tx.id, "paying")
        first = len(await j.call(j.sync.effects, tx.id, kind="pay")) + 1
        for attempt in range(first, first + PAY_ATTEMPTS):
            eff = await j.call(
                j.sync.intent,
                tx.id,
                "pay",
                f"{tx.ref}-pay#{attempt}",
                amount=tx.amount_due,
                request={"order_no": tx.provider_ref, "payment_no": f"{tx.ref}-pay"},
            )
            try:
                order = await self.payby.pay_token_order(
                    self.token_url,
                    order_no=tx.provider_ref or "",
                    amount=Money.of(tx.amount_due, tx.currency),
                    payment_no=f"{tx.ref}-pay",
                    device_id=self.ctx.config.kiosk_id,
                )
            except ProviderUnavailable as exc:  # not delivered: the same request again, later
                await j.call(j.sync.outcome, eff.id, "failed", outcome={"error": str(exc)})
                await self.ctx.sleep(2.0 * (attempt - first + 1))
                continue
            except ProviderRefused as exc:
                # Never taken on its word: PayBy leaves some refusals unsigned, so a forged
                # one must not turn a paid order into cash owed. getOrder decides.
                await j.call(j.sync.outcome, eff.id, "failed", outcome={"code": exc.code})
                tx = await j.call(j.sync.transition, tx.id, "pay_unknown")
                return await settle_unknown(self.ctx, tx, refused=exc.code)
            except (ProviderAmbiguous, ProviderProtocolError) as exc:
                await j.call(j.sync.outcome, eff.id, "unknown", outcome={"error": str(exc)})
                tx = await j.call(j.sync.transition, tx.id, "pay_unknown")
                retry = None if self._retried else self._pay_once_more
                return await settle_unknown(self.ctx, tx, retry=retry)
            ok = order.status in PAID
            await j.call(
                j.sync.outcome,
                eff.id,
                "done" if ok else "failed",
                outcome={"status": str(order.status)},
            )
            if ok:
                return await complete(self.ctx, tx)
            return await owe(self.ctx, tx, f"pay_status_{order.status}")
        return await owe(self.ctx, tx, "provider_unreachable")

    async def _pay_once_more(self, tx: Tx) -> Tx:
        self._retried = True
        return await self._pay(tx)


async def settle_unknown(
    ctx: Context,
    tx: Tx,
    *,
    retry: Callable[[Tx], Awaitable[Tx]] | None = None,
    refused: str | None = None,
) -> Tx:
    """Ask PayBy what happened to an ambiguous pay (getOrder) before anything is repeated.

    Paid by this store ⇒ paid. Still CREATED ⇒ ``retry`` (the flow still holds the tokenUrl:
    pay again, same storePaymentNo), else owed. FAILURE ⇒ owed. Unreachable ⇒ stays
    ``pay_unknown`` (the daemon retries in the background) and a *pending* receipt is printed.
    """
    assert ctx.payby is not None and ctx.config.payby is not None
    j = ctx.journal
    for attempt in range(1, SETTLE_ATTEMPTS + 1):
        try:
            order = await ctx.payby.get_order(order_no=tx.provider_ref)
            status, paid_by_us = str(order.status), order.payer_mid == ctx.config.payby.partner_id
        except ProviderRefused as exc:
            if exc.code not in NOT_VISIBLE:  # e.g. our clock is off: no answer yet
                log.warning("%s: getOrder refused (%s), attempt %d", tx.ref, exc, attempt)
                await ctx.sleep(min(30.0, 2.0**attempt))
                continue
            # Another merchant's order is visible to this store only once the store paid it.
            status, paid_by_us = "NOT_PAID_BY_STORE", False
        except ProviderError as exc:
            log.warning("%s: getOrder failed (%s), attempt %d", tx.ref, exc, attempt)
            await ctx.sleep(min(30.0, 2.0**attempt))
            continue
        await j.call(j.sync.log, "pay.settle", {"status": status}, tx.id)
        if status in PAID and paid_by_us:
            return await complete(ctx, tx)
        if status in ("CREATED", "NOT_PAID_BY_STORE") and retry is not None:
            tx = await j.call(j.sync.transition, tx.id, "paying", data={"retry": True})
            return await retry(tx)
        reason = f"pay_refused:{refused}" if refused else f"pay_not_done:{status}"
        return await owe(ctx, tx, reason)
    if tx.state != "pay_unknown":
        tx = await j.call(j.sync.transition, tx.id, "pay_unknown")
    if not await j.call(j.sync.receipts, tx.id):
        doc = await _receipt(ctx, tx, "pending", "PENDING - we are confirming your payment")
        await receipts.issue(j, ctx.printer, tx, "pending", doc)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def complete(ctx: Context, tx: Tx) -> Tx:
    j = ctx.journal
    tx = await j.call(j.sync.transition, tx.id, "paid")
    return await finish_paid(ctx, tx)


async def finish_paid(ctx: Context, tx: Tx) -> Tx:
    """Receipt, then ``completed``. A receipt that fails stays queued; the payment stands."""
    j = ctx.journal
    doc = await _receipt(ctx, tx, "cashin", "PAID - your order is paid")
    await receipts.issue(j, ctx.printer, tx, "cashin", doc)
    tx = await j.call(j.sync.transition, tx.id, "completed")
    log.info("%s: completed", tx.ref)
    ctx.panel.show(PanelState.DONE)
    return tx


async def owe(ctx: Context, tx: Tx, reason: str) -> Tx:
    """The customer's cash stays with the kiosk: a liability, a receipt that says so."""
    j = ctx.journal
    await j.call(j.sync.owe, tx.id, tx.credited, reason)
    tx = await j.call(j.sync.transition, tx.id, "owed", reason=reason)
    log.warning("%s: owed %s (%s)", tx.ref, Money.of(tx.owed, tx.currency), reason)
    doc = await _receipt(ctx, tx, "owed", "NOT PAID - keep this receipt; support will refund you")
    await receipts.issue(j, ctx.printer, tx, "owed", doc)
    ctx.panel.show(PanelState.REFUSED)
    return tx


async def _receipt(ctx: Context, tx: Tx, kind: str, status: str) -> Document:
    j = ctx.journal
    stacked = await j.call(j.sync.effects, tx.id, kind="stack", status="done")
    notes = [e.amount or 0 for e in stacked]
    refs = {"PayBy order": tx.provider_ref or "-"}
    return receipts.for_kiosk(
        ctx.config,
        tx,
        kind,
        provider_name="PayBy Cash Top Up",
        notes=notes,
        references=refs,
        status_text=status,
    )
