"""The ID-003 driver against the simulated acceptor over a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from drivers.errors import CommandRefused, DeviceFault, FrameError, PortError
from drivers.id003.client import Id003Validator
from drivers.id003.codes import EUR_ESCROW, Command, FailureCode, RejectReason, Status
from drivers.id003.frames import Frame
from drivers.id003.sim import Id003Simulator, serve
from drivers.pty import DevicePort
from drivers.serialport import ID003_LINE
from drivers.validator.base import (
    Fault,
    FaultCleared,
    FaultKind,
    Note,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PowerUpReport,
    ValidatorEvent,
)

T = TypeVar("T")
FAST: dict[str, Any] = {
    "poll_interval": 0.01,
    "reply_timeout": 0.15,
    "retries": 1,
    "init_timeout": 2.0,
    "stack_timeout": 2.0,
}
TEN = Note(channel=0x63, value=1000, currency="EUR")
UNKNOWN = Note(channel=0, value=0, currency="EUR")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def device(**options: Any) -> AsyncIterator[tuple[Id003Simulator, DevicePort]]:
    sim = Id003Simulator(**options)
    port = DevicePort()
    port.start()
    task = asyncio.create_task(serve(sim, port))
    try:
        yield sim, port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        port.close()


@contextlib.asynccontextmanager
async def opened(
    port: DevicePort, **options: Any
) -> AsyncIterator[tuple[Id003Validator, PowerUpReport]]:
    v = Id003Validator(str(port.path), currency="EUR", **{**FAST, **options})
    report = await v.open()
    try:
        yield v, report
    finally:
        await v.close()


async def event(v: Id003Validator, timeout: float = 2.0) -> ValidatorEvent:
    return await asyncio.wait_for(v.next_event(), timeout)


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def status_is(sim: Id003Simulator, status: Status) -> Callable[[], bool]:
    return lambda: sim.state().status is status


def sent(sim: Id003Simulator, cmd: int) -> list[int]:
    """Indexes in the simulator's log of the frames with ``cmd`` the host sent."""
    return [i for i, f in enumerate(sim.received) if f.cmd == cmd]


async def escrowed(v: Id003Validator, sim: Id003Simulator, value: int) -> Note:
    await until(status_is(sim, Status.IDLING))
    assert sim.insert(value)
    got = await event(v)
    assert isinstance(got, NoteEscrowed), got
    return got.note


def test_open_initialises_with_the_line_settings() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, report):
            assert report == PowerUpReport()
            assert port.line() == (9600, 8, False, 1)  # a pty drops PARENB …
            assert v.link is not None and v.link.line == ID003_LINE  # … 8E1 was asked
            assert str(v.link.line) == "9600 8E1"
            assert sim.state().status is Status.DISABLE and sim.state().inhibited
            cmds = [f.cmd for f in sim.received if f.cmd != Command.STATUS_REQUEST]
            assert cmds == [
                Command.RESET,
                Command.CURRENCY_ASSIGN,
                Command.SET_DENOMINATIONS,
                Command.SET_SECURITY,
                Command.SET_COMMUNICATION_MODE,
                Command.SET_INHIBIT,
            ]
            assert Frame(Command.SET_COMMUNICATION_MODE, b"\x00") in sim.received
            assert v.escrow_table == EUR_ESCROW
            assert await v.version() == sim.version
            await v.enable()
            assert sim.state().denominations == b"\x01\x00"  # only 0x61 (no EUR note) off
            await until(status_is(sim, Status.IDLING))
            await v.disable()
            await until(status_is(sim, Status.DISABLE))

    run(main())


def test_stack_awaits_on_credit_before_the_ack_of_vend_valid() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            note = await escrowed(v, sim, 1000)
            assert note == TEN
            seen: list[tuple[int, bool, dict[int, int], list[int]]] = []

            async def on_credit(credited: Note) -> None:
                assert credited == TEN
                await asyncio.sleep(0.05)  # a slow journal commit: the device must wait
                state = sim.state()
                seen.append(
                    (len(sim.received), state.pending_ack, dict(state.cashbox), sent(sim, 0x50))
                )

            assert await v.stack(on_credit) == TEN
            (mark, pending, cashbox, acks_then), acks = seen[0], sent(sim, Command.ACK)
            assert pending and cashbox == {1000: 1} and acks_then == []
            assert sim.state().vend_valid_reports >= 1
            stack_at = sent(sim, Command.STACK_1)[0]
            assert acks and stack_at < mark <= acks[0]  # STACK-1, on_credit, then ACK
            await until(status_is(sim, Status.IDLING))
            assert sim.cashbox() == {1000: 1}
            assert v._events.empty()  # no event left behind

    run(main())


