"""EsspValidator against the simulator over a real pty: escrow, credit, faults, power, payouts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from drivers.errors import CommandRefused, DeviceFault
from drivers.essp.client import EsspValidator
from drivers.essp.codes import Command, Event, RejectCode, Route
from drivers.essp.sim import EsspSimulator, run_simulator, serve
from drivers.pty import DevicePort
from drivers.validator.base import (
    BillValidator,
    Fault,
    FaultCleared,
    FaultKind,
    Note,
    NoteDispenser,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PayoutResult,
    PowerUpReport,
    ValidatorEvent,
)

T = TypeVar("T")
TEN = Note(channel=2, value=1000, currency="EUR")
TWENTY = Note(channel=3, value=2000, currency="EUR")

Body = Callable[[EsspSimulator, EsspValidator, DevicePort], Coroutine[Any, Any, T]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def client(port: DevicePort, **kw: Any) -> EsspValidator:
    options: dict[str, Any] = {"poll_interval": 0.2, "reply_timeout": 0.1, "tries": 3}
    return EsspValidator(str(port.path), currency="EUR", **(options | kw))


async def rig(body: Body[T], sim: EsspSimulator | None = None, **kw: Any) -> T:
    sim = sim or EsspSimulator()
    port = DevicePort()
    task = asyncio.create_task(serve(sim, port))
    v = client(port, **kw)
    try:
        return await body(sim, v, port)
    finally:
        await v.close()
        task.cancel()
        port.close()


async def event(v: EsspValidator, timeout: float = 2.0) -> ValidatorEvent:
    return await asyncio.wait_for(v.next_event(), timeout)


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.002)


async def escrowed(sim: EsspSimulator, v: EsspValidator, value: int) -> Note:
    assert sim.insert(value)
    got = await event(v)
    assert isinstance(got, NoteEscrowed)
    return got.note


def test_open_line_settings_and_identity() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        assert await v.open() == PowerUpReport()
        assert port.line() == (9600, 8, False, 2)  # 8N2 (a pty cannot show parity)
        assert v.serial_number == 0x001C962C
        assert v.protocol == 8 and v.is_payout
        assert v.channels[2] == TEN
        state = sim.state()
        assert state.encrypted and state.payout_enabled and not state.enabled
        assert Command.SYNC in sim.received and Command.REQUEST_KEY_EXCHANGE in sim.received
        validator: BillValidator = v
        dispenser: NoteDispenser = v
        assert validator is dispenser

    run(rig(body))


def test_protocol_falls_back() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> int:
        await v.open()
        return v.protocol

    assert run(rig(body, EsspSimulator(max_protocol=6))) == 6


def test_escrow_then_stack_acknowledges_only_after_on_credit() -> None:
    order: list[object] = []

    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> Note:
        await v.open()
        await v.enable()
        assert sim.state().enabled
        note = await escrowed(sim, v, 1000)
        assert note == TEN
        await until(lambda: sim.received.count(Command.HOLD) >= 2)  # held, not polled
        assert sim.state().escrow == TEN
        sim.on_command = order.append

        async def on_credit(credited: Note) -> None:
            order.append("on_credit")
            assert credited == TEN
            await asyncio.sleep(0.5)  # the journal write; the unit keeps repeating the credit
            assert any(e.code == Event.CREDIT for e in sim.state().unacked)
            order.append("committed")

        stacked = await v.stack(on_credit)
        await until(lambda: sim.state().note_phase is None)
        assert sim.state().levels[1000] == 1  # recycled into the payout store
        return stacked

    assert run(rig(body)) == TEN
    first_ack = order.index(Command.EVENT_ACK)
    assert order.index("on_credit") < order.index("committed") < first_ack
    assert order.count(Command.EVENT_ACK) == 1
    during = order[order.index("on_credit") : order.index("committed")]
    assert during.count(Command.POLL_WITH_ACK) >= 1  # polling went on while on_credit ran


def test_escrow_then_return() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        await v.enable()
        note = await escrowed(sim, v, 2000)
        assert await v.return_note() == note == TWENTY
        await until(lambda: sim.state().note_phase is None)
        await asyncio.sleep(0.05)
        assert v._events.empty()  # a host-commanded return emits no event
        assert sim.state().last_reject == RejectCode.REJECT_BY_HOST
        assert sim.state().cashbox == {} and sim.state().levels[2000] == 0
        with pytest.raises(CommandRefused):
            await v.return_note()
        with pytest.raises(CommandRefused):
            await v.stack(lambda n: asyncio.sleep(0))

    run(rig(body))


def test_fake_and_inhibited_notes_are_rejected_with_the_reason() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> list[ValidatorEvent]:
        await v.open()
        await v.enable(accept=frozenset({1000}))
        assert sim.insert_fake()
        first = await event(v)
        await until(lambda: sim.state().note_phase is None)
        assert sim.insert(500)  # channel 1 is not accepted
        second = await event(v)
        assert await v.last_reject_code() == RejectCode.DISABLED_BY_HOST
        return [first, second]

    assert run(rig(body)) == [NoteRejected("average_fail"), NoteRejected("disabled_by_host")]


def test_escrow_timeout_returns_the_note() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> ValidatorEvent:
        await v.open()
        await v.enable()
        await escrowed(sim, v, 1000)
        return await event(v)

    sim = EsspSimulator(escrow_timeout=0.05)  # shorter than the poll interval: HOLD comes late
    assert run(rig(body, sim, poll_interval=0.2)) == NoteReturned(TEN)


@pytest.mark.parametrize(
    ("script", "fault"),
    [
        ("jam", Fault(FaultKind.JAM, "unsafe jam")),
        ("cashbox_full", Fault(FaultKind.CASHBOX_FULL, "stacker full")),
        ("note_path_open", Fault(FaultKind.FAILURE, "note path open")),
    ],
)
def test_level_faults_and_clearing(script: str, fault: Fault) -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        getattr(sim, script)()
        assert await event(v) == fault
        await asyncio.sleep(0.1)
        assert v._events.empty()  # reported once, not on every poll
        sim.clear_faults()
        assert await event(v) == FaultCleared()

    run(rig(body))


def test_cashbox_removed_then_replaced() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        sim.cashbox_removed()
        assert await event(v) == Fault(FaultKind.CASHBOX_REMOVED, "cashbox removed")
        sim.cashbox_replaced()
        assert await event(v) == FaultCleared()

    run(rig(body))


def test_fraud_while_stacking_fails_the_stack() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        sim.fraud(2)
        got = await event(v)
        assert isinstance(got, Fault) and got.kind == FaultKind.FRAUD
        assert await event(v) == FaultCleared()
        await v.enable()
        await escrowed(sim, v, 1000)
        sim.jam()
        credited: list[Note] = []

        async def on_credit(note: Note) -> None:
            credited.append(note)

        with pytest.raises(DeviceFault) as info:
            await v.stack(on_credit)
        assert info.value.kind == "jam" and credited == []

    run(rig(body))


def test_power_cut_in_escrow_reports_the_note_given_back() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> PowerUpReport:
        await v.open()
        await v.enable()
        await escrowed(sim, v, 2000)
        sim.power_cut()
        got = await event(v)
        assert isinstance(got, Fault) and got.kind == FaultKind.DISCONNECTED
        sim.power_on()
        await v.close()
        report = await v.open()
        # NOTE CLEARED FROM FRONT is not in GA138's "Poll with Ack" column: given once
        assert Event.CLEARED_FROM_FRONT not in [e.code for e in sim.state().unacked]
        await v.ack_power_up()
        assert sim.state().unacked == ()
        return report

    assert run(rig(body)) == PowerUpReport(in_escrow=TWENTY)


def test_power_cut_while_stacking_reports_the_note_stacked() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> PowerUpReport:
        await v.open()
        await v.enable()
        await escrowed(sim, v, 2000)
        credited: list[Note] = []

        async def on_credit(note: Note) -> None:
            credited.append(note)

        stacking = asyncio.create_task(v.stack(on_credit))
        await until(lambda: sim.state().note_phase == "stacking")
        sim.power_cut()
        with pytest.raises(DeviceFault) as info:
            await stacking
        assert info.value.kind == "disconnected" and credited == []
        sim.power_on()
        await v.close()
        report = await v.open()
        assert sim.state().cashbox == {2000: 1}
        await v.ack_power_up()
        assert sim.state().unacked == ()
        return report

    assert run(rig(body)) == PowerUpReport(stacked=TWENTY)


def test_host_crash_inside_on_credit_next_open_reports_stacked() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> PowerUpReport:
        await v.open()
        await v.enable()
        await escrowed(sim, v, 1000)

        async def crash(note: Note) -> None:
            raise RuntimeError("host died before the journal commit")

        with pytest.raises(RuntimeError):
            await v.stack(crash)
        await asyncio.sleep(0.05)
        assert Command.EVENT_ACK not in sim.received
        assert [e.code for e in sim.state().unacked] == [Event.CREDIT]
        await v.close()
        fresh = client(port)  # a new process on the same unit, which never lost power
        try:
            report = await fresh.open()
            await asyncio.sleep(0.1)  # polling: the unit repeats the credit, nobody acks it
            assert [e.code for e in sim.state().unacked] == [Event.CREDIT]
            assert Command.EVENT_ACK not in sim.received
            await fresh.ack_power_up()  # the kiosk's recovery committed the report
            assert sim.state().unacked == ()
            assert sim.received.count(Command.EVENT_ACK) == 1
            await fresh.ack_power_up()  # nothing left: no command
            assert sim.received.count(Command.EVENT_ACK) == 1
            await fresh.enable()
            await until(lambda: sim.state().note_phase is None)  # the old note reaches the store
            assert await escrowed(sim, fresh, 2000) == TWENTY  # notes move again
            return report
        finally:
            await fresh.close()

    assert run(rig(body)) == PowerUpReport(stacked=TEN)


def test_encrypted_payout_complete_and_levels() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> PayoutResult:
        await v.open()
        assert await v.levels() == {500: 0, 1000: 3, 2000: 2, 5000: 0, 10000: 0, 20000: 0, 50000: 0}
        result = await v.payout(5000)
        assert (await v.levels())[1000] == 2 and (await v.levels())[2000] == 0
        return result

    sim = EsspSimulator(levels={1000: 3, 2000: 2})
    assert run(rig(body, sim)) == PayoutResult(5000, 5000, "")


def test_incomplete_payout_reports_exactly_what_was_paid() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> PayoutResult:
        await v.open()
        sim.payout_stop_after(1)
        result = await v.payout(5000)
        assert sim.received.count(Command.PAYOUT_AMOUNT) == 1  # never retried
        return result

    result = run(rig(body, EsspSimulator(levels={1000: 3, 2000: 2})))
    assert result == PayoutResult(5000, 2000, "incomplete")
    assert not result.complete


def test_can_pay() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> list[bool]:
        await v.open()
        out = [await v.can_pay(a) for a in (2000, 1000, 5000, 0)]
        assert sim.state().levels[2000] == 1 and not sim.state().paying_out
        return out

    assert run(rig(body, EsspSimulator(levels={2000: 1}))) == [True, False, False, False]


def test_smart_empty_and_route() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> dict[int, int]:
        await v.open()
        await v.set_route(1000, Route.CASHBOX)
        assert sim.state().routes[1000] is Route.CASHBOX
        moved = await v.smart_empty()
        assert sim.state().cashbox == {1000: 2, 2000: 1}
        assert set((await v.levels()).values()) == {0}
        return moved

    assert run(rig(body, EsspSimulator(levels={1000: 2, 2000: 1}))) == {1000: 2, 2000: 1}


def test_halt_without_payout_is_refused() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        with pytest.raises(CommandRefused):
            await v.halt()

    run(rig(body))


def test_dropped_reply_is_resent_not_executed_twice() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        sim.drop_replies(1, command=Command.PAYOUT_AMOUNT)
        result = await v.payout(3000)
        assert result == PayoutResult(3000, 3000, "")
        assert sim.received.count(Command.PAYOUT_AMOUNT) == 1
        assert sim.retransmissions == 1
        frames = list(sim.frames)
        repeats = [a for a, b in itertools.pairwise(frames) if a == b]
        assert len(repeats) == 1  # the same flag, the same eCOUNT: byte for byte
        assert sim.state().levels[1000] == 0 and sim.state().levels[2000] == 1

    run(rig(body, EsspSimulator(levels={1000: 1, 2000: 2})))


def test_unencrypted_link_validator_only() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        assert not sim.state().encrypted
        assert (await v.levels())[1000] == 1
        with pytest.raises(CommandRefused):
            await v.payout(1000)
        await v.enable()
        assert await escrowed(sim, v, 1000) == TEN
        assert await v.stack(lambda n: asyncio.sleep(0)) == TEN

    sim = EsspSimulator(require_encryption=False, levels={1000: 1})
    run(rig(body, sim, encrypted=False))


def test_unit_requiring_encryption_refuses_a_plain_host() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        with pytest.raises(CommandRefused, match="KEY NOT SET"):
            await v.open()

    run(rig(body, encrypted=False))


def test_unit_gone_at_open_is_disconnected() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        sim.power_cut()
        with pytest.raises(DeviceFault) as info:
            await v.open()
        assert info.value.kind == "disconnected"

    run(rig(body))


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        EsspValidator("/dev/null", currency="EUR", poll_interval=1.5)
    with pytest.raises(ValueError):
        EsspValidator("/dev/null", currency="EUR", protocol_version=5)


def test_run_simulator_on_a_link_path(tmp_path: Path) -> None:
    async def main() -> PowerUpReport:
        link = tmp_path / "dev" / "kiosk-validator"
        sim = EsspSimulator(currency="AED", channels={1: 500, 2: 1000})
        task = asyncio.create_task(run_simulator(link, sim=sim))
        await until(link.exists)
        v = EsspValidator(str(link), currency="AED", poll_interval=0.2, reply_timeout=0.1)
        try:
            report = await v.open()
            assert v.channels == {1: Note(1, 500, "AED"), 2: Note(2, 1000, "AED")}
        finally:
            await v.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert not link.exists()
        return report

    assert run(main()) == PowerUpReport()


def test_logs_transitions_not_polls(caplog: pytest.LogCaptureFixture) -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        caplog.clear()
        await asyncio.sleep(0.2)  # about ten polls
        assert caplog.records == []
        sim.jam()
        await event(v)
        await asyncio.sleep(0.1)
        assert [r.getMessage() for r in caplog.records] == ["essp: unsafe jam"]

    with caplog.at_level(logging.DEBUG, logger="drivers.essp"):
        run(rig(body))
