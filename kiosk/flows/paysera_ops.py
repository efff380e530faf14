"""Paysera's outbox operations (:mod:`kiosk.outbox`) and the receipts they decide, for both
journeys (:mod:`kiosk.flows.paysera_cashout`, :mod:`kiosk.flows.paysera_cashin`).

``paysera.confirm`` — ``PUT /transaction/{key}/confirm``, the one call of the journey that
moves money (the customer's wallet pays). Its row is committed with ``confirming`` before the
request exists (:func:`confirm_call`). How a delivery counts:

- the customer waits and no earlier delivery is in doubt: the confirm is sent; ``confirmed``
  ⇒ done; a signed refusal ⇒ Paysera's state decides (below);
- the confirm's reply is lost (timeout, reset, 5xx): Paysera's state is read at once
  (:func:`resolve`). ``confirmed`` ⇒ done; still ``reserved`` ⇒ it is revoked: a DELETE that
  succeeds makes "not confirmed" final (a late confirm finds it ``revoked`` and is refused),
  one refused with ``invalid_state`` means the state moved: read again. Only a final state
  (``revoked``, ``failed``, ``rejected``, ``deleted``) says "not confirmed"; anything else
  leaves the delivery in doubt;
- any later delivery (an earlier one in doubt) or a customer who left: the confirm is
  **never** sent again; only :func:`resolve` is (a wallet must not be debited for a customer
  who went home without cash).

Settling: confirmed with the customer here ⇒ ``confirmed`` (the journey pays out); confirmed
once the customer left ⇒ ``owed`` (the full amount, a receipt queued); not confirmed ⇒
``refused`` (a DECLINED receipt) or, for a customer who left with a PENDING one, ``void``.

``paysera.revoke`` — ``DELETE /transaction/{key}``, queued whenever the kiosk decides never to
confirm a transaction whose key it knows. Not money-critical (nothing moves until a confirm and
a reservation lapses after ``reserve_for_s``): it only releases the customer's held funds
sooner. Done once Paysera's state is final and not confirmed.

``paysera.cashin_confirm`` — the cash-in's confirm (the allowance pays the customer's wallet
for the notes the kiosk took). Unlike the cash-out, a delivery in doubt is **sent again**
(the transaction key makes a second confirm harmless: Paysera confirms a transaction once):
the customer gave cash and wants it credited. A signed refusal is made final by a revoke;
once the reservation has lapsed (``void_after``) only Paysera's state is read, and a live
transaction revoked. Confirmed ⇒ ``confirmed`` (then the receipt and ``completed``); not
confirmed ⇒ the cash is **owed**.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from kiosk import receipts
from kiosk.errors import ProviderError, ProviderRefused
from kiosk.flows import steps
from kiosk.flows.context import Context
from kiosk.journal import Call, Outcome, Tx
from kiosk.outbox import Attempt, Delivery, Verdict, classify
from kiosk.providers.paysera.config import PayseraConfig
from kiosk.providers.paysera.outcomes import told

log = logging.getLogger("kiosk.flows.paysera")

CLOCK_MARGIN_MS: Final = 120_000
"""Our clock against Paysera's, on top of ``reserve_for_s``, before a confirm counts as void."""
NOT_CONFIRMED: Final = frozenset({"revoked", "failed", "rejected", "deleted"})
"""Final states in which the transaction was not confirmed and never will be."""
FINAL: Final = {"final": True}
"""A "not confirmed" that can never change (:mod:`kiosk.outbox`): the transaction is in a final
state, so a confirm still in flight is refused when it lands."""
REVOCABLE: Final = frozenset(
    {"new", "waiting", "waiting_funds", "waiting_registration", "waiting_password", "reserved"}
)
OWED_LEFT: Final = "NOT PAID - Paysera took the money after you left; support will pay you"
DECLINED: Final = "NOT DONE"


def settings(ctx: Context) -> PayseraConfig:
    p: PayseraConfig | None = ctx.config.providers.get("paysera")
    if p is None:
        raise LookupError("Paysera is not configured on this kiosk")
    return p


