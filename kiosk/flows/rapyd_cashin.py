"""Rapyd cash-in by deposit: notes first, then the OTP, then the deposit to the wallet.

States (``JOURNEY``)::

    checking ─> accepting ─> awaiting_otp ─> opening ─> open ─> depositing ─> deposited ─> completed
       └> refused  │              │  ^          │        └> owed   │ └> pending ─> deposited | owed
                   └> cancelled   └> owed       └> owed            └> owed
                      | owed        └──(a refused OTP: another one)─┘

- started by ``kiosk:cashin?v=1&provider=rapyd`` (no OTP: it would expire while the notes go
  in; a start code that carries one is refused before any note);
- notes up to ``cashin_max``; the green button ends; then the panel asks for a code again
  (green steady) and the customer shows the envelope with a fresh OTP and the phone within
  ``otp_wait_s``; a wrong or expired OTP may be replaced, ``otp_attempts`` in all;
- open session; its close is an outbox row from then on (``rapyd.logout``); the deposit goes
  through the outbox (``rapyd.deposit``, idempotent; a lost answer is settled by replaying the
  same request, never by a new one);
- the cash is **owed**, with a receipt, whenever it cannot be deposited: no OTP, the OTPs
  refused, the session refused, the deposit refused for good.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from drivers.panel import PanelEvent, PanelState
from kiosk.errors import PayloadError, ProviderError, ProviderRefused
from kiosk.flows import rapyd_ops, steps
from kiosk.flows.context import Context, Sources
from kiosk.journal import Tx
from kiosk.journeys import define
from kiosk.providers.rapyd.codes import RapydCashIn as Request
from kiosk.providers.rapyd.config import RapydConfig
from kiosk.providers.rapyd.outcomes import told

log = logging.getLogger("kiosk.flows.rapyd")

JOURNEY = define(
    "rapyd_cashin",
    "rapyd",
    "in",
    "checking",
    {
        "checking": "accepting refused",
        "accepting": "awaiting_otp cancelled owed",
        "awaiting_otp": "opening owed",
        "opening": "open awaiting_otp owed",
        "open": "depositing owed",
        "depositing": "deposited owed pending",
        "pending": "deposited owed",
        "deposited": "completed",
    },
    {
        "checking": "nothing moved: refused",
        "accepting": "settle notes in flight with the device's power-up report; no note ⇒ "
        "cancelled, else owed",
        "awaiting_otp": "the notes are owed (the customer's OTP never came)",
        "opening": "the notes are owed (a session opened without our knowing expires)",
        "open": "the notes are owed (no deposit was sent); the logout goes",
        "depositing": "the deposit may have been sent: pending (a PENDING receipt); the outbox "
        "replays it: deposited ⇒ completed, refused ⇒ owed",
        "pending": "the outbox goes on",
        "deposited": "the receipt, unless the customer left with a PENDING one ⇒ completed",
    },
)
STARTS = frozenset({"rapyd_cashin"})
PAID = "PAID IN - your Rapyd wallet is credited"
PENDING = (
    "PENDING - Rapyd has not confirmed yet. The kiosk keeps trying: your wallet is credited"
    " as soon as Rapyd confirms; if it cannot be, support refunds your cash. Keep this receipt."
)


def _refs(tx: Tx) -> dict[str, str]:
    return {"Rapyd transaction": tx.provider_ref or "-"}


LOOK = steps.Look("Rapyd cash-in", pending=PENDING, references=_refs)


def settings(ctx: Context) -> RapydConfig:
    return rapyd_ops.settings(ctx)


class RapydCashIn:
    def __init__(self, ctx: Context, request: Request) -> None:
        self.ctx, self.j = ctx, ctx.journal
        self.cfg = settings(ctx)
        self.rapyd = ctx.client("rapyd")
        self.request = request

    async def run(self) -> Tx:
        ctx, j, cfg = self.ctx, self.j, self.cfg
        ctx.panel.show(PanelState.WAIT)
        tx = await j.call(j.sync.begin, JOURNEY.name, currency=ctx.config.currency.code)
        log.info("%s: Rapyd cash-in started", tx.ref)
        if cfg.cashin_max <= 0:
            return await steps.refuse(ctx, tx, "cashin_disabled")
        if self.request.otp is not None:
            line = "Show the code with the OTP only once your notes are in."
            return await steps.decline(ctx, tx, "otp_too_early", line)
        if ctx.read_code is None:
            return await steps.refuse(ctx, tx, "no_code_reader")
        if ctx.reachability.is_down("rapyd"):
            return await steps.refuse(ctx, tx, "provider_offline")
        cap = await steps.cap_today(ctx, tx, cfg.cashin_max)
        if isinstance(cap, Tx):
            return cap
        tx = await j.call(j.sync.transition, tx.id, "accepting")
        ending = await steps.accept_notes(ctx, tx, up_to=cap, confirm_ends=True)
        tx = await j.call(j.sync.get, tx.id)
        if ending != "complete":
            return await steps.end_without_payment(ctx, tx, ending)
        tx = await j.call(j.sync.transition, tx.id, "awaiting_otp", amount_due=tx.credited)
        for attempt in range(1, cfg.otp_attempts + 1):
            creds = await self._credentials(tx)
            if isinstance(creds, str):
                return await steps.owe(ctx, tx, creds)
            tx = await j.call(j.sync.transition, tx.id, "opening")
            opened = await self._open(tx, *creds)
            if opened.state != "awaiting_otp":
                return opened
            tx = opened
            log.info("%s: OTP refused (%d of %d)", tx.ref, attempt, cfg.otp_attempts)
        return await steps.owe(ctx, tx, "otp_refused")

    async def _credentials(self, tx: Tx) -> tuple[str, str] | str:
        """The customer's next code with an OTP, or why none came (``otp_timeout`` …)."""
        from kiosk.router import route

        ctx = self.ctx
        assert ctx.read_code is not None
        ctx.panel.show(PanelState.READY)  # "show me your code"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.otp_wait_s
        sources = Sources(code=ctx.read_code, panel=ctx.panel.next_event)
        try:
            while (left := deadline - loop.time()) > 0:
                got = await sources.next(left)
                if got is None:
                    break
                name, event = got
                if name == "panel":
                    if event == PanelEvent.CANCEL:
                        return "cancelled_before_otp"
                    continue
                try:
                    request = route(str(event), configs=ctx.config.providers)
                except PayloadError as exc:
                    log.info("%s: not an OTP code: %s", tx.ref, exc)
                    ctx.panel.show(PanelState.REFUSED)
                    continue
                if isinstance(request, Request) and request.otp and request.phone:
                    return request.otp, request.phone
                log.info("%s: a %s code while waiting for the OTP", tx.ref, request.kind)
                ctx.panel.show(PanelState.REFUSED)
            return "otp_timeout"
        finally:
            await sources.close()

    async def _open(self, tx: Tx, otp: str, phone: str) -> Tx:
        ctx, j = self.ctx, self.j
        ctx.panel.show(PanelState.WAIT)
        try:
            session = await self.rapyd.login(self.cfg.pos_id, otp, phone)
        except ProviderRefused as exc:
            outcome = told(exc.code)
            if outcome.otp_fault:
                return await j.call(j.sync.transition, tx.id, "awaiting_otp", reason=outcome.reason)
            return await steps.owe(ctx, tx, f"session_refused:{outcome.reason}")
        except ProviderError as exc:
            return await steps.owe(ctx, tx, f"provider_unreachable:{type(exc).__name__}")
        logout = rapyd_ops.logout_call(tx, session, ctx.clock_ms())
        with ctx.outbox().serving(tx.id):
            tx, _, _ = await j.call(j.sync.start_call, tx.id, "open", logout)
            call = rapyd_ops.deposit_call(tx, session, ctx.clock_ms())
            wait = self.cfg.call_wait_s
            tx = await steps.deliver(ctx, tx, "depositing", call, wait, "deposit_unconfirmed")
            if tx.state == "deposited":
                tx = await finish_deposited(ctx, tx)
            elif tx.state == "owed":
                await steps.print_queued(ctx, tx)
                ctx.panel.show(PanelState.REFUSED)
        await rapyd_ops.close_now(ctx, tx)
        return tx


