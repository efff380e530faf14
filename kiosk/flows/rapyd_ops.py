"""Rapyd's outbox operations (:mod:`kiosk.outbox`), shared by both journeys
(:mod:`kiosk.flows.rapyd_cashout`, :mod:`kiosk.flows.rapyd_cashin`).

Rapyd's POS API cannot read a transaction back. What settles a call whose answer was lost is
the ``idempotency`` header: the **same request with the same key** is sent again, and Rapyd
answers a key it has seen with its first answer [INF: the docs name the header but not its POS
semantics; the sandbox replays]. So for these calls "query" is that replay, never a new key.

``rapyd.logout`` — Close Session, mandatory after each action. Its row is committed the moment a
session opens (:func:`logout_call`), before anything is done on it: it is where the session
lives durably (sealed), for a reversal after a restart. It is sent only once the journey no
longer needs the session (its money calls settled, the transaction past them); until then a
delivery is "not sent" and tried again. A signed refusal (the session is already closed or
expired) counts as closed. Not money-critical.

``rapyd.withdraw`` — the cash-out's debit. Applied with the customer here ⇒ ``withdrawn`` (the
journey pays out); applied after the customer left with a PENDING receipt ⇒ ``reversing``: the
whole amount goes back (never paid out to an empty tray); not applied ⇒ ``refused`` (DECLINED
receipt) or ``void``.

``rapyd.reverse`` — Reverse Withdrawal of what was not paid out, keyed by the withdrawal's
``transaction_id``. Applied ⇒ ``completed`` (something was paid: the receipt says what went
back) or ``void`` (nothing was); not applied ⇒ what was not paid is **owed**.

``rapyd.deposit`` — the cash-in's credit. Applied ⇒ ``deposited`` (then the receipt and
``completed``); not applied ⇒ the cash is **owed**.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from kiosk import receipts
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.flows import steps
from kiosk.flows.context import Context
from kiosk.journal import Call, Outcome, Tx
from kiosk.money import Money
from kiosk.outbox import Attempt, Delivery, Verdict, classify
from kiosk.providers.rapyd.client import Session
from kiosk.providers.rapyd.config import RapydConfig
from kiosk.providers.rapyd.outcomes import told

log = logging.getLogger("kiosk.flows.rapyd")

CALL_KEEP_MS: Final = 3600 * 1000
"""[INF] how long a withdraw or deposit may still land: Rapyd documents no session lifetime;
past this a replay's refusal is taken as final."""
REVERSE_KEEP_MS: Final = 24 * 3600 * 1000
LOGOUT_KEEP_MS: Final = 24 * 3600 * 1000
SESSION_DEAD: Final = frozenset({"ERROR_INVALID_SESSION", "ERROR_SESSION_CLOSED"})
NOT_DONE: Final = "NOT DONE"


def settings(ctx: Context) -> RapydConfig:
    r: RapydConfig | None = ctx.config.providers.get("rapyd")
    if r is None:
        raise LookupError("Rapyd is not configured on this kiosk")
    return r


# --- the calls ---------------------------------------------------------------------------


def logout_call(tx: Tx, session: Session, now_ms: int) -> Call:
    return Call(
        op=RapydLogout.name,
        kind="logout",
        idem_key=f"{tx.ref}-logout",
        amount=0,
        request={"session": session.sealed()},
        public={},
        request_time_ms=now_ms,
        void_after_ms=now_ms + LOGOUT_KEEP_MS,
    )


def withdraw_call(tx: Tx, session: Session, account_id: str, now_ms: int) -> Call:
    return Call(
        op=RapydWithdraw.name,
        kind="withdraw",
        idem_key=f"{tx.ref}-withdraw",
        amount=tx.amount_due,
        request={
            "session": session.sealed(),
            "account_id": account_id,
            "amount": tx.amount_due,
            "currency": tx.currency,
        },
        public={"account_id": account_id},
        request_time_ms=now_ms,
        void_after_ms=now_ms + CALL_KEEP_MS,
    )