def confirm_call(tx: Tx, key: str, *, now_ms: int, created_ms: int, reserve_for_s: int) -> Call:
    """The outbox call that confirms ``key`` for ``tx``: void once the reservation has lapsed
    at Paysera (``reserve_for_s`` after the transaction was created, plus our clock margin)."""
    return Call(
        op=PayseraConfirm.name,
        kind="confirm",
        idem_key=f"{tx.ref}-confirm",
        amount=tx.amount_due,
        request={"key": key},
        public={"transaction_key": key},
        request_time_ms=now_ms,
        void_after_ms=created_ms + reserve_for_s * 1000 + CLOCK_MARGIN_MS,
    )


def cashin_confirm_call(
    tx: Tx, key: str, *, now_ms: int, created_ms: int, reserve_for_s: int
) -> Call:
    return Call(
        op=PayseraCashInConfirm.name,
        kind="confirm",
        idem_key=f"{tx.ref}-confirm",
        amount=tx.credited,
        request={"key": key},
        public={"transaction_key": key},
        request_time_ms=now_ms,
        void_after_ms=created_ms + reserve_for_s * 1000 + CLOCK_MARGIN_MS,
    )


async def queue_revoke(ctx: Context, tx: Tx, reserve_for_s: int) -> None:
    """Queue the revoke of ``tx``'s Paysera transaction (the kiosk will never confirm it)."""
    j = ctx.journal
    if not tx.provider_ref:
        return
    call = revoke_call(tx, tx.provider_ref, now_ms=ctx.clock_ms(), reserve_for_s=reserve_for_s)
    await j.call(j.sync.start_call, tx.id, None, call)
    ctx.outbox().wake()


def revoke_call(tx: Tx, key: str, *, now_ms: int, reserve_for_s: int) -> Call:
    return Call(
        op=PayseraRevoke.name,
        kind="revoke",
        idem_key=f"{tx.ref}-revoke",
        amount=0,
        request={"key": key},
        public={"transaction_key": key},
        request_time_ms=now_ms,
        void_after_ms=now_ms + reserve_for_s * 1000 + CLOCK_MARGIN_MS,
    )


async def resolve(client: Any, key: str) -> tuple[Verdict, dict[str, Any], str]:
    """Was ``key`` confirmed? Read it; a transaction still live is revoked so that the answer
    becomes final. ``(APPLIED, ...)``: confirmed; ``(NOT_APPLIED, ...)``: a final state that
    is not ``confirmed``; ``(UNKNOWN, ..., why)``: no final answer."""
    try:
        found = await client.get(key)
    except ProviderError:
        # Paysera cannot be read: a DELETE still makes "not confirmed" final if it succeeds.
        found = None
    if found is not None and found.status == "confirmed":
        return Verdict.APPLIED, {"status": "confirmed", "settled_by": "get"}, ""
    if found is None or found.status in REVOCABLE:
        try:
            found = await client.revoke(key)
        except ProviderRefused as exc:
            if not (exc.signed and exc.code == "invalid_state"):
                return Verdict.UNKNOWN, {}, f"revoke refused ({exc.code})"
            try:  # the state moved under us (a confirm that just landed?): read it again
                found = await client.get(key)
            except ProviderError as again:
                return Verdict.UNKNOWN, {}, f"get after revoke: {type(again).__name__}"
            if found.status == "confirmed":
                return Verdict.APPLIED, {"status": "confirmed", "settled_by": "get"}, ""
        except ProviderError as exc:
            return Verdict.UNKNOWN, {}, f"revoke: {type(exc).__name__}"
        else:
            if found.status == "revoked":
                return (
                    Verdict.NOT_APPLIED,
                    {**FINAL, "status": "revoked", "settled_by": "revoke"},
                    "",
                )
    if found.status in NOT_CONFIRMED:
        return Verdict.NOT_APPLIED, {**FINAL, "status": found.status, "settled_by": "get"}, ""
    return Verdict.UNKNOWN, {"status": found.status}, f"status {found.status}"


def not_confirmed_reason(detail: dict[str, Any]) -> str:
    code = detail.get("code")
    if code:
        return f"confirm_refused:{told(code).reason}"
    return f"not_confirmed:{detail.get('status', '?')}"