async def finish_deposited(ctx: Context, tx: Tx) -> Tx:
    return await steps.finish(ctx, tx, "cashin", PAID)


async def run(ctx: Context, request: Any) -> Tx:
    return await RapydCashIn(ctx, request).run()


def operations(ctx: Context) -> list[Any]:
    return [rapyd_ops.RapydDeposit(ctx), rapyd_ops.RapydLogout(ctx)]


# --- recovery ------------------------------------------------------------------------------


async def recover(ctx: Context, tx: Tx) -> Tx:
    """Local decisions only; the outbox replays the deposit and closes the session."""
    j = ctx.journal
    if tx.state == "checking":
        return await j.call(j.sync.transition, tx.id, "refused", reason="interrupted")
    if tx.state == "accepting":
        return await steps.end_without_payment(ctx, tx, "interrupted")
    if tx.state in ("awaiting_otp", "opening", "open"):
        return await steps.owe(ctx, tx, f"interrupted_{tx.state}")
    if tx.state == "depositing":
        for row in await j.call(j.sync.outbox_rows, tx.id, queued_only=True):
            if row["op"] == rapyd_ops.RapydDeposit.name:
                await j.call(j.sync.mark_in_doubt, row["id"], "interrupted")
        tx = await j.call(j.sync.get, tx.id)
        if tx.state != "depositing":
            return tx
        deposits = await j.call(j.sync.effects, tx.id, kind="deposit")
        return await steps.pend(ctx, tx, deposits[-1].id, "interrupted")
    if tx.state == "deposited":
        return await finish_deposited(ctx, tx)
    return tx