def reverse_call(
    tx: Tx, session: dict[str, Any], account_id: str, withdrawal_id: str, amount: int, now: int
) -> Call:
    return Call(
        op=RapydReverse.name,
        kind="reverse",
        idem_key=f"{tx.ref}-reverse",
        amount=amount,
        request={
            "session": session,
            "account_id": account_id,
            "withdrawal_id": withdrawal_id,
            "amount": amount,
            "currency": tx.currency,
        },
        public={"account_id": account_id, "withdrawal": withdrawal_id},
        request_time_ms=now,
        void_after_ms=now + REVERSE_KEEP_MS,
    )


def deposit_call(tx: Tx, session: Session, now_ms: int) -> Call:
    return Call(
        op=RapydDeposit.name,
        kind="deposit",
        idem_key=f"{tx.ref}-deposit",
        amount=tx.credited,
        request={"session": session.sealed(), "amount": tx.credited, "currency": tx.currency},
        public={},
        request_time_ms=now_ms,
        void_after_ms=now_ms + CALL_KEEP_MS,
    )


async def session_of(ctx: Context, tx: Tx) -> dict[str, Any] | None:
    """The sealed session of ``tx`` (from its queued logout row), ``None`` once closed."""
    j = ctx.journal
    for row in await j.call(j.sync.outbox_rows, tx.id, queued_only=True):
        if row["op"] == RapydLogout.name:
            full = await j.call(j.sync.outbox_row, row["id"])  # outbox_rows leaves it out
            request = await j.call(j.sync.unseal, full)
            return None if request is None else dict(request["session"])
    return None


async def close_now(ctx: Context, tx: Tx) -> None:
    """One inline delivery of ``tx``'s logout (the background loop retries it if it fails)."""
    j, fw = ctx.journal, ctx.outbox()
    for row in await j.call(j.sync.outbox_rows, tx.id, queued_only=True):
        if row["op"] == RapydLogout.name:
            async with fw.hold(row["id"]):
                await fw.step(row["id"])
    fw.wake()


async def start_reversal(ctx: Context, tx: Tx, withdrawal_id: str) -> Tx:
    """``tx`` is in ``reversing``: queue the reversal of what was not paid out (the session
    from the logout row). No session left (it was closed): what was not paid is owed."""
    j = ctx.journal
    amount = tx.amount_due - tx.dispensed
    session = await session_of(ctx, tx)
    account = await _withdraw_account(ctx, tx)
    if session is None or account is None or not withdrawal_id:
        return await owe_rest(ctx, tx, "reversal_impossible:no_session")
    call = reverse_call(tx, session, account, withdrawal_id, amount, ctx.clock_ms())
    await j.call(j.sync.start_call, tx.id, None, call)
    ctx.outbox().wake()
    return await j.call(j.sync.get, tx.id)


async def _withdraw_account(ctx: Context, tx: Tx) -> str | None:
    j = ctx.journal
    withdrawals = await j.call(j.sync.effects, tx.id, kind="withdraw")
    return str(withdrawals[-1].request.get("account_id")) if withdrawals else None


# --- the operations ----------------------------------------------------------------------


class _Replayed:
    """An operation whose "query" is the same request under the same idempotency key."""

    name = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def act(self, request: dict[str, Any], idem: str) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        try:
            detail = await self.act(request, row["idem_key"])
        except ProviderError as exc:
            return Attempt(classify(exc), {"code": exc.code} if exc.code else {}, str(exc))
        return Attempt(Delivery.DONE, {**detail, "settled_by": self.name})

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        j = self.ctx.journal
        request = await j.call(j.sync.unseal, row)
        if request is None:
            return Verdict.UNKNOWN, {"error": "no request kept"}
        try:
            detail = await self.act(request, row["idem_key"])
        except ProviderRefused as exc:
            if exc.signed:
                # a dead session takes no request any more: the answer is final
                final = {"final": True} if exc.code in SESSION_DEAD else {}
                return Verdict.NOT_APPLIED, {**final, "code": exc.code, "settled_by": "replay"}
            return Verdict.UNKNOWN, {"error": f"unsigned refusal {exc.code}"}
        except ProviderError as exc:
            return Verdict.UNKNOWN, {"error": f"replay: {type(exc).__name__}"}
        return Verdict.APPLIED, {**detail, "settled_by": "replay"}

    async def _effect(self, row: dict[str, Any], applied: bool, detail: dict[str, Any]) -> Any:
        return await steps.call_end(self.ctx, row, applied, detail)