def test_return_gives_the_note_back_without_an_event() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            await escrowed(v, sim, 1000)
            assert await v.return_note() == TEN
            await until(status_is(sim, Status.IDLING))
            assert sim.cashbox() == {} and sim.state().escrow is None
            assert Frame(Command.RETURN) in sim.received
            await asyncio.sleep(0.05)
            assert v._events.empty()
            with pytest.raises(CommandRefused):
                await v.return_note()
            with pytest.raises(CommandRefused):
                await v.stack(credit_nothing)

    run(main())


def test_rejection_with_its_reason() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            await until(status_is(sim, Status.IDLING))
            sim.insert_fake(RejectReason.PHOTO_PATTERN)
            assert await event(v) == NoteRejected("photo_pattern")

    run(main())


def test_an_inhibited_denomination_is_refused_by_the_device() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable(frozenset({500}))
            assert sim.state().denominations == b"\xfd\x00"  # all but 0x62 (EUR 5)
            await until(status_is(sim, Status.IDLING))
            assert sim.insert(1000)
            assert await event(v) == NoteRejected("inhibit")
            note = await escrowed(v, sim, 500)
            assert note == Note(channel=0x62, value=500, currency="EUR")

    run(main())


FAULTS = [
    ("stacker_full", Id003Simulator.stacker_full, Id003Simulator.empty_cashbox, "cashbox_full"),
    ("stacker_open", Id003Simulator.stacker_open, Id003Simulator.stacker_closed, "cashbox_removed"),
    ("jam", Id003Simulator.jam, Id003Simulator.clear_fault, "jam"),
    ("jam_stacker", lambda s: s.jam(in_stacker=True), Id003Simulator.clear_fault, "jam"),
    ("cheated", Id003Simulator.fraud, Id003Simulator.clear_fault, "fraud"),
    ("failure", Id003Simulator.failure, Id003Simulator.clear_fault, "failure"),
]


