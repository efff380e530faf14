"""The customer picks a cash-out amount without a screen: the kiosk prints the preset list
(``[cashout] presets``) and the customer presses the green button once for the first amount,
twice for the second, and so on, then waits.

- a quiet gap (:data:`QUIET_S`) after the last press ends the choice;
- more presses than there are presets: the count starts again at one (a customer who lost
  count can start over by pressing on);
- the red button, or no press at all within the inactivity timeout: nothing is chosen.

The buzzer's beep and the WAIT/READY LEDs (driven by the panel) follow each press.
"""

from __future__ import annotations

import logging
from typing import Final

from drivers.panel import PanelEvent, PanelState
from kiosk import receipts
from kiosk.flows import steps
from kiosk.flows.context import Context, Sources
from kiosk.journal import Tx
from kiosk.money import Money

log = logging.getLogger("kiosk.flows.amount")

QUIET_S: Final = 2.5
"""Seconds without a press that end the customer's count."""


def menu(presets: tuple[int, ...], currency: str) -> str:
    """The chooser's lines: ``1x  EUR 50.00`` …"""
    return "\n".join(
        f"{'x' * n:<9} {n} press{'es' if n > 1 else ''}: {Money.of(v, currency)}"
        for n, v in enumerate(presets, start=1)
    )


async def choose(ctx: Context, tx: Tx, presets: tuple[int, ...]) -> int | str:
    """The preset the customer picked (minor units), or ``cancel`` / ``timeout``."""
    doc = await steps.receipt(ctx, tx, "choose", menu(presets, tx.currency))
    await receipts.issue(ctx.journal, ctx.printer, tx, "choose", doc)
    ctx.panel.show(PanelState.CHOOSE)
    sources = Sources(panel=ctx.panel.next_event)
    presses = 0
    try:
        while True:
            wait = QUIET_S if presses else ctx.config.inactivity_timeout_s
            got = await sources.next(wait)
            if got is None:
                if presses:
                    chosen = presets[(presses - 1) % len(presets)]
                    log.info("%s: amount chosen with %d press(es)", tx.ref, presses)
                    return chosen
                return "timeout"
            _, event = got
            if event == PanelEvent.CANCEL:
                return "cancel"
            if event == PanelEvent.CONFIRM:
                presses += 1
                ctx.panel.tick()
    finally:
        await sources.close()
