"""A technician's visit: the door puts the kiosk in service mode (on MockFactory) until it is
closed and green is pressed; ``kiosk status`` says why the kiosk is out of service, in words;
cash collections count what the journal holds, with unique references that ``kiosk journal``
and ``kiosk receipt reprint`` find; a refill loads the recycler through the validator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from drivers.panel import PanelEvent, PanelState
from drivers.printer.base import PaperState
from drivers.validator.base import FaultKind
from kiosk import status as status_words
from kiosk.daemon import Daemon
from kiosk.simkiosk import receipts_of
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler
from tests.test_daemon_events import _daemon

DOOR, CONFIRM, CANCEL = 26, 5, 6


async def serving(r: Rig) -> tuple[Daemon, asyncio.Task[None], Any]:
    d, hw, reader = _daemon(r)
    task = asyncio.create_task(d._serve(r.ctx, hw))
    await r.until_state(PanelState.READY)
    return d, task, reader


async def status(d: Daemon, r: Rig) -> dict[str, Any]:
    return await d._admin_handlers(r.ctx)["status"]({"cmd": "status"})


def test_the_door_takes_the_kiosk_out_of_service_until_closed_and_confirmed(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, serve, reader = await serving(r)
            r.factory.pin(DOOR).drive_high()  # the door opens
            await r.until_state(PanelState.OUT_OF_SERVICE)
            doc = await status(d, r)
            assert doc["state"] == "out_of_service"
            assert doc["reasons"] == ["door open (service mode)"]
            assert doc["devices"]["door"] == "open"
            reader.codes.put_nowait("https://checkout.payby.com/pay?x=1")  # a customer tries
            await asyncio.sleep(0.2)
            j = r.ctx.journal
            assert await j.call(j.sync.transactions) == []  # refused: out of service
            r.press(CONFIRM)  # green with the door open: still out of service
            await asyncio.sleep(0.1)
            assert d.service == "door open"
            r.factory.pin(DOOR).drive_low()  # closed
            await r.until(lambda: d.service == "door closed")
            assert "press the green button" in (await status(d, r))["reasons"][0]
            assert r.panel.state == PanelState.OUT_OF_SERVICE
            r.press(CONFIRM)
            await r.until_state(PanelState.READY)
            assert d.service is None and (await status(d, r))["state"] == "ready"
            kinds = [e["kind"] for e in reversed(await j.call(j.sync.events, None))]
            kinds = [k for k in kinds if k.startswith(("door.", "service."))]
            assert kinds == ["door.open", "service.entered", "door.closed", "service.left"]
            serve.cancel()

    run(scenario)


def test_status_says_why_for_each_reason_in_words(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, serve, _ = await serving(r)
            assert (await status(d, r))["reasons"] == []
            r.printer.set_paper(PaperState.OUT)
            doc = await status(d, r)
            assert doc["reasons"] == ["printer: paper out"]
            assert doc["devices"]["printer"] == "not ready (paper out)"
            text = status_words.words(doc)
            assert "OUT OF SERVICE" in text and "because: printer: paper out" in text
            r.printer.set_paper(PaperState.OK)
            r.ctx.fault = FaultKind.JAM
            (why,) = (await status(d, r))["reasons"]
            assert why.startswith("a note is jammed in the bill validator: open it")
            r.ctx.fault = None
            d.validator_ok = False
            assert (await status(d, r))["reasons"] == ["the bill validator does not answer"]
            d.validator_ok = True
            for name in r.ctx.clients:
                for _ in range(3):
                    r.ctx.reachability.record(name, False)
            doc = await status(d, r)
            assert doc["reasons"][0].startswith("no payment provider answers (")
            assert r.panel.state == PanelState.READY  # a journey may still run offline
            r.ctx.fault = None
            serve.cancel()

    run(scenario)


def test_status_prints_money_not_minor_units(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            j = r.ctx.journal
            tx = await j.call(j.sync.begin, "payby_cashin", currency="AED")
            await j.call(j.sync.owe, tx.id, 15000, "ended_by_cancel")
            d, _, _ = _daemon(r)
            doc = await status(d, r)
            assert doc["liabilities"] == {"AED": "AED 150.00"}
            text = status_words.words(doc)
            assert "money owed to customers: AED 150.00" in text
            assert "15000" not in text and "{" not in text

    run(scenario)


def test_a_cash_collection_counts_the_journal_and_resets_the_counters(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            from kiosk import technician
            from kiosk.flows import cash

            j = r.ctx.journal
            tx = await j.call(j.sync.begin, "payby_cashin", currency="AED")
            for i, value in enumerate((10000, 5000, 5000, 1000)):
                eff = await j.call(j.sync.intent, tx.id, "stack", f"{tx.ref}-s{i}", amount=value)
                await j.call(j.sync.outcome, eff.id, "done", credit=value)
            first = await cash.collect(r.ctx, "ana")
            assert first["notes"] == {"1000": 1, "5000": 2, "10000": 1}
            assert first["total"] == "AED 210.00"
            assert first["lines"] == [
                "AED 10.00 x 1 = AED 10.00",
                "AED 50.00 x 2 = AED 100.00",
                "AED 100.00 x 1 = AED 100.00",
            ]
            second = await cash.collect(r.ctx, "ana")  # at once: nothing since, a new reference
            assert second["total"] == "AED 0.00" and second["ref"] != first["ref"]
            found = await j.call(j.sync.find, first["ref"])
            assert found is not None and (found.journey, found.state) == (
                "cash_collection",
                "completed",
            )
            again = await technician.reprint(r.ctx, first["ref"])  # kiosk receipt reprint REF
            assert [x["kind"] for x in again["receipts"]] == ["collection"]
            (path, *_) = receipts_of(r.ctx.config.receipts_dir, first["ref"])
            text = " ".join(path.read_text().split())
            assert "AED 50.00 x 2 = AED 100.00" in text and "Total: AED 210.00" in text

    run(scenario)


def test_a_refill_loads_the_recycler_until_green(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            from kiosk.flows import cash

            r.ctx.dispenser = Recycler({5000: 2})  # type: ignore[assignment]
            task = asyncio.create_task(cash.refill(r.ctx, "ana"))
            await r.until_state(PanelState.INSERT_NOTES)
            await r.insert(10000)
            await r.insert(5000)
            r.press(CONFIRM)
            reply = await task
            assert reply["loaded"] == "AED 150.00" and reply["ended"] == "complete"
            j = r.ctx.journal
            tx = await j.call(j.sync.find, reply["ref"])
            assert tx is not None and (tx.journey, tx.state, tx.credited, tx.owed) == (
                "cash_refill",
                "completed",
                15000,
                0,
            )

    run(scenario)


def test_too_many_refused_codes_lock_the_kiosk_and_a_restart_keeps_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiosk import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "RESULT_HOLD_S", 0.0)  # the panel's 3 s after each

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, serve, reader = await serving(r)
            j = r.ctx.journal
            for i in range(5):  # someone tries codes
                reader.codes.put_nowait(f"garbage-{i}")
                await r.until(lambda i=i: len(_refused(d)) > i or d.lockout.reason())
            await r.until(lambda: d.lockout.reason() is not None)
            (why,) = (await status(d, r))["reasons"]
            assert why.startswith("too many refused codes: no code is taken until")
            await r.until_state(PanelState.OUT_OF_SERVICE)
            kinds = [e["kind"] for e in await j.call(j.sync.events, None)]
            assert "codes.locked" in kinds and kinds.count("code.refused") == 5
            serve.cancel()
            # a new daemon on the same journal reads the lock back
            again, _, _ = _daemon(r)
            assert again.lockout.reason() is None
            await again._restore_lockout(j)
            assert again.lockout.reason() is not None

    run(scenario)


def _refused(d: Daemon) -> list[float]:
    return list(d.lockout._refused)


def test_a_door_opened_during_a_journey_is_not_lost(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            r.factory.pin(DOOR).drive_high()  # opened while a journey runs…
            assert await r.panel.next_event() == PanelEvent.DOOR_OPEN  # …which took the event
            serve = asyncio.create_task(d._serve(r.ctx, hw))  # the idle loop comes round
            await r.until(lambda: d.service == "door open")
            j = r.ctx.journal
            (ev,) = [e for e in await j.call(j.sync.events, None) if e["kind"] == "door.open"]
            assert ev["data"] == {"how": "opened during a journey"}
            serve.cancel()

    run(scenario)
