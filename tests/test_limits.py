"""Issue 16's limits and approvals: each provider's daily limit (a cash-out that would pass it
refused before any provider call, a cash-in capped at what is left, the local day boundary),
and a technician's approval above the threshold (service key, signed fleet ``approve``, the
customer's cancel, the timeout, an approval for nothing waiting, a crash while waiting)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from drivers.panel import PanelState
from drivers.validator.base import PowerUpReport
from kiosk import config, limits
from kiosk.approvals import Approvals
from kiosk.errors import ApprovalRefused, ConfigError
from kiosk.flows.recovery import recover
from kiosk.journal import Journal, Tx
from kiosk.money import Money
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler
from tests.flows.test_paysera import balance, cash_in, cash_out, code_for, receipt, wallet

CANCEL, SERVICE_KEY = 6, 13
DAY_MS = 86_400_000


def with_paysera(r: Rig, **fields: Any) -> None:
    p = r.ctx.config.providers["paysera"]
    providers = {**r.ctx.config.providers, "paysera": dataclasses.replace(p, **fields)}
    r.ctx.config = dataclasses.replace(r.ctx.config, providers=providers)


def with_limits(r: Rig, **fields: Any) -> None:
    lim = dataclasses.replace(r.ctx.config.limits, **fields)
    r.ctx.config = dataclasses.replace(r.ctx.config, limits=lim)


async def events(r: Rig, tx: Tx, prefix: str) -> list[dict[str, Any]]:
    j = r.ctx.journal
    return [e for e in await j.call(j.sync.events, tx.id) if e["kind"].startswith(prefix)]


def said(r: Rig, tx: Tx) -> str:
    """The DECLINED receipt's words, on one line."""
    return " ".join(receipt(r, tx, "declined").split())


# --- the day -------------------------------------------------------------------------------