class PayseraConfirm:
    """The outbox operation ``paysera.confirm``: see the module docstring."""

    name = "paysera.confirm"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        ctx, j = self.ctx, self.ctx.journal
        client, key = ctx.client("paysera"), request["key"]
        tx = await j.call(j.sync.get, row["tx_id"])
        if tx.state != "confirming" or row["result"].get("in_doubt"):
            # Never confirm again: an earlier confirm may land, or nobody is here for the
            # cash. Paysera's state (made final by a revoke) is all that is asked.
            verdict, detail, why = await resolve(client, key)
            return _attempt(verdict, detail, why, unknown=Delivery.NOT_SENT)
        try:
            found = await client.confirm(key)
        except ProviderError as exc:
            delivery = classify(exc)
            error = f"{type(exc).__name__}: {exc}"
            if delivery is not Delivery.IN_DOUBT:
                return Attempt(delivery, {"code": exc.code} if exc.code else {}, error)
            verdict, detail, why = await resolve(client, key)  # the reply was lost
            return _attempt(verdict, detail, f"{error}; {why}", unknown=Delivery.IN_DOUBT)
        if found.status == "confirmed":
            return Attempt(Delivery.DONE, {"status": "confirmed", "settled_by": "confirm"})
        return Attempt(Delivery.REFUSED, {"status": found.status}, f"status {found.status}")

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        j = self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        verdict, detail, why = await resolve(self.ctx.client("paysera"), tx.provider_ref or "")
        return verdict, ({**detail, "error": why} if why else detail)

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await steps.call_end(ctx, row, applied, detail)
        here = inline and tx.state == "confirming"
        if tx.closed:  # decided by other means (a technician): only the call ends
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            log.error("%s: Paysera confirm settled (applied=%s) on a closed tx", tx.ref, applied)
            return
        if applied and here:
            await j.call(j.sync.decide, tx.id, "confirmed", outcome=outcome, finish_call=finish)
            log.info("%s: Paysera confirmed the cash-out (%s)", tx.ref, detail.get("settled_by"))
            return
        if applied:
            # The customer left without cash (PENDING receipt): never pay out now; owe it all.
            reason = "confirmed_after_customer_left"
            await owe_all(ctx, tx, reason, outcome=outcome, finish_call=finish, status=OWED_LEFT)
            return
        reason = not_confirmed_reason(detail)
        if here:
            doc = await declined(ctx, tx, reason, "Paysera did not confirm the cash-out.")
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
        log.info("%s: Paysera did not confirm (%s): nothing moved", tx.ref, reason)


def _attempt(verdict: Verdict, detail: dict[str, Any], why: str, *, unknown: Delivery) -> Attempt:
    """Paysera's state as a delivery: confirmed ⇒ done; a final "not confirmed" ⇒ refused
    (processed, not applied, and no request of ours can apply any more); else ``unknown``."""
    if verdict is Verdict.APPLIED:
        return Attempt(Delivery.DONE, detail)
    if verdict is Verdict.NOT_APPLIED:
        return Attempt(Delivery.REFUSED, detail, f"not confirmed: {detail.get('status')}")
    return Attempt(unknown, detail, why)


class PayseraCashInConfirm:
    """The outbox operation ``paysera.cashin_confirm``: see the module docstring."""

    name = "paysera.cashin_confirm"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        client, key = self.ctx.client("paysera"), request["key"]
        try:
            found = await client.confirm(key)
        except ProviderRefused as exc:
            detail = {"code": exc.code} if exc.code else {}
            if not exc.signed or exc.code == "invalid_state":
                # confirmed by an earlier delivery, lapsed, or no answer of Paysera's: its
                # state decides
                return Attempt(classify(exc), detail, f"confirm refused ({exc.code})")
            verdict, state, why = await resolve(client, key)  # make the refusal final
            return _attempt(verdict, {**detail, **state}, why, unknown=Delivery.REFUSED)
        except ProviderError as exc:
            return Attempt(classify(exc), {"code": exc.code} if exc.code else {}, str(exc))
        if found.status == "confirmed":
            return Attempt(Delivery.DONE, {"status": "confirmed", "settled_by": "confirm"})
        return Attempt(Delivery.REFUSED, {"status": found.status}, f"status {found.status}")

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        j, client = self.ctx.journal, self.ctx.client("paysera")
        tx = await j.call(j.sync.get, row["tx_id"])
        key = tx.provider_ref or ""
        if self.ctx.outbox().provider_now_ms(row) >= row["void_after_ms"]:
            verdict, detail, why = await resolve(client, key)  # lapsed: make it final
            return verdict, ({**detail, "error": why} if why else detail)
        try:
            found = await client.get(key)
        except ProviderError as exc:
            return Verdict.UNKNOWN, {"error": f"get: {type(exc).__name__}"}
        if found.status == "confirmed":
            return Verdict.APPLIED, {"status": "confirmed", "settled_by": "get"}
        if found.status in NOT_CONFIRMED:
            return Verdict.NOT_APPLIED, {**FINAL, "status": found.status, "settled_by": "get"}
        return Verdict.UNKNOWN, {"error": f"status {found.status}"}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        ctx, j = self.ctx, self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        outcome, finish = await steps.call_end(ctx, row, applied, detail)
        if tx.closed:
            await j.call(j.sync.decide, tx.id, None, outcome=outcome, finish_call=finish)
            log.error("%s: Paysera cash-in settled (applied=%s) on a closed tx", tx.ref, applied)
            return
        if applied:
            then = None if inline else "completed"  # one who left holds a PENDING receipt
            await j.call(
                j.sync.decide, tx.id, "confirmed", outcome=outcome, finish_call=finish, then=then
            )
            log.info("%s: Paysera credited the wallet (%s)", tx.ref, detail.get("settled_by"))
            return
        reason = not_confirmed_reason(detail)
        await steps.owe_cash_in(ctx, tx, reason, outcome=outcome, finish_call=finish, inline=inline)


