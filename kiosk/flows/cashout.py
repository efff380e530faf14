"""Paying notes out through the recycler, and the cash-out journey that needs no provider.

:func:`dispense` is the one way the kiosk pays cash out; every cash-out journey (each
provider's, and ``local_cashout``) calls it with its transaction in ``dispensing``:

1. read the recycler's levels;
2. commit the payout's intent, with those levels, before the command;
3. one payout command, never retried: the device reports what it dispensed;
4. commit the dispensed amount; complete ⇒ ``completed``; short ⇒ the exact amount paid is
   recorded and the rest is **owed**;
5. if the device does not say how the payout ended (a lost port, a crash), the levels settle
   it: notes gone from the recycler since the intent were paid. Levels unreadable ⇒ ``unknown``
   and a technician counts the cash. A payout is never repeated blindly.

``local_cashout`` is the technician's test dispense (``kiosk payout AMOUNT``): checking (can
the recycler pay it exactly?) → dispensing → receipt.
"""

from __future__ import annotations

import dataclasses
import logging

from drivers.panel import PanelState
from drivers.printer.base import Document
from drivers.validator.base import PayoutResult
from kiosk import receipts
from kiosk.errors import DeviceError
from kiosk.flows.context import Context
from kiosk.journal import Effect, Outcome, Tx
from kiosk.limits import left_today
from kiosk.money import Money

log = logging.getLogger("kiosk.flows.cashout")

CANNOT_PAY = "The kiosk cannot pay this exact amount in notes now."


async def can_pay(ctx: Context, amount: int) -> bool:
    """The recycler can pay ``amount`` exactly now (False if there is none, or it cannot say)."""
    if ctx.dispenser is None:
        return False
    try:
        return amount > 0 and await ctx.dispenser.can_pay(amount)
    except DeviceError as exc:
        log.error("recycler check failed: %s", exc.message)
        return False


async def open_for(ctx: Context, tx: Tx, maximum: int, provider: str, title: str) -> Tx | None:
    """A provider's cash-out can start: it is on (``maximum`` > 0), a recycler is there and
    ``provider`` answers; else ``tx`` ended (refused, with a DECLINED receipt when the
    provider is down: the customer is told it was not them)."""
    from kiosk.flows import steps

    if maximum <= 0:
        return await steps.refuse(ctx, tx, "cashout_disabled")
    if ctx.dispenser is None:
        return await steps.refuse(ctx, tx, "no_recycler")
    if ctx.reachability.is_down(provider):
        return await steps.decline(ctx, tx, "provider_offline", f"{title} cannot be reached.")
    return None


async def prepare(
    ctx: Context, tx: Tx, requested: Money | None, maximum: int, *, approval_above: int = 0
) -> int | Tx:
    """Before a provider's cash-out creates anything: the amount (``requested``, or chosen
    from ``[cashout] presets`` on the panel), at most ``maximum``, within what the provider's
    ``cashout_day_max`` leaves today (:mod:`kiosk.limits`), the recycler able to pay it
    exactly, and, above the approval threshold (``[limits] approval_above`` or the provider's
    own ``approval_above``, the lower), a technician's approval
    (:func:`kiosk.flows.approval.ask`). Returns the amount, or ``tx`` ended (refused, with a
    DECLINED receipt saying why; a customer who cancelled the choice gets none)."""
    from kiosk.flows import amount as chooser
    from kiosk.flows import approval, steps

    j = ctx.journal
    if requested is not None:
        if requested.currency != ctx.config.currency:
            return await steps.decline(
                ctx, tx, "amount_currency", "This kiosk pays another currency."
            )
        amount: int | str = requested.minor
    elif ctx.config.cashout.presets:
        amount = await chooser.choose(ctx, tx, ctx.config.cashout.presets)
    else:
        return await steps.decline(
            ctx, tx, "amount_needed", "This kiosk needs the amount in the code."
        )
    if isinstance(amount, str):  # cancel | timeout: nothing asked of anyone
        tx = await j.call(j.sync.transition, tx.id, "refused", reason=amount)
        ctx.panel.show(PanelState.READY if amount == "cancel" else PanelState.REFUSED)
        return tx
    if amount <= 0 or amount > maximum:
        top = Money.of(maximum, tx.currency)
        line = f"This kiosk pays at most {top} at a time."
        return await steps.decline(ctx, tx, "over_limit", line, amount)
    left = await j.call(left_today, j.sync, ctx.config.providers, tx, ctx.clock_ms())
    if left is not None and amount > left:
        return await steps.decline(ctx, tx, "day_limit", day_limit_line(tx, left), amount)
    if not await can_pay(ctx, amount):
        return await steps.decline(ctx, tx, "cannot_pay_amount", CANNOT_PAY, amount)
    above = approval.threshold(ctx, approval_above)
    if above and amount > above and (ended := await approval.ask(ctx, tx, amount)) is not None:
        return ended
    return amount