def test_the_day_is_the_local_calendar_day(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Dubai")  # UTC+4, no summer time
    time.tzset()
    try:
        noon = int(datetime.fromisoformat("2026-12-03T12:00:00+04:00").timestamp() * 1000)
        assert limits.day_window(noon) == ("2026-12-02T20:00:00.000Z", "2026-12-03T20:00:00.000Z")
        late = int(datetime.fromisoformat("2026-12-03T23:59:00+04:00").timestamp() * 1000)
        assert limits.day_window(late) == limits.day_window(noon)
        after = late + 120_000  # 00:01 local: the next day
        assert limits.day_window(after)[0] == "2026-12-03T20:00:00.000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_day_keys_are_checked(tmp_path: Path) -> None:
    from tests.test_config import _with

    cfg = config.load(_with(tmp_path, "paysera", 'cashin_day_max = "9000.50"'))
    assert (cfg.providers["paysera"].cashin_day_max, cfg.providers["paysera"].cashout_day_max) == (
        900050, 0)  # fmt: skip
    cfg = config.load(
        _with(tmp_path, "limits", 'approval_above = "300.00"\napproval_timeout_s = 60')
    )
    assert (cfg.limits.approval_above, cfg.limits.approval_timeout_s) == (30000, 60.0)
    for key in ("payby.cashin_day_max", "rapyd.cashout_day_max", "cashii.cashout_day_max",
                "limits.approval_above"):  # fmt: skip
        table, _, name = key.rpartition(".")
        for bad in ('"1.005"', '"-5.00"', '"nan"', "100"):
            with pytest.raises(ConfigError) as err:
                config.load(_with(tmp_path, table, f"{name} = {bad}"))
            assert err.value.key == key
    for bad in ("inf", "nan", "5", "10000"):
        with pytest.raises(ConfigError) as err:
            config.load(_with(tmp_path, "limits", f"approval_timeout_s = {bad}"))
        assert err.value.key == "limits.approval_timeout_s"
    with pytest.raises(ConfigError) as err:  # cash-in: Cashii has no such direction
        config.load(_with(tmp_path, "cashii", 'cashin_day_max = "10.00"'))
    assert err.value.key == "cashii.cashin_day_max"


# --- the daily limit -----------------------------------------------------------------------


def test_day_limit_refuses_the_cash_out_that_would_pass_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.ctx.dispenser = Recycler({5000: 100})
            with_paysera(r, cashout_day_max=30000)
            w = wallet(r, 500000)
            tx = await cash_out(r, code_for(r, w), 20000)
            assert (tx.state, tx.dispensed) == ("completed", 20000)
            tx = await cash_out(r, code_for(r, w), 15000)  # 350.00 > 300.00 a day
            assert (tx.state, tx.reason, tx.provider_ref) == ("refused", "day_limit", None)
            text = " ".join(receipt(r, tx, "declined").split())
            assert "at most AED 100.00 more for this service" in text and "day_limit" not in text
            assert balance(r, w) == (480000, 0)  # Paysera was never asked
            tx = await cash_out(r, code_for(r, w), 10000)  # fits exactly
            assert (tx.state, tx.dispensed) == ("completed", 10000)
            tx = await cash_out(r, code_for(r, w), 5000)
            assert (tx.state, tx.reason) == ("refused", "day_limit")
            assert "today's limit" in said(r, tx)

            r.ctx.clock_ms = lambda: r.sandbox.clock.now_ms() + DAY_MS  # tomorrow
            tx = await cash_out(r, code_for(r, w), 20000)
            assert (tx.state, tx.dispensed) == ("completed", 20000)

    run(scenario)


def test_pending_and_in_progress_count_refused_do_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j = r.ctx.journal
            with_paysera(r, cashout_day_max=30000)
            pending = await j.call(j.sync.begin, "paysera_cashout", currency="AED")
            for state in ("creating", "reserving", "confirming", "pending"):
                pending = await j.call(j.sync.transition, pending.id, state, amount_due=10000)
            busy = await j.call(j.sync.begin, "paysera_cashout", currency="AED", amount_due=5000)
            no = await j.call(j.sync.begin, "paysera_cashout", currency="AED", amount_due=9000)
            await j.call(j.sync.transition, no.id, "refused", reason="invalid_code")
            cash_in_tx = await j.call(j.sync.begin, "paysera_cashin", currency="AED", amount_due=1)
            now = r.ctx.clock_ms()
            left = await j.call(limits.left_today, j.sync, r.ctx.config.providers, busy, now)
            assert left == 30000 - 10000  # itself left out
            left = await j.call(limits.left_today, j.sync, r.ctx.config.providers, no, now)
            assert left == 30000 - 15000
            assert (
                await j.call(limits.left_today, j.sync, r.ctx.config.providers, cash_in_tx, now)
                is None
            )  # no cashin_day_max: no limit

    run(scenario)


def test_cash_in_is_capped_at_what_is_left_today(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            with_paysera(r, cashin_day_max=25000)
            w = wallet(r, 0)
            tx = await cash_in(r, w["wallet_id"], [10000, 5000])
            assert (tx.state, tx.credited) == ("completed", 15000)
            tx = await cash_in(r, w["wallet_id"], [5000, 10000, 5000])
            assert (tx.state, tx.credited) == ("completed", 10000)  # the 100.00 came back
            j = r.ctx.journal
            returned = [
                e for e in await j.call(j.sync.events, tx.id) if e["kind"] == "note.returned"
            ]
            assert [e["data"]["value"] for e in returned] == [10000]
            tx = await cash_in(r, w["wallet_id"], [])  # nothing left: refused before a note
            assert (tx.state, tx.reason, tx.credited) == ("refused", "day_limit", 0)
            assert "today's limit" in said(r, tx)
            assert balance(r, w) == (25000, 0)

    run(scenario)


# --- approvals -----------------------------------------------------------------------------


async def waiting_cash_out(r: Rig, w: dict[str, Any], amount: int) -> tuple[asyncio.Task[Tx], Tx]:
    task = asyncio.create_task(cash_out(r, code_for(r, w), amount))
    await r.until(lambda: r.panel.state == PanelState.APPROVAL or task.done())
    assert not task.done()
    tx = await r.tx()
    assert r.ctx.approvals.waiting() == {tx.ref: Money.of(amount, "AED")}
    (asked,) = await events(r, tx, "approval.")
    assert asked["kind"] == "approval.requested" and asked["data"]["amount"] == amount
    return task, tx


def approving(r: Rig, above: int = 20000, timeout_s: float = 5.0) -> dict[str, Any]:
    r.ctx.dispenser = Recycler({5000: 100})
    with_limits(r, approval_above=above, approval_timeout_s=timeout_s)
    return wallet(r, 500000)


def test_the_service_key_approves(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = approving(r)
            tx = await cash_out(r, code_for(r, w), 20000)  # not above: no approval asked
            assert tx.state == "completed" and not await events(r, tx, "approval.")
            task, tx = await waiting_cash_out(r, w, 25000)
            assert balance(r, w) == (480000, 0)  # nothing asked of Paysera while waiting
            slip = " ".join(receipt(r, tx, "approval").split())
            assert "An attendant must approve AED 250.00" in slip and tx.ref in slip
            r.press(SERVICE_KEY)
            tx = await task
            assert (tx.state, tx.dispensed) == ("completed", 25000)
            kinds = [(e["kind"], e["data"].get("by")) for e in await events(r, tx, "approval.")]
            assert kinds == [("approval.requested", None), ("approval.granted", "service_key")]
            assert not r.ctx.approvals.waiting()

    run(scenario)


def test_a_fleet_approve_approves_and_only_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = approving(r)
            task, tx = await waiting_cash_out(r, w, 25000)
            with pytest.raises(ApprovalRefused, match=r"not AED 300\.00"):
                r.ctx.approvals.grant(tx.ref, "fleet", Money.of(30000, "AED"))
            with pytest.raises(ApprovalRefused, match="no transaction waits"):
                r.ctx.approvals.grant("KSK-0001-999999", "fleet", Money.of(25000, "AED"))
            assert r.ctx.approvals.grant(tx.ref, "fleet", Money.of(25000, "AED")).minor == 25000
            with pytest.raises(ApprovalRefused, match="already approved"):
                r.ctx.approvals.grant(tx.ref, "fleet", Money.of(25000, "AED"))
            tx = await task
            assert (tx.state, tx.dispensed) == ("completed", 25000)
            (granted,) = [
                e for e in await events(r, tx, "approval.") if e["kind"].endswith("granted")
            ]
            assert granted["data"]["by"] == "fleet"
            with pytest.raises(ApprovalRefused, match="finished"):
                r.ctx.approvals.grant(tx.ref, "fleet", Money.of(25000, "AED"))

    run(scenario)


def test_cancel_refuses_and_nothing_moves(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = approving(r)
            task, tx = await waiting_cash_out(r, w, 25000)
            r.press(CANCEL)
            tx = await task
            assert (tx.state, tx.reason, tx.dispensed, tx.owed) == (
                "refused", "approval_refused", 0, 0)  # fmt: skip
            assert "You cancelled" in said(r, tx)
            assert [e["kind"] for e in await events(r, tx, "approval.")] == [
                "approval.requested", "approval.refused"]  # fmt: skip
            assert balance(r, w) == (500000, 0)
            assert not r.ctx.approvals.waiting()

    run(scenario)


def test_no_approval_in_time_expires(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = approving(r, timeout_s=0.3)
            with_paysera(r, approval_above=10000)  # Paysera's own threshold: the lower wins
            task, tx = await waiting_cash_out(r, w, 15000)
            tx = await task
            assert (tx.state, tx.reason) == ("refused", "approval_expired")
            assert "in time" in said(r, tx)
            with pytest.raises(ApprovalRefused):
                r.ctx.approvals.grant(tx.ref, "fleet", Money.of(15000, "AED"))
            assert balance(r, w) == (500000, 0)

    run(scenario)


def test_a_crash_while_waiting_recovers_as_not_done(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = approving(r)
            task, tx = await waiting_cash_out(r, w, 25000)
            task.cancel()  # the process dies here: nothing after approval.requested ran
            with pytest.raises(asyncio.CancelledError):
                await task
            r.ctx.approvals = Approvals()  # a restart: nothing waits in memory
            (tx,) = await recover(r.ctx, PowerUpReport())
            assert (tx.state, tx.dispensed, tx.owed) == ("refused", 0, 0)
            with pytest.raises(ApprovalRefused):
                r.ctx.approvals.grant(tx.ref, "fleet", Money.of(25000, "AED"))
            assert balance(r, w) == (500000, 0)

    run(scenario)


def test_moved_between_is_one_aggregate(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.db", kiosk_id="K", code_key=b"k" * 32)
    try:
        a = j.begin("rapyd_cashout", currency="AED", amount_due=700)
        j.begin("rapyd_cashout", currency="EUR", amount_due=900)  # another currency
        today = limits.day_window(int(datetime.now().timestamp() * 1000))
        assert j.moved_between("rapyd", ["rapyd_cashout"], "AED", *today) == 700
        assert j.moved_between("rapyd", ["rapyd_cashout"], "AED", *today, besides=a.id) == 0
        tomorrow = limits.day_window(int((datetime.now() + timedelta(days=1)).timestamp() * 1000))
        assert j.moved_between("rapyd", ["rapyd_cashout"], "AED", *tomorrow) == 0
        assert j.moved_between("rapyd", [], "AED", *today) == 0
    finally:
        j.close()


def test_a_signed_fleet_approve_through_the_daemon(tmp_path: Path) -> None:
    from kiosk.daemon import Daemon
    from kiosk.fleet.commands import handle
    from tests.fleet.test_commands import gate, signed

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = approving(r)
            g = gate(tmp_path / "fleet")

            async def run_command(cmd: dict[str, Any]) -> str:
                return await Daemon._fleet_command(cast(Daemon, None), r.ctx, cmd)

            task, tx = await waiting_cash_out(r, w, 25000)
            amount = {"currency": "AED", "minor": 25000}
            other = signed(seq=1, cmd="approve", args={"ref": "KSK-0001-000999", "amount": amount})
            mine = signed(seq=2, cmd="approve", args={"ref": tx.ref, "amount": amount})
            again = signed(seq=3, cmd="approve", args={"ref": tx.ref, "amount": amount})
            first = await handle([other, mine], g, run_command, r.ctx.journal)
            assert [(e["ok"], e["result"][:9]) for e in first] == [
                (False, "refused: "), (True, f"{tx.ref[:9]}")]  # fmt: skip
            assert "no transaction waits" in first[0]["result"]
            tx = await task
            assert (tx.state, tx.dispensed) == ("completed", 25000)
            (late,) = await handle([again], g, run_command, r.ctx.journal)
            assert not late["ok"] and "finished" in late["result"]

    (tmp_path / "fleet").mkdir()
    run(scenario)


# --- PayBy Cash Top Up: its amount is known before any note ---------------------------------


def with_payby(r: Rig, **fields: Any) -> None:
    p = r.ctx.config.providers["payby"]
    providers = {**r.ctx.config.providers, "payby": dataclasses.replace(p, **fields)}
    r.ctx.config = dataclasses.replace(r.ctx.config, providers=providers)


def test_a_cash_top_up_past_the_day_limit_is_refused_before_any_note(tmp_path: Path) -> None:
    from kiosk.flows.payby_cashin import PayByCashIn

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            with_payby(r, cashin_day_max=10000)
            tx = await PayByCashIn(r.ctx, r.order("150.00")["tokenUrl"]).run()
            assert (tx.state, tx.reason, tx.credited) == ("refused", "day_limit", 0)
            assert "at most AED 100.00 more" in said(r, tx)
            assert r.validator.state()["enabled"] is False
            assert r.balance() == "1000.00"

    run(scenario)


def test_a_cash_top_up_above_the_threshold_waits_for_the_key(tmp_path: Path) -> None:
    from kiosk.flows.payby_cashin import PayByCashIn

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            with_limits(r, approval_above=10000, approval_timeout_s=5.0)
            order = r.order("150.00")
            task = asyncio.create_task(PayByCashIn(r.ctx, order["tokenUrl"]).run())
            await r.until(lambda: r.panel.state == PanelState.APPROVAL or task.done())
            assert r.validator.state()["enabled"] is False  # no note before the approval
            r.press(SERVICE_KEY)
            await r.until(lambda: r.panel.state == PanelState.INSERT_NOTES or task.done())
            await r.insert(10000)
            await r.insert(5000)
            tx = await task
            assert (tx.state, tx.credited) == ("completed", 15000)
            kinds = [e["kind"] for e in await events(r, tx, "approval.")]
            assert kinds == ["approval.requested", "approval.granted"]

    run(scenario)


def test_status_shows_what_is_left_today(tmp_path: Path) -> None:
    from kiosk import status
    from tests.test_config import _with

    cfg = config.load(_with(tmp_path, "paysera", 'cashout_day_max = "500.00"'))
    j = Journal.open(tmp_path / "j.db", kiosk_id="K", code_key=b"k" * 32)
    try:
        j.begin("paysera_cashout", currency="AED", amount_due=12000)
        now = int(datetime.now().timestamp() * 1000)
        left = limits.left_by_provider(j, cfg.providers, "AED", now)
        assert left == {"paysera": {"out": 38000}}
    finally:
        j.close()
    doc = {
        "kiosk": "K",
        "state": "ready",
        "left_today": status.left_today(left, "AED"),
        "waiting_approval": {"K-000002": "AED 300.00"},
    }
    text = status.words(doc)
    assert "paysera    cash-out AED 380.00" in text
    assert "K-000002  AED 300.00" in text