def _client(ctx: Context) -> Any:
    return ctx.client("rapyd")


class RapydWithdraw(_Replayed):
    """``rapyd.withdraw``: see the module docstring."""

    name = "rapyd.withdraw"

    async def act(self, request: dict[str, Any], idem: str) -> dict[str, Any]:
        tid = await _client(self.ctx).withdraw(
            Session.unsealed(request["session"]),
            request["account_id"],
            Money.of(request["amount"], request["currency"]),
            idempotency=idem,
        )
        return {"transaction_id": tid}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await self._effect(row, applied, detail)
        if tx.closed:
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            log.error("%s: Rapyd withdraw settled (applied=%s) on a closed tx", tx.ref, applied)
            return
        here = inline and tx.state == "withdrawing"
        tid = str(detail.get("transaction_id") or "")
        if applied and here:
            await j.call(
                j.sync.decide,
                tx.id,
                "withdrawn",
                outcome=outcome,
                finish_call=finish,
                provider_ref=tid,
            )
            log.info("%s: Rapyd debited the wallet (%s)", tx.ref, detail.get("settled_by"))
            return
        if applied:  # the customer left with a PENDING receipt: all of it goes back
            tx, _ = await j.call(
                j.sync.decide,
                tx.id,
                "reversing",
                outcome=outcome,
                finish_call=finish,
                provider_ref=tid,
                reason="withdrawn_after_customer_left",
            )
            await start_reversal(ctx, tx, tid)
            return
        reason = f"withdraw_refused:{told(detail.get('code')).reason}"
        if here:
            line = told(detail.get("code")).line
            doc = await declined(ctx, tx, reason, line)
            await j.call(
                j.sync.decide,
                tx.id,
                "refused",
                outcome=outcome,
                finish_call=finish,
                receipt=("declined", receipts.to_json(doc)),
                reason=reason,
            )
        else:
            await j.call(
                j.sync.decide, tx.id, "void", outcome=outcome, finish_call=finish, reason=reason
            )
        log.info("%s: Rapyd did not debit the wallet (%s)", tx.ref, reason)
        ctx.outbox().wake()  # the logout may go now


class RapydReverse(_Replayed):
    """``rapyd.reverse``: see the module docstring."""

    name = "rapyd.reverse"

    async def act(self, request: dict[str, Any], idem: str) -> dict[str, Any]:
        await _client(self.ctx).reverse(
            Session.unsealed(request["session"]),
            request["account_id"],
            Money.of(request["amount"], request["currency"]),
            request["withdrawal_id"],
            idempotency=idem,
        )
        return {"reversed": request["amount"]}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await self._effect(row, applied, detail)
        if tx.closed:
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            log.error("%s: Rapyd reversal settled (applied=%s) on a closed tx", tx.ref, applied)
            return
        back = Money.of(tx.amount_due - tx.dispensed, tx.currency)
        if applied:
            if tx.dispensed:
                paid = Money.of(tx.dispensed, tx.currency)
                status = f"PAID OUT {paid} - {back} went back to your Rapyd wallet"
                kind, state = "cashout", "completed"
            else:
                status = f"{NOT_DONE}: the kiosk paid nothing out; {back} went back to your wallet."
                kind, state = "declined", "void"
            doc = await steps.receipt(ctx, steps.projected(tx, state, 0, "reversed"), kind, status)
            await j.call(
                j.sync.decide,
                tx.id,
                state,
                outcome=outcome,
                finish_call=finish,
                receipt=(kind, receipts.to_json(doc)) if inline else None,
                reason="reversed" if tx.dispensed else "reversed_all",
            )
            log.info("%s: Rapyd reversed %s", tx.ref, back)
        else:
            await owe_rest(
                ctx,
                tx,
                f"reversal_refused:{detail.get('code') or '?'}",
                outcome=outcome,
                finish_call=finish,
                print_now=False,
            )
        ctx.outbox().wake()  # the logout may go now


