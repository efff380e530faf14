"""Tamper (issue 16): a fraud attempt and a cashbox removed outside service mode latch the kiosk
out of service until a technician clears it (green in service mode, or ``kiosk tamper clear``),
journaled, in ``kiosk status``, the heartbeat and the metrics, and kept across a restart; a
line that sends garbage and a device lost mid-journey put their device out of service and have
it opened again; a door opened during a journey is journaled at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from drivers.errors import PortError
from drivers.panel import PanelState
from drivers.validator.base import FaultKind
from kiosk import daemon, devices
from kiosk import status as status_words
from kiosk.daemon import Daemon
from kiosk.devices import GarbleWatch
from kiosk.errors import DeviceLost
from kiosk.fleet import heartbeat
from kiosk.fleet.metrics import Metrics
from kiosk.fleet.view import TamperView
from kiosk.tamper import Tamper
from tests.fleet.test_heartbeat import make_view
from tests.fleet.test_metrics import by
from tests.fleet.test_metrics import samples as metric_samples
from tests.flows.rig import Rig, rig, run
from tests.test_daemon_events import _daemon

DOOR, CONFIRM = 26, 5


def _tampered(r: Rig) -> tuple[Daemon, Any, Any]:
    d, hw, reader = _daemon(r)
    d.tamper = Tamper(r.ctx.journal)
    d.tamper.service_mode = lambda: d.service is not None
    r.ctx.tamper = d.tamper
    return d, hw, reader


async def _events(r: Rig, prefix: str) -> list[dict[str, Any]]:
    j = r.ctx.journal
    return [
        e
        for e in reversed(await j.call(j.sync.events, None, limit=1000))
        if e["kind"].startswith(prefix)
    ]


async def _status(d: Daemon, r: Rig) -> dict[str, Any]:
    return await d._admin_handlers(r.ctx)["status"]({"cmd": "status"})


def test_fraud_stays_latched_after_the_validator_recovers_until_green_in_service_mode(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, reader = _tampered(r)
            serve = asyncio.create_task(d._serve(r.ctx, hw))
            await r.until_state(PanelState.READY)
            r.validator.fault(FaultKind.FRAUD, "light pattern")
            await r.until_state(PanelState.OUT_OF_SERVICE)
            r.validator.clear_fault()
            await r.until(lambda: not r.ctx.out_of_service.is_set())  # the device recovered
            await asyncio.sleep(0.05)
            assert r.panel.state == PanelState.OUT_OF_SERVICE  # ... the latch holds
            doc = await _status(d, r)
            assert doc["state"] == "out_of_service"
            assert doc["reasons"][0].startswith("tamper: the bill validator detected a fraud")
            assert [t["kind"] for t in doc["tamper"]] == ["fraud"]
            assert "TAMPER: fraud since" in status_words.words(doc)
            assert d.facts(r.ctx).tamper[0].kind == "fraud"
            reader.codes.put_nowait("https://checkout.payby.com/pay?x=1")  # a customer tries
            await asyncio.sleep(0.2)
            j = r.ctx.journal
            assert await j.call(j.sync.transactions) == []  # refused
            (latched,) = await _events(r, "tamper.")
            assert latched["kind"] == "tamper.latched"
            assert (
                latched["data"]["kind"] == "fraud" and latched["data"]["detail"] == "light pattern"
            )
            # The technician: door open, inspect, door closed, green.
            r.factory.pin(DOOR).drive_high()
            await r.until(lambda: d.service == "door open")
            r.factory.pin(DOOR).drive_low()
            await r.until(lambda: d.service == "door closed")
            r.press(CONFIRM)
            await r.until_state(PanelState.READY)
            assert d.tamper is not None and d.tamper.latched == {}
            cleared = (await _events(r, "tamper."))[-1]
            assert cleared["kind"] == "tamper.cleared"
            assert cleared["data"]["kinds"] == ["fraud"] and cleared["data"]["by"] == "panel"
            serve.cancel()

    run(scenario)


def test_cashbox_removed_latches_outside_service_mode_only_and_a_restart_keeps_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _tampered(r)
            assert d.tamper is not None
            serve = asyncio.create_task(d._serve(r.ctx, hw))
            d.service = "door open"  # a collection: the technician opened the door first
            r.validator.fault(FaultKind.CASHBOX_REMOVED)
            await r.until(lambda: r.ctx.fault is FaultKind.CASHBOX_REMOVED)
            r.validator.clear_fault()
            await r.until(lambda: r.ctx.fault is None)
            assert d.tamper.latched == {}
            d.service = None
            r.validator.fault(FaultKind.CASHBOX_REMOVED)  # nobody opened the door
            await r.until(lambda: d.tamper is not None and "cashbox_removed" in d.tamper.latched)
            r.validator.clear_fault()  # the cashbox is back
            await r.until(lambda: r.ctx.fault is None)
            assert any(w.startswith("tamper: the cashbox was removed") for w in d.reasons(r.ctx))
            serve.cancel()
            # A restart reads the latch back from the journal.
            again = Tamper(r.ctx.journal)
            await again.restore()
            assert list(again.latched) == ["cashbox_removed"]
            # Cleared remotely by a named technician; a restart then holds nothing.
            reply = await d._admin_handlers(r.ctx)["tamper_clear"](
                {"cmd": "tamper_clear", "technician": "ana"}
            )
            assert reply["cleared"] == ["cashbox_removed"] and reply["reasons"] == []
            cleared = (await _events(r, "tamper."))[-1]
            assert cleared["data"]["by"] == "technician ana"
            after = Tamper(r.ctx.journal)
            await after.restore()
            assert after.latched == {}

    run(scenario)


def test_fraud_during_a_journey_latches_with_the_transaction(tmp_path: Path) -> None:
    from tests.flows.test_payby_cashin import start

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            tamper = Tamper(r.ctx.journal)
            r.ctx.tamper = tamper
            task = await start(r, r.order("150.00")["tokenUrl"])
            await r.until_state(PanelState.INSERT_NOTES)
            r.validator.fault(FaultKind.FRAUD)
            tx = await task
            assert tx.closed and tx.owed == 0  # no note was in: nothing owed
            (latched,) = await _events(r, "tamper.")
            assert latched["tx_id"] == tx.id and list(tamper.latched) == ["fraud"]

    run(scenario)


def test_the_heartbeat_and_the_metrics_carry_the_latches() -> None:
    schema = json.loads(heartbeat.SCHEMA_PATH.read_text())
    check = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    view = make_view(
        state="out_of_service",
        reasons=("tamper: the bill validator detected a fraud attempt at ...",),
        tamper=(TamperView("fraud", "2026-12-03T15:00:00.000Z", "light pattern"),),
    )
    doc = heartbeat.build(view, 1, 0)
    check.validate(doc)
    assert doc["tamper"] == [
        {"kind": "fraud", "since": "2026-12-03T15:00:00.000Z", "detail": "light pattern"}
    ]
    assert heartbeat.build(make_view(), 1, 0)["tamper"] == []
    bad = dict(doc, tamper=[{"kind": "door", "since": None, "detail": ""}])
    assert not check.is_valid(bad)
    metrics = Metrics("KSK-0001", "rpi-1", "0.1.0")
    metrics.update(view)
    found = metric_samples(metrics)
    assert by(found, "kiosk_tamper", "kind") == {"fraud": 1}
    assert by(found, "kiosk_out_of_service", "reason") == {"tamper": 1}
    metrics.update(make_view())
    assert by(metric_samples(metrics), "kiosk_tamper", "kind") == {}


# -- a line that sends garbage ------------------------------------------------------------------


def test_a_single_bad_frame_is_no_news_a_burst_is_garbage() -> None:
    now = [0.0]
    watch = GarbleWatch(limit=5, window_s=10.0, clock=lambda: now[0])
    for count in (0, 1, 1, 2, 3):  # a bad frame now and then: retried by the driver
        now[0] += 1.0
        assert watch.check(count) is None
    now[0] += 20.0
    assert watch.check(5) is None  # old ones fell out of the window
    now[0] += 1.0
    assert watch.check(11) == 6  # six in a second
    now[0] += 1.0
    assert watch.check(0) is None  # the driver opened again: its count starts afresh
    assert watch.check(3) is None


class GarbledValidator:
    """A validator whose driver counts the bad frames it dropped (as the eSSP and ID-003 ones)."""

    name = "garbled"

    def __init__(self) -> None:
        self.bad_frames = 0
        self.opened = self.closed = 0

    async def open(self) -> Any:
        from drivers.validator.base import PowerUpReport

        self.opened += 1
        self.bad_frames = 0
        return PowerUpReport()

    async def close(self) -> None:
        self.closed += 1

    async def next_event(self) -> Any:
        await asyncio.Event().wait()


def test_a_validator_sending_garbage_goes_out_of_service_journaled_and_is_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "WATCH_S", 0.02)

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            raw = GarbledValidator()
            hw.validator = devices.validator(raw)  # type: ignore[arg-type]
            hw.printer, hw.dispenser = r.ctx.printer, None
            watch = asyncio.create_task(d._watch(r.ctx, hw))
            raw.bad_frames = 1  # one bad frame: retried, nothing happens
            await asyncio.sleep(0.1)
            assert d.validator_ok and not r.ctx.out_of_service.is_set()
            raw.bad_frames = 40  # a burst: garbage
            await r.until(lambda: not d.validator_ok)
            assert raw.closed == 1 and r.ctx.out_of_service.is_set()
            (ev,) = await _events(r, "device.garbled")
            assert ev["data"]["device"] == "validator" and ev["data"]["bad_frames"] == 39
            assert d.reasons(r.ctx)[0].startswith("the bill validator does not answer: its line")
            assert d.facts(r.ctx).devices[0].status.startswith("does not answer: its line")
            await d._idle_tick(r.ctx, hw)  # opened again, like a missing device
            assert raw.opened == 1 and d.validator_ok and not r.ctx.out_of_service.is_set()
            assert "validator" not in d._garbled
            watch.cancel()

    run(scenario)


# -- a device lost mid-journey, a door opened during one ----------------------------------------


def test_a_device_lost_mid_journey_is_journaled_closed_and_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "RESULT_HOLD_S", 0.0)

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            closed: list[str] = []

            async def lost(ctx: Any, text: str) -> None:
                raise DeviceLost("validator", "/dev/ttyUSB0: lost")

            async def close() -> None:
                closed.append("validator")

            monkeypatch.setattr(d, "_journey", lost)
            monkeypatch.setattr(r.validator, "close", close)
            await d._code(r.ctx, hw, "a code")
            assert closed == ["validator"] and not d.validator_ok
            assert r.ctx.out_of_service.is_set()
            (ev,) = await _events(r, "device.error")
            assert ev["data"] == {"call": "journey", "error": "validator: /dev/ttyUSB0: lost"}

    run(scenario)


def test_a_vanished_port_mid_stack_ends_the_journey_owed_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    from tests.flows.test_payby_cashin import start

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            task = await start(r, r.order("150.00")["tokenUrl"])
            await r.until_state(PanelState.INSERT_NOTES)
            await r.insert(5000)

            async def vanished(on_credit: Any) -> Any:
                raise PortError("/dev/ttyUSB0: the port vanished")

            r.validator.stack = vanished  # type: ignore[method-assign]
            r.validator.insert(10000)
            tx = await task
            assert (tx.state, tx.owed) == ("owed", 15000)  # the credited note and the unknown one
            j = r.ctx.journal
            unknown = await j.call(j.sync.effects, tx.id, kind="stack", status="unknown")
            assert [e.outcome["error"] for e in unknown] == ["/dev/ttyUSB0: the port vanished"]

    run(scenario)


def test_a_door_opened_during_a_journey_is_journaled_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "RESULT_HOLD_S", 0.0)
    monkeypatch.setattr(daemon, "WATCH_S", 0.02)

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            seen: list[str | None] = []

            async def journey(ctx: Any, text: str) -> None:
                r.factory.pin(DOOR).drive_high()  # opened while the customer is there
                await r.until(lambda: d.service == "door open")
                seen.append(d.facts(r.ctx).reasons[0])
                r.factory.pin(DOOR).drive_low()  # and closed again before the journey ends

            monkeypatch.setattr(d, "_journey", journey)
            await d._code(r.ctx, hw, "a code")
            assert seen == ["door open (service mode)"]  # the fleet saw it during the journey
            kinds = [e["kind"] for e in await _events(r, "") if e["kind"][:5] in ("door.", "servi")]
            assert kinds == ["door.open", "service.entered", "door.closed"]
            (opened,) = await _events(r, "door.open")
            assert opened["data"] == {"how": "opened during a journey"}
            assert d.service == "door closed"  # green ends it, as after any opening

    run(scenario)


class UnpluggedCamera:
    """A code reader whose camera goes away under it, then comes back when opened again."""

    name = "camera"

    def __init__(self) -> None:
        self.opened = self.closed = 0
        self.codes: asyncio.Queue[str] = asyncio.Queue()

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1

    async def next_code(self) -> str:
        if not self.opened:
            raise PortError("/dev/video0: the camera is gone")
        return await self.codes.get()


def test_a_reader_that_vanishes_in_the_idle_loop_is_out_of_service_then_reopened(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d, hw, _ = _daemon(r)
            camera = UnpluggedCamera()
            hw.reader = devices.reader(camera)  # type: ignore[arg-type]
            hw.printer = r.ctx.printer
            serve = asyncio.create_task(d._serve(r.ctx, hw))
            await r.until(lambda: not d.reader_ok)  # the daemon lives on, out of service
            assert camera.closed == 1 and not serve.done()
            (ev,) = await _events(r, "device.error")
            assert ev["data"] == {
                "call": "code wait",
                "error": "code reader: /dev/video0: the camera is gone",
            }
            assert "the code reader (camera or scanner) does not answer" in d.reasons(r.ctx)
            await d._idle_tick(r.ctx, hw)  # opened again (every REOPEN_S in the loop)
            assert camera.opened == 1 and d.reader_ok
            serve.cancel()

    run(scenario)