@pytest.mark.parametrize(
    ("script", "clear", "kind"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
def test_fault_and_its_clearing(
    script: Callable[[Id003Simulator], object],
    clear: Callable[[Id003Simulator], object],
    kind: str,
) -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            script(sim)
            got = await event(v)
            assert isinstance(got, Fault) and got.kind == FaultKind(kind)
            if kind == "failure":
                assert "stack_motor" in got.detail
            with pytest.raises(DeviceFault) as refused:
                await v.enable()
            assert refused.value.kind == kind
            clear(sim)
            assert await event(v) == FaultCleared()
            await v.enable()
            await escrowed(v, sim, 2000)

    run(main())


def test_pause_is_logged_only(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            await escrowed(v, sim, 1000)
            sim.pause(polls=3)
            await until(lambda: "PAUSE" in caplog.text)
            assert await v.stack(credit_nothing) == TEN
            assert v._events.empty()

    with caplog.at_level(logging.WARNING, logger="drivers.id003.client"):
        run(main())
    assert sum("PAUSE" in r.message for r in caplog.records) == 1


def test_power_cut_mid_escrow_reports_a_note_in_the_acceptor() -> None:
    async def main() -> None:
        async with device() as (sim, port):
            async with opened(port) as (v, _):
                await v.enable()
                await escrowed(v, sim, 1000)
                sim.power_cut()  # the kiosk loses power too
            sim.power_on()
            async with opened(port) as (v, report):
                assert report == PowerUpReport(in_escrow=UNKNOWN)
                assert sim.state().escrow is None and sim.cashbox() == {}  # given back
                assert sim.state().status is Status.DISABLE

    run(main())


def test_power_cut_mid_stack_reports_a_note_in_the_stacker() -> None:
    async def main() -> None:
        async with device(stack_time=10) as (sim, port):
            credited: list[Note] = []

            async def on_credit(note: Note) -> None:
                credited.append(note)

            async with opened(port) as (v, _):
                await v.enable()
                await escrowed(v, sim, 1000)
                stacking = asyncio.create_task(v.stack(on_credit))
                await until(status_is(sim, Status.STACKING))
                sim.power_cut()
                with pytest.raises(DeviceFault, match="no answer"):
                    await stacking
            assert credited == []
            sim.power_on()
            async with opened(port) as (v, report):
                assert report == PowerUpReport(stacked=UNKNOWN)
                assert sim.cashbox() == {1000: 1}
                assert sim.state().status is Status.DISABLE

    run(main())


def test_host_crash_with_vend_valid_unacknowledged() -> None:
    async def main() -> None:
        async with device() as (sim, port):
            async with opened(port) as (v, _):
                await v.enable()
                await escrowed(v, sim, 1000)
                with pytest.raises(RuntimeError):
                    await v.stack(crash)
                assert sim.state().pending_ack
            resets = len(sent(sim, Command.RESET))
            async with opened(port) as (v, report):
                assert report == PowerUpReport(stacked=UNKNOWN)
                assert v.pending_ack and sim.state().pending_ack
                before = sim.state().vend_valid_reports
                await until(lambda: sim.state().vend_valid_reports >= before + 3)
                assert sent(sim, Command.ACK) == []
                assert len(sent(sim, Command.RESET)) == resets  # not reset either
                await v.ack_power_up()  # the kiosk's recovery committed: now the ACK
                assert not v.pending_ack and not sim.state().pending_ack
                assert len(sent(sim, Command.ACK)) >= 1
                assert sim.state().status is Status.DISABLE and sim.cashbox() == {1000: 1}
                await v.ack_power_up()  # nothing pending: no-op

    run(main())


async def crash(note: Note) -> None:
    raise RuntimeError("the host died inside on_credit")


async def credit_nothing(note: Note) -> None:
    await asyncio.sleep(0)


def test_enable_acknowledges_a_pending_power_up_vend_valid() -> None:
    async def main() -> None:
        async with device() as (sim, port):
            async with opened(port) as (v, _):
                await v.enable()
                await escrowed(v, sim, 2000)
                with pytest.raises(RuntimeError):
                    await v.stack(crash)
            async with opened(port) as (v, report):
                assert report.stacked == UNKNOWN
                await v.disable()  # does not acknowledge
                assert v.pending_ack
                await v.enable()
                assert not v.pending_ack
                await until(status_is(sim, Status.IDLING))
                assert sim.cashbox() == {2000: 1}

    run(main())


def test_host_restart_with_a_note_held_in_escrow_returns_it() -> None:
    async def main() -> None:
        async with device() as (sim, port):
            async with opened(port) as (v, _):
                await v.enable()
                await escrowed(v, sim, 1000)
            async with opened(port) as (v, report):
                assert report == PowerUpReport(in_escrow=TEN)  # still in escrow: value known
                assert sim.state().escrow is None and sim.cashbox() == {}

    run(main())


def test_disconnect_then_restart_restores_the_enabled_state() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            await until(status_is(sim, Status.IDLING))
            sim.power_cut()
            got = await event(v)
            assert isinstance(got, Fault) and got.kind is FaultKind.DISCONNECTED
            with pytest.raises(DeviceFault) as silent:
                await v.disable()
            assert silent.value.kind == "disconnected"
            sim.power_on()
            assert await event(v) == FaultCleared()
            await until(status_is(sim, Status.DISABLE))
            await v.enable()
            await until(status_is(sim, Status.IDLING))
            sim.power_cut()
            await event(v)
            sim.power_on()
            await event(v)
            await until(status_is(sim, Status.IDLING))  # re-initialised, enabled again

    run(main())


def test_acceptor_restart_with_the_note_in_escrow_reports_it_returned() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            note = await escrowed(v, sim, 1000)
            sim.power_cut()
            sim.power_on()  # before the driver notices any silence
            got = await event(v)
            while isinstance(got, Fault | FaultCleared):
                got = await event(v)
            assert got == NoteReturned(note)
            await until(status_is(sim, Status.IDLING))
            assert sim.cashbox() == {}

    run(main())


def test_communication_error_and_invalid_command_are_retried_once() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port, poll_interval=30) as (v, _):
            sim.glitch(Status.COMMUNICATION_ERROR, count=1)
            await v.enable()
            assert sim.state().inhibited is False
            sim.glitch(Status.COMMUNICATION_ERROR, count=2)
            with pytest.raises(FrameError, match="COMMUNICATION ERROR"):
                await v.disable()
            sim.glitch(Status.INVALID_COMMAND, count=2)
            with pytest.raises(CommandRefused, match="INVALID COMMAND"):
                await v.disable()
            await v.disable()
            assert sim.state().inhibited

    run(main())


def test_a_wrong_echo_is_an_error() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port, poll_interval=30) as (v, _):
            real = sim.handle

            def bad_echo(frame: Frame) -> Frame | None:
                answer = real(frame)
                if frame.cmd == Command.SET_INHIBIT:
                    return Frame(Command.SET_INHIBIT, b"\x07")
                return answer

            sim.handle = bad_echo  # type: ignore[method-assign]
            with pytest.raises(FrameError, match="echoed"):
                await v.enable()

    run(main())


def test_escrow_table_from_the_device_or_configured() -> None:
    async def main() -> None:
        table = {**EUR_ESCROW, 0x69: 100000}  # 0x69: no inhibit bit in SET_DENOMINATIONS
        async with device(answers_currency_assign=False, escrow_table=table) as (sim, port):
            v = Id003Validator(str(port.path), currency="EUR", **FAST)
            with pytest.raises(DeviceFault, match="escrow_table"):
                await v.open()
            assert v.link is None
            small = {0x62: 500, 0x63: 1000}
            async with opened(port, escrow_table=small) as (v, _):
                assert v.escrow_table == small
                await v.enable()
                assert sim.state().denominations == b"\xf9\x00"
                await until(status_is(sim, Status.IDLING))
                assert sim.insert(50000)  # 0x68: unknown to the host, so inhibited
                assert await event(v) == NoteRejected("inhibit")
                await until(status_is(sim, Status.IDLING))
                assert sim.insert(100000)  # 0x69: escrowed, unknown to the host: returned
                assert await event(v) == NoteRejected("unknown_denomination")
                await until(status_is(sim, Status.IDLING))
                assert sim.cashbox() == {}
        async with device() as (sim, port), opened(port, escrow_table={0x61: 1}) as (v, _):
            assert v.escrow_table == EUR_ESCROW  # the acceptor's own table wins

    run(main())


def test_hold_keeps_a_note_past_the_device_escrow_timeout() -> None:
    async def main() -> None:
        async with device(escrow_timeout=0.15) as (sim, port):
            async with opened(port, hold_interval=0.05, hold_data=b"\xff") as (v, _):
                await v.enable()
                await escrowed(v, sim, 1000)
                await asyncio.sleep(0.4)
                assert sim.state().status is Status.HOLDING
                assert Frame(Command.HOLD, b"\xff") in sim.received
                assert await v.stack(credit_nothing) == TEN
            async with opened(port) as (v, _):
                await v.enable()
                note = await escrowed(v, sim, 1000)
                assert await event(v) == NoteReturned(note)  # the device gave it back

    run(main())


def test_fault_at_open_initialises_once_cleared() -> None:
    async def main() -> None:
        async with device() as (sim, port):
            sim.stacker_open()
            async with opened(port) as (v, report):
                assert report == PowerUpReport()
                assert await event(v) == Fault(FaultKind.CASHBOX_REMOVED, "stacker open")
                assert sent(sim, Command.RESET) == []
                sim.stacker_closed()
                assert await event(v) == FaultCleared()
                assert sent(sim, Command.RESET) != []
                await v.enable()
                await escrowed(v, sim, 500)

    run(main())


def test_jam_while_stacking_fails_the_stack() -> None:
    async def main() -> None:
        async with device(stack_time=0.3) as (sim, port), opened(port) as (v, _):
            await v.enable()
            await escrowed(v, sim, 1000)
            stacking = asyncio.create_task(v.stack(credit_nothing))
            await until(status_is(sim, Status.STACKING))
            sim.jam(in_stacker=True)
            with pytest.raises(DeviceFault) as failed:
                await stacking
            assert failed.value.kind == "jam"
            assert await event(v) == Fault(FaultKind.JAM, "jam in stacker")
            sim.failure(FailureCode.HEAD_REMOVED)
            assert await event(v) == Fault(FaultKind.FAILURE, "failure 0xAF head_removed")

    run(main())


def test_commands_before_open_raise_device_fault() -> None:
    async def main() -> None:
        v = Id003Validator("/dev/null-not-a-port", currency="EUR", **FAST)
        with pytest.raises(DeviceFault, match="not open"):
            await v.enable()
        with pytest.raises(PortError):
            await v.open()
        with pytest.raises(DeviceFault, match="not open"):
            await v.disable()
        await v.close()

    run(main())