def day_limit_line(tx: Tx, left: int) -> str:
    """The customer's sentence for a cash-out past the provider's daily limit."""
    if left <= 0:
        return "This kiosk has reached today's limit for this service. Try again tomorrow."
    return f"Today this kiosk can pay at most {Money.of(left, tx.currency)} more for this service."


async def recover_payout(ctx: Context, tx: Tx, *, short: str | None = None) -> Tx:
    """Recovery of a transaction in ``dispensing``: a payout in flight is settled by the
    recycler's report or levels; one whose outcome was committed only needs its ending; none
    begun: nothing was paid. ``short``: see :func:`end_payout`."""
    j = ctx.journal
    in_flight = await j.call(j.sync.effects, tx.id, kind="payout", status="intent")
    if in_flight:
        return await settle_payout(ctx, tx, in_flight[0], short=short)
    done = await j.call(j.sync.effects, tx.id, kind="payout")
    detail = "interrupted" if done else "interrupted_before_payout"
    return await end_payout(ctx, tx, tx.dispensed, detail, short=short)


async def local_cashout(ctx: Context, amount: int) -> Tx:
    """Pay ``amount`` (minor units of the kiosk's currency) out, with no provider."""
    j = ctx.journal
    tx = await j.call(
        j.sync.begin, "local_cashout", currency=ctx.config.currency.code, amount_due=amount
    )
    if ctx.dispenser is None:
        return await _refuse(ctx, tx, "no_recycler")
    try:
        ok = amount > 0 and await ctx.dispenser.can_pay(amount)
    except DeviceError as exc:
        log.error("%s: recycler check failed: %s", tx.ref, exc.message)
        return await _refuse(ctx, tx, "recycler_unavailable")
    if not ok:
        return await _refuse(ctx, tx, "cannot_pay_amount")
    tx = await j.call(j.sync.transition, tx.id, "dispensing")
    return await dispense(ctx, tx, amount)


async def dispense(ctx: Context, tx: Tx, amount: int, *, short: str | None = None) -> Tx:
    """Pay ``amount`` out for ``tx`` (in ``dispensing``). See the module docstring.
    ``short``: see :func:`end_payout`."""
    assert ctx.dispenser is not None
    j = ctx.journal
    ctx.panel.show(PanelState.WAIT)
    try:
        before = await ctx.dispenser.levels()
    except DeviceError as exc:
        log.error("%s: cannot read the recycler before paying: %s", tx.ref, exc.message)
        return await end_payout(ctx, tx, 0, "recycler_unavailable", short=short)
    eff = await j.call(
        j.sync.intent,
        tx.id,
        "payout",
        f"{tx.ref}-payout",
        amount=amount,
        request={"levels_before": {str(v): n for v, n in before.items()}},
    )
    try:
        result = await ctx.dispenser.payout(amount)
    except DeviceError as exc:
        log.error(
            "%s: payout ended without a report (%s): counting the recycler", tx.ref, exc.message
        )
        return await settle_payout(ctx, tx, eff, live=True, short=short)
    status = "done" if result.complete else "failed"
    outcome = Outcome(
        eff.id,
        status,
        dispensed=result.dispensed,
        outcome={"dispensed": result.dispensed, "detail": result.detail},
    )
    return await end_payout(ctx, tx, result.dispensed, result.detail, outcome=outcome, short=short)