class PayseraRevoke:
    """The outbox operation ``paysera.revoke``: see the module docstring."""

    name = "paysera.revoke"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        try:
            found = await self.ctx.client("paysera").revoke(request["key"])
        except ProviderError as exc:
            return Attempt(classify(exc), {"code": exc.code}, f"{type(exc).__name__}: {exc}")
        return Attempt(Delivery.DONE, {"status": found.status, "settled_by": "revoke"})

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        j = self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        try:
            found = await self.ctx.client("paysera").get(tx.provider_ref or "")
        except ProviderRefused as exc:
            if exc.signed and exc.code == "not_found":
                return Verdict.APPLIED, {"status": "not_found", "settled_by": "get"}
            return Verdict.UNKNOWN, {"error": f"get refused ({exc.code})"}
        except ProviderError as exc:
            return Verdict.UNKNOWN, {"error": f"get: {type(exc).__name__}"}
        if found.status in NOT_CONFIRMED:
            return Verdict.APPLIED, {"status": found.status, "settled_by": "get"}
        if found.status == "confirmed":
            return Verdict.NOT_APPLIED, {"status": "confirmed", "settled_by": "get"}
        return Verdict.UNKNOWN, {"error": f"status {found.status}"}

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        j = self.ctx.journal
        tx = await j.call(j.sync.get, row["tx_id"])
        eff = await j.call(j.sync.effect_by_key, row["idem_key"])
        assert eff is not None
        status = "done" if applied else "failed"
        await j.call(
            j.sync.decide,
            tx.id,
            None,
            outcome=Outcome(eff.id, status, outcome=detail),
            finish_call=(row["id"], status, detail),
        )
        if applied:
            log.info("%s: Paysera transaction revoked (%s)", tx.ref, detail.get("status"))
        else:  # the kiosk never sent a confirm for it: a technician must look
            log.error("%s: a transaction the kiosk never confirmed is confirmed", tx.ref)
            await j.call(j.sync.log, "paysera.confirmed_unexpectedly", detail, tx.id)


# --- the receipts of these decisions -------------------------------------------------------


async def declined(ctx: Context, tx: Tx, reason: str, line: str) -> Any:
    """The DECLINED receipt of ``tx`` about to be refused for ``reason``."""
    return await steps.receipt(
        ctx, steps.projected(tx, "refused", 0, reason), "declined", f"{DECLINED}: {line}"
    )


async def owe_all(
    ctx: Context,
    tx: Tx,
    reason: str,
    *,
    outcome: Outcome | None = None,
    finish_call: tuple[int, str, dict[str, Any]] | None = None,
    status: str = steps.OWED,
) -> Tx:
    """Paysera took the money and the kiosk paid nothing (more): what was not paid out is
    owed, with its receipt, in one commit. The receipt is queued (printed when the customer
    is still there, or by the start-up queue)."""
    j = ctx.journal
    short = tx.amount_due - tx.dispensed
    doc = await steps.receipt(ctx, steps.projected(tx, "owed", short, reason), "owed", status)
    tx, _ = await j.call(
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
    return tx
