"""Approvals the fleet sees in time (issue 16): a transaction waiting for approval is in the
heartbeat (reference, provider, amount, since, expiry; never a code) and in /metrics, and the
wait opening pushes a heartbeat at once (:meth:`Fleet.nudge`) instead of with the next interval;
the nudge itself never waits on the fleet; while one waits the heartbeats come every few
seconds (the fleet's ``approve`` rides a heartbeat's reply), then back to the interval."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from kiosk import config
from kiosk.approvals import Approvals
from kiosk.fleet.heartbeat import SCHEMA_PATH
from kiosk.fleet.runner import Facts, Fleet
from kiosk.fleet.view import ApprovalView
from kiosk.journal import AsyncJournal
from kiosk.money import Money
from kiosk.providers.payby.wire import generate_key_pair
from kiosk.simkiosk import write_kiosk
from tests.fleet.test_daemon_fleet import Fleet as FleetServer


def test_an_approval_opening_nudges_without_waiting_and_is_seen_as_the_fleet_needs() -> None:
    async def go() -> None:
        approvals = Approvals(clock=lambda: 1_738_324_800.0)
        nudges: list[float] = []
        approvals.on_open = lambda: nudges.append(time.monotonic())
        approvals.open("KSK-0001-000042", 42, Money.of(25000, "AED"), provider="paysera",
                       timeout_s=120)  # fmt: skip
        assert len(nudges) == 1
        (view,) = approvals.views()
        assert view == ApprovalView(
            "KSK-0001-000042", "paysera", 25000, "AED", 1_738_324_800.0, 1_738_324_920.0
        )
        approvals.grant("KSK-0001-000042", "fleet")
        assert approvals.views() == ()

        def broken() -> None:
            raise RuntimeError("fleet gone")

        approvals.on_open = broken  # a failing nudge never stops the journey's wait
        assert not approvals.open("KSK-0001-000043", 43, Money.of(1, "AED")).done()

    asyncio.run(go())


@pytest.fixture(scope="module")
def payby_public_pem() -> bytes:
    return generate_key_pair()[1]


def test_the_nudge_pushes_a_heartbeat_with_the_approval_without_waiting_for_the_interval(
    tmp_path: Path, payby_public_pem: bytes
) -> None:
    server = FleetServer()
    schema = Draft202012Validator(
        json.loads(SCHEMA_PATH.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    files = write_kiosk(
        tmp_path / "k",
        payby_url="http://127.0.0.1:9",
        payby_public_pem=payby_public_pem,
        fleet_url=server.url,
        fleet_interval_s=600,  # the next heartbeat by the clock: in ten minutes
    )
    cfg = config.load(files.config)
    secrets = config.load_secrets(cfg.secrets_file)
    facts = Facts()

    async def go() -> None:
        nonlocal facts
        journal = await AsyncJournal.open(
            cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=secrets.journal_key
        )
        approvals = Approvals()
        fleet = Fleet(cfg, journal, lambda: facts, lambda cmd: asyncio.sleep(0, "ok"))
        fleet.approval_interval_s = 0.2  # while one waits: beats often (5 s in the daemon)
        try:
            await fleet.start()
            deadline = time.monotonic() + 10
            while not server.beats:  # the first round, at start
                assert time.monotonic() < deadline, "no first heartbeat"
                await asyncio.sleep(0.02)
            assert json.loads(server.beats[0][0])["approvals"] == []
            approvals.on_open = fleet.nudge  # as the daemon wires it
            started = time.monotonic()
            approvals.open("KSK-DEMO-000007", 7, Money.of(25000, "AED"), provider="paysera",
                           timeout_s=120)  # fmt: skip
            assert time.monotonic() - started < 0.05  # the nudge only sets a flag
            facts = Facts(approvals=approvals.views())
            while len(server.beats) < 2:
                assert time.monotonic() - started < 5, "the nudge pushed no heartbeat"
                await asyncio.sleep(0.02)
            doc = json.loads(server.beats[1][0])
            schema.validate(doc)
            (waiting,) = doc["approvals"]
            assert waiting["reference"] == "KSK-DEMO-000007" and waiting["provider"] == "paysera"
            assert waiting["amount"] == {"currency": "AED", "minor": 25000, "amount": "250.00"}
            assert waiting["waiting_since"] < waiting["expires_at"]
            while len(server.beats) < 4:
                assert time.monotonic() - started < 5, "no heartbeats while the approval waits"
                await asyncio.sleep(0.02)
            approvals.grant("KSK-DEMO-000007", "fleet")
            facts = Facts(approvals=approvals.views())
            await asyncio.sleep(0.3)
            settled = len(server.beats)
            await asyncio.sleep(0.6)  # none waits: back to the ten-minute interval
            assert len(server.beats) <= settled + 1
            metrics = fleet.metrics.exposition().decode()
            assert "kiosk_approvals_waiting 0.0" in metrics
            assert "kiosk_approval_oldest_wait_seconds 0.0" in metrics
        finally:
            await fleet.stop()
            await journal.close()
            server.close()

    asyncio.run(go())


def test_a_journey_waiting_for_approval_nudges_the_fleet_once_and_shows_its_wait(
    tmp_path: Path,
) -> None:
    from tests.flows.rig import rig, run
    from tests.test_limits import SERVICE_KEY, approving, waiting_cash_out

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            w = approving(r, timeout_s=30)
            nudges: list[object] = []
            r.ctx.approvals.on_open = lambda: nudges.append(r.ctx.approvals.views())
            before = time.time()
            task, tx = await waiting_cash_out(r, w, 25000)
            (view,) = r.ctx.approvals.views()
            assert nudges == [(view,)]  # once, when the wait opened, with the wait in it
            assert (view.reference, view.provider, view.amount, view.currency) == (
                tx.ref, "paysera", 25000, "AED")  # fmt: skip
            assert before <= view.since <= time.time()
            assert view.expires_at == pytest.approx(view.since + 30)
            r.press(SERVICE_KEY)
            assert (await task).state == "completed"
            assert r.ctx.approvals.views() == () and len(nudges) == 1

    run(scenario)