async def settle_payout(
    ctx: Context, tx: Tx, eff: Effect, *, live: bool = False, short: str | None = None
) -> Tx:
    """Settle a payout whose outcome is unknown from the recycler's levels (recovery too).

    ``live``: the payout command itself just failed. If the recycler cannot even be read
    (its port is gone, its power cut), the payout is left open in ``dispensing`` and the
    kiosk out of service: when the unit comes back, its own report (eSSP INCOMPLETE PAYOUT:
    requested, dispensed) or its levels settle it in recovery. Deciding now, blind, would
    end it ``unknown`` and leave the unit's exact report unused."""
    j = ctx.journal
    report = getattr(ctx.validator, "incomplete_payout", None)
    if isinstance(report, PayoutResult) and report.requested == eff.amount:
        # eSSP INCOMPLETE PAYOUT at start-up: the device says exactly what it paid.
        status = "done" if report.dispensed == eff.amount else "failed"
        outcome = Outcome(
            eff.id,
            status,
            dispensed=report.dispensed,
            outcome={"dispensed": report.dispensed, "settled_by": "device_incomplete_payout"},
        )
        return await end_payout(
            ctx, tx, report.dispensed, "settled_by_device_report", outcome=outcome, short=short
        )
    before = {int(v): int(n) for v, n in eff.request.get("levels_before", {}).items()}
    try:
        if ctx.dispenser is None:
            raise DeviceError("recycler", "no recycler to read")
        after = await ctx.dispenser.levels()
    except DeviceError as exc:
        if live:
            log.error(
                "%s: the recycler cannot be read (%s): left open until it is back",
                tx.ref,
                exc.message,
            )
            await j.call(j.sync.log, "payout.unsettled", {"error": exc.message}, tx.id)
            ctx.panel.show(PanelState.OUT_OF_SERVICE)
            ctx.out_of_service.set()
            return tx
        await j.call(j.sync.outcome, eff.id, "unknown", outcome={"error": exc.message})
        tx = await j.call(j.sync.transition, tx.id, "unknown", reason="payout_unknown")
        log.error("%s: payout outcome unknown: a technician must count the cash", tx.ref)
        ctx.panel.show(PanelState.OUT_OF_SERVICE)
        ctx.out_of_service.set()
        return tx
    paid = sum(v * (n - after.get(v, 0)) for v, n in before.items() if n > after.get(v, 0))
    if paid > (eff.amount or 0) or any(after.get(v, 0) > n for v, n in before.items()):
        await j.call(j.sync.outcome, eff.id, "unknown", outcome={"levels_after": after})
        return await j.call(j.sync.transition, tx.id, "unknown", reason="levels_inconsistent")
    status = "done" if paid == eff.amount else "failed"
    outcome = Outcome(
        eff.id, status, dispensed=paid, outcome={"dispensed": paid, "settled_by": "levels"}
    )
    return await end_payout(ctx, tx, paid, "settled_by_levels", outcome=outcome, short=short)


async def end_payout(
    ctx: Context,
    tx: Tx,
    dispensed: int,
    detail: str,
    *,
    outcome: Outcome | None = None,
    short: str | None = None,
) -> Tx:
    """``completed`` if all was paid, else the rest owed; the payout's outcome, the liability,
    the state and the receipt in one commit; then the receipt is printed.

    ``short``: a journey that makes good what was not paid itself (its provider reverses it to the
    customer's wallet) names the state a short payout moves to instead: the payout's outcome
    and that state are committed, no liability and no receipt (the journey's next step
    decides them)."""
    j = ctx.journal
    missing = tx.amount_due - dispensed
    done = dataclasses.replace(tx, dispensed=dispensed)
    if missing > 0 and short is not None:
        reason = f"incomplete_payout:{detail or 'stopped'}"
        tx, _ = await j.call(j.sync.decide, tx.id, short, outcome=outcome, reason=reason)
        log.warning("%s: paid %s of %s", tx.ref, _m(tx, dispensed), _m(tx, tx.amount_due))
        return tx
    if missing > 0:
        reason = f"incomplete_payout:{detail or 'stopped'}"
        kind, status = "owed", "NOT FULLY PAID - keep this receipt; support will pay the rest"
        projected = dataclasses.replace(done, state="owed", owed=tx.owed + missing, reason=reason)
        doc = _receipt(ctx, projected, kind, status)
        tx, receipt_id = await j.call(
            j.sync.decide,
            tx.id,
            "owed",
            outcome=outcome,
            owe=[(missing, reason)],
            receipt=(kind, receipts.to_json(doc)),
            reason="incomplete_payout",
        )
        log.warning(
            "%s: paid %s of %s; owed %s",
            tx.ref,
            _m(tx, dispensed),
            _m(tx, tx.amount_due),
            _m(tx, missing),
        )
        ctx.panel.show(PanelState.REFUSED)
    else:
        kind, status = "cashout", "PAID OUT - count your notes"
        doc = _receipt(ctx, dataclasses.replace(done, state="completed"), kind, status)
        tx, receipt_id = await j.call(
            j.sync.decide,
            tx.id,
            "completed",
            outcome=outcome,
            receipt=(kind, receipts.to_json(doc)),
        )
        log.info("%s: paid out %s", tx.ref, _m(tx, dispensed))
        ctx.panel.show(PanelState.DONE)
    if receipt_id is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    return tx


def _receipt(ctx: Context, tx: Tx, kind: str, status: str) -> Document:
    from kiosk.flows.steps import look_of

    look = look_of(tx)
    return receipts.for_kiosk(
        ctx.config,
        tx,
        kind,
        provider_name=look.provider,
        references=look.references(tx),
        status_text=status,
    )


async def _refuse(ctx: Context, tx: Tx, reason: str) -> Tx:
    j = ctx.journal
    log.info("%s: cash-out refused (%s)", tx.ref, reason)
    ctx.panel.show(PanelState.REFUSED)
    return await j.call(j.sync.transition, tx.id, "refused", reason=reason)


def _m(tx: Tx, minor: int) -> str:
    return str(Money.of(minor, tx.currency))
