"""Paysera cash-out (not built yet: every reservation code is refused; nothing is created)."""

from __future__ import annotations

from typing import Any

from kiosk.flows import steps
from kiosk.flows.context import Context
from kiosk.journal import Tx
from kiosk.journeys import define

JOURNEY = define(
    "paysera_cashout",
    "paysera",
    "out",
    "checking",
    {"checking": "refused"},
    {"checking": "nothing moved: refused"},
)
STARTS = frozenset({"paysera_cashout"})
LOOK = steps.Look("Paysera Wallet")


async def run(ctx: Context, request: Any) -> Tx:
    j = ctx.journal
    tx = await j.call(j.sync.begin, JOURNEY.name, currency=ctx.config.currency.code)
    return await steps.refuse(ctx, tx, "not_built")


async def recover(ctx: Context, tx: Tx) -> Tx:
    return await ctx.journal.call(
        ctx.journal.sync.transition, tx.id, "refused", reason="interrupted"
    )


def operations(ctx: Context) -> list[Any]:
    return []
