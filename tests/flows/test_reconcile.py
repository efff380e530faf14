"""`kiosk reconcile` lists every disagreement between the journal and PayBy's own view."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kiosk import config
from kiosk.reconcile import reconcile
from tests.flows.recovery_helpers import at_state
from tests.flows.rig import rig, run
from tests.flows.test_payby_cashin import start


def test_reconcile_finds_paid_and_owed_and_agrees_otherwise(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            task = await start(r, r.order("50.00")["tokenUrl"])
            await r.insert(5000)
            good = await task
            assert good.state == "completed"
            cfg = config.load(r.files.config)
            secrets = config.load_secrets(cfg.secrets_file)
            loop = asyncio.get_running_loop()

            def check() -> list[str]:
                found = asyncio.run(reconcile(cfg, secrets, None))
                return [f"{f.severity}:{f.ref}" for f in found]

            assert await loop.run_in_executor(None, check) == []
            # A journal that owes the customer for an order PayBy says the store paid:
            order = r.order("150.00")
            bad = await at_state(r, "accepting", order=order, credited=15000)
            assert "payby" in r.ctx.clients
            from kiosk.money import Money

            await r.ctx.client("payby").pay_token_order(
                order["tokenUrl"],
                order_no=order["orderNo"],
                amount=Money.of(15000, "AED"),
                payment_no=f"{bad.ref}-pay",
                device_id="KSK-DEMO",
            )
            j = r.ctx.journal
            await j.call(j.sync.decide, bad.id, "owed", owe=[(15000, "test")], reason="test")
            assert await loop.run_in_executor(None, check) == [f"double:{bad.ref}"]

    run(scenario)
