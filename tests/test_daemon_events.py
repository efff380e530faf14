"""The daemon's idle loop loses no device event: every event that completed in the same wait
is handled, in order, before a journey starts (issue 8)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from drivers.errors import PortError
from drivers.validator.base import FaultCleared, FaultKind
from kiosk import config, daemon
from kiosk.daemon import Daemon
from kiosk.flows.context import Sources
from tests.flows.rig import Rig, rig, run


class Reader:
    def __init__(self) -> None:
        self.codes: asyncio.Queue[str] = asyncio.Queue()

    async def next_code(self) -> str:
        return await self.codes.get()


def _daemon(r: Rig) -> tuple[Daemon, Any, Reader]:
    secrets = config.load_secrets(r.ctx.config.secrets_file)
    d = Daemon(r.ctx.config, secrets)
    d.validator_ok = True
    reader = Reader()
    hw = SimpleNamespace(reader=reader, panel=r.panel, validator=r.validator)
    return d, hw, reader


async def _kinds(r: Rig) -> list[str]:
    j = r.ctx.journal
    return [e["kind"] for e in reversed(await j.call(j.sync.events, None, limit=1000))]


def test_sources_close_hands_back_completed_events() -> None:
    async def scenario() -> None:
        a: asyncio.Queue[str] = asyncio.Queue()
        b: asyncio.Queue[str] = asyncio.Queue()
        sources = Sources(a=a.get, b=b.get)
        a.put_nowait("code")
        b.put_nowait("recovered")
        got = await sources.next(1.0)
        await asyncio.sleep(0)
        left = await sources.close()
        assert sorted([got, *left]) == [("a", "code"), ("b", "recovered")]

    run(scenario)


def test_recovered_while_a_code_is_read_puts_the_kiosk_back_in_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "RESULT_HOLD_S", 0.0)

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, reader = _daemon(r)
            r.ctx.fault = FaultKind.JAM
            r.ctx.out_of_service.set()
            # The code and the recovery complete in the same wait.
            reader.codes.put_nowait("not a code")
            r.validator._events.put_nowait(FaultCleared())
            serve = asyncio.create_task(d._serve(r.ctx, hw))
            for _ in range(200):
                if "code.refused" in await _kinds(r):
                    break
                await asyncio.sleep(0.01)
            kinds = await _kinds(r)
            assert "device.recovered" in kinds
            assert "code.refused" in kinds  # the code reached the journey, not the OOS refusal
            assert not r.ctx.out_of_service.is_set()
            serve.cancel()

    run(scenario)


def test_a_note_escrowed_in_the_idle_loop_is_returned_and_journaled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            serve = asyncio.create_task(d._serve(r.ctx, hw))
            r.validator.escrow_unasked(5000)
            await r.until(lambda: r.validator.state()["escrow"] is None)
            j = r.ctx.journal
            (ev,) = [e for e in await j.call(j.sync.events, None) if e["kind"] == "note.returned"]
            assert ev["data"] == {"value": 5000, "reason": "no_journey"}
            serve.cancel()

    run(scenario)


def test_a_failing_return_puts_the_kiosk_out_of_service_not_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            serve = asyncio.create_task(d._serve(r.ctx, hw))
            r.validator.fail["return_note"] = PortError("port gone")
            r.validator.escrow_unasked(5000)
            await r.until(r.ctx.out_of_service.is_set)
            assert "note.return_failed" in await _kinds(r)
            assert not serve.done()
            serve.cancel()

    run(scenario)


def test_a_stray_credit_in_the_idle_loop_is_owed_then_acknowledged(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            serve = asyncio.create_task(d._serve(r.ctx, hw))
            r.validator.credit_unasked(10000)
            await r.until(lambda: r.validator.acked_credits)
            j = r.ctx.journal
            (row,) = await j.call(j.sync.liabilities)
            assert (row["amount"], row["reason"]) == (10000, "stray_note")
            serve.cancel()

    run(scenario)


def test_admin_payout_refuses_amounts_off_the_wire_before_any_transaction(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, _, _ = _daemon(r)
            handlers = d._admin_handlers(r.ctx)
            with pytest.raises(ValueError, match="does not fit"):
                await handlers["payout"]({"cmd": "payout", "amount": 2**32})

            class Small:
                async def levels(self) -> dict[int, int]:
                    return {2000: 1}

            r.ctx.dispenser = Small()  # type: ignore[assignment]
            with pytest.raises(ValueError, match="holds 2000"):
                await handlers["payout"]({"cmd": "payout", "amount": 99999999})

            class Broken:
                async def levels(self) -> dict[int, int]:
                    raise OverflowError("int too big to convert")

            r.ctx.dispenser = Broken()  # type: ignore[assignment]
            with pytest.raises(ValueError, match="OverflowError"):
                await handlers["payout"]({"cmd": "payout", "amount": 5000})
            j = r.ctx.journal
            assert await j.call(j.sync.transactions) == []

    run(scenario)


def test_the_watchdog_is_fed_only_while_the_main_loop_comes_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from kiosk import daemon as daemon_module

    class Pings:
        def __init__(self) -> None:
            self.count = 0

        def watchdog(self) -> None:
            self.count += 1

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, _, _ = _daemon(r)
            pings = Pings()
            d.notifier = pings  # type: ignore[assignment]
            monkeypatch.setattr(daemon_module, "watchdog_interval_s", lambda: 0.01)
            task = asyncio.create_task(d._watchdog(r.ctx.journal))
            await r.until(lambda: pings.count >= 2)
            assert d.stalled() is None
            d.beat_at = time.monotonic() - daemon_module.STALL_S - 1  # the idle loop is stuck
            assert "has not come round" in (d.stalled() or "")
            await asyncio.sleep(0.05)
            stuck = pings.count
            await asyncio.sleep(0.1)
            assert pings.count == stuck  # no more pings: systemd restarts the daemon
            async with d.busy:  # a journey may hold the loop longer
                assert d.stalled() is None
                d.beat_at = time.monotonic() - daemon_module.JOURNEY_MAX_S - 1
                assert "a journey has held" in (d.stalled() or "")
            d.beat_at = time.monotonic()
            await r.until(lambda: pings.count > stuck)
            task.cancel()

    run(scenario)


def test_a_code_is_refused_while_the_fleet_holds_the_kiosk_out_of_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet's out_of_service hold refuses codes like the door or a lockout (it was missing:
    the panel was red, yet a scanned code started a journey)."""
    monkeypatch.setattr(daemon, "RESULT_HOLD_S", 0.0)

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            d.fleet_hold = "maintenance window"
            before = await r.ctx.journal.call(r.ctx.journal.sync.transactions)
            await d._code(r.ctx, hw, "EVP0123456789")
            assert await r.ctx.journal.call(r.ctx.journal.sync.transactions) == before
            assert r.panel.state is not None and r.panel.state.value == "refused"
            d.fleet_hold = None
            assert d.reasons(r.ctx) == []

    run(scenario)