class RapydDeposit(_Replayed):
    """``rapyd.deposit``: see the module docstring."""

    name = "rapyd.deposit"

    async def act(self, request: dict[str, Any], idem: str) -> dict[str, Any]:
        tid = await _client(self.ctx).deposit(
            Session.unsealed(request["session"]),
            Money.of(request["amount"], request["currency"]),
            idempotency=idem,
        )
        return {"transaction_id": tid}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await self._effect(row, applied, detail)
        if tx.closed:
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            log.error("%s: Rapyd deposit settled (applied=%s) on a closed tx", tx.ref, applied)
            return
        if applied:
            then = None if inline else "completed"  # one who left holds a PENDING receipt
            await j.call(
                j.sync.decide,
                tx.id,
                "deposited",
                outcome=outcome,
                finish_call=finish,
                then=then,
                provider_ref=str(detail.get("transaction_id") or ""),
            )
            log.info("%s: Rapyd credited the wallet", tx.ref)
        else:
            reason = f"deposit_refused:{told(detail.get('code')).reason}"
            await steps.owe_cash_in(
                ctx, tx, reason, outcome=outcome, finish_call=finish, inline=inline
            )
        ctx.outbox().wake()


HOLDS_SESSION: Final = frozenset(
    {"open", "withdrawing", "withdrawn", "dispensing", "reversing", "pending", "depositing"}
)
"""States in which a transaction may still act on its session (the logout waits)."""


class RapydLogout:
    """``rapyd.logout``: see the module docstring."""

    name = "rapyd.logout"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        j = self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        others = [
            r
            for r in await j.call(j.sync.outbox_rows, tx.id, queued_only=True)
            if r["id"] != row["id"]
        ]
        if tx.state in HOLDS_SESSION or others:
            return Attempt(Delivery.NOT_SENT, {}, f"session still needed ({tx.state})")
        try:
            await _client(self.ctx).logout(Session.unsealed(request["session"]))
        except ProviderRefused as exc:
            if exc.signed:  # closed or expired already: nothing left open
                return Attempt(Delivery.DONE, {"code": exc.code, "settled_by": "logout"})
            return Attempt(Delivery.IN_DOUBT, {}, f"unsigned refusal {exc.code}")
        except ProviderError as exc:
            return Attempt(classify(exc), {}, str(exc))
        return Attempt(Delivery.DONE, {"settled_by": "logout"})

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        if self.ctx.outbox().provider_now_ms(row) >= row["void_after_ms"]:
            return Verdict.NOT_APPLIED, {"error": "gave up: the session has long expired"}
        return Verdict.UNKNOWN, {"error": "close again"}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        j = self.ctx.journal
        eff = await j.call(j.sync.effect_by_key, row["idem_key"])
        assert eff is not None
        status = "done" if applied else "failed"
        await j.call(
            j.sync.decide,
            row["tx_id"],
            None,
            outcome=Outcome(eff.id, status, outcome=detail),
            finish_call=(row["id"], status, detail),
        )


# --- the receipts of these decisions -------------------------------------------------------


async def declined(ctx: Context, tx: Tx, reason: str, line: str) -> Any:
    return await steps.receipt(
        ctx, steps.projected(tx, "refused", 0, reason), "declined", f"{NOT_DONE}: {line}"
    )


async def owe_rest(
    ctx: Context,
    tx: Tx,
    reason: str,
    *,
    outcome: Outcome | None = None,
    finish_call: tuple[int, str, dict[str, Any]] | None = None,
    print_now: bool = True,
) -> Tx:
    """The wallet was debited and the kiosk paid (part of) nothing back: what was not paid out
    is owed, with its receipt, in one commit."""
    j = ctx.journal
    short = tx.amount_due - tx.dispensed
    status = "NOT FULLY PAID - keep this receipt; support will pay the rest"
    doc = await steps.receipt(ctx, steps.projected(tx, "owed", short, reason), "owed", status)
    tx, receipt_id = await j.call(
        j.sync.decide,
        tx.id,
        "owed",
        outcome=outcome,
        finish_call=finish_call,
        owe=[(short, reason)],
        receipt=("owed", receipts.to_json(doc)),
        reason=reason,
    )
    log.warning("%s: owed %s (%s)", tx.ref, short, reason)
    if print_now and receipt_id is not None:
        await receipts.print_queued(j, ctx.printer, receipt_id, doc)
    return tx
