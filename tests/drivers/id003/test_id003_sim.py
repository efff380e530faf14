"""The simulated ID-003 acceptor, frame by frame (no port), and on a pty with raw bytes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from drivers.id003.codes import EUR_ESCROW, USD_ESCROW, Command, FailureCode, RejectReason, Status
from drivers.id003.frames import Frame, decode_currency_assign, escrow_values
from drivers.id003.protocol import Id003Protocol
from drivers.id003.sim import Id003Simulator, run_simulator, serve
from drivers.pty import DevicePort
from drivers.serialport import ID003_LINE, open_link

POLL = Frame(Command.STATUS_REQUEST)
ACK = Frame(Status.ACK)
INVALID = Frame(Status.INVALID_COMMAND)


def ask(sim: Id003Simulator, cmd: int, data: bytes = b"") -> Frame | None:
    return sim.handle(Frame(cmd, data))


def polls(sim: Id003Simulator, n: int) -> list[Frame | None]:
    return [sim.handle(POLL) for _ in range(n)]


def ready(sim: Id003Simulator, *, enable: bool = True) -> None:
    assert sim.handle(POLL) == Frame(Status.POWER_UP)
    assert ask(sim, Command.RESET) == ACK
    assert polls(sim, 2) == [Frame(Status.INITIALIZE), Frame(Status.DISABLE)]
    if enable:
        assert ask(sim, Command.SET_INHIBIT, b"\x00") == Frame(Command.SET_INHIBIT, b"\x00")
        assert sim.handle(POLL) == Frame(Status.IDLING)


def test_escrow_stack_vend_valid_repeated_until_ack() -> None:
    sim = Id003Simulator()
    ready(sim)
    assert sim.insert(1000)
    assert polls(sim, 3) == [Frame(0x12), Frame(0x13, b"\x63"), Frame(0x13, b"\x63")]
    assert sim.state().escrow == 1000
    assert ask(sim, Command.STACK_1) == ACK
    assert sim.handle(POLL) == Frame(Status.STACKING)
    assert polls(sim, 3) == [Frame(Status.VEND_VALID)] * 3
    state = sim.state()
    assert state.pending_ack and state.vend_valid_reports == 3 and state.cashbox == {1000: 1}
    assert sim.handle(Frame(Command.ACK)) is None  # the host's ACK is not answered
    assert polls(sim, 2) == [Frame(Status.STACKED), Frame(Status.IDLING)]
    assert sim.state().escrow is None and sim.cashbox() == {1000: 1}


def test_return_hold_and_invalid_commands() -> None:
    sim = Id003Simulator()
    ready(sim)
    assert ask(sim, Command.STACK_1) == INVALID  # nothing in escrow
    assert ask(sim, Command.RETURN) == INVALID
    sim.insert(500)
    polls(sim, 2)
    assert ask(sim, Command.HOLD, b"\xff") == ACK
    assert sim.handle(POLL) == Frame(Status.HOLDING)
    assert ask(sim, Command.SET_DENOMINATIONS, b"\x00\x00") == INVALID  # busy
    assert ask(sim, Command.SET_INHIBIT, b"\x01") == Frame(Command.SET_INHIBIT, b"\x01")
    assert ask(sim, Command.RETURN) == ACK
    assert polls(sim, 2) == [Frame(Status.RETURNING), Frame(Status.DISABLE)]
    assert sim.cashbox() == {}
    assert ask(sim, 0x99) == INVALID
    assert ask(sim, Command.SET_INHIBIT, b"\x00\x00") == INVALID  # wrong length


def test_settings_echo_and_read_back() -> None:
    sim = Id003Simulator()
    for cmd, getter, data in [
        (Command.SET_DENOMINATIONS, Command.GET_DENOMINATIONS, b"\x82\x00"),
        (Command.SET_SECURITY, Command.GET_SECURITY, b"\x01\x00"),
        (Command.SET_COMMUNICATION_MODE, Command.GET_COMMUNICATION_MODE, b"\x00"),
        (Command.SET_DIRECTION, Command.GET_DIRECTION, b"\x0f"),
        (Command.SET_OPTIONAL_FUNCTION, Command.GET_OPTIONAL_FUNCTION, b"\x03\x00"),
        (Command.SET_BAR_INHIBIT, Command.GET_BAR_INHIBIT, b"\xfc"),
    ]:
        assert ask(sim, cmd, data) == Frame(cmd, data)
        assert ask(sim, getter) == Frame(getter, data)
    assert ask(sim, Command.VERSION) == Frame(Command.VERSION, sim.version.encode())
    assert ask(sim, Command.BOOT_VERSION) == Frame(Command.BOOT_VERSION, b"BOOT-SIM V1.00")


def test_currency_assign_answer() -> None:
    answer = ask(Id003Simulator(currency="USD"), Command.CURRENCY_ASSIGN)
    assert answer is not None
    assert escrow_values(decode_currency_assign(answer.data), 2) == USD_ESCROW
    answer = ask(Id003Simulator(), Command.CURRENCY_ASSIGN)
    assert answer is not None
    assert escrow_values(decode_currency_assign(answer.data), 2) == EUR_ESCROW
    assert ask(Id003Simulator(answers_currency_assign=False), Command.CURRENCY_ASSIGN) == INVALID
    with pytest.raises(ValueError, match="AED"):
        Id003Simulator(currency="AED")


def test_rejections() -> None:
    sim = Id003Simulator()
    ready(sim)
    sim.insert_fake(RejectReason.PHOTO_PATTERN)
    assert polls(sim, 3) == [Frame(0x12), Frame(0x17, b"\x77"), Frame(Status.IDLING)]
    ask(sim, Command.SET_INHIBIT, b"\x01")
    ask(sim, Command.SET_DENOMINATIONS, b"\x02\x00")  # inhibit 0x62 (EUR 5)
    ask(sim, Command.SET_INHIBIT, b"\x00")
    sim.handle(POLL)
    sim.insert(500)
    assert polls(sim, 2) == [Frame(0x12), Frame(0x17, b"\x79")]
    sim.handle(POLL)
    sim.insert(123)  # no such note
    assert polls(sim, 2) == [Frame(0x12), Frame(0x17, b"\x76")]


def test_inhibited_acceptor_does_not_draw_a_note_in() -> None:
    sim = Id003Simulator()
    ready(sim, enable=False)
    assert not sim.insert(1000)
    assert sim.handle(POLL) == Frame(Status.DISABLE)


def test_faults_overlay_and_clear() -> None:
    sim = Id003Simulator()
    ready(sim)
    sim.failure(FailureCode.TRANSPORT_MOTOR)
    assert sim.handle(POLL) == Frame(Status.FAILURE, b"\xa6")
    assert not sim.insert(1000)
    sim.clear_fault()
    sim.stacker_open()
    assert sim.handle(POLL) == Frame(Status.STACKER_OPEN)
    sim.stacker_closed()
    sim.jam(in_stacker=True)
    assert sim.handle(POLL) == Frame(Status.JAM_IN_STACKER)
    sim.clear_fault()
    sim.fraud()
    assert sim.handle(POLL) == Frame(Status.CHEATED)
    sim.clear_fault()
    assert sim.handle(POLL) == Frame(Status.IDLING)


def test_cashbox_capacity_then_full_until_emptied() -> None:
    sim = Id003Simulator(cashbox_capacity=1)
    ready(sim)
    sim.insert(2000)
    polls(sim, 2)
    ask(sim, Command.STACK_2)
    polls(sim, 2)
    sim.handle(Frame(Command.ACK))
    assert polls(sim, 2) == [Frame(Status.STACKED), Frame(Status.STACKER_FULL)]
    assert sim.empty_cashbox() == {2000: 1}
    assert sim.handle(POLL) == Frame(Status.IDLING)


def test_pause_and_glitch() -> None:
    sim = Id003Simulator()
    ready(sim)
    sim.pause(polls=2)
    assert polls(sim, 3) == [Frame(Status.PAUSE)] * 2 + [Frame(Status.IDLING)]
    sim.glitch(Status.INVALID_COMMAND, count=2)
    assert polls(sim, 3) == [INVALID, INVALID, Frame(Status.IDLING)]


def test_power_cut_with_a_note_in_the_acceptor() -> None:
    sim = Id003Simulator()
    ready(sim)
    sim.insert(5000)
    polls(sim, 2)
    sim.power_cut()
    assert sim.handle(POLL) is None
    sim.power_on()
    assert sim.handle(POLL) == Frame(Status.POWER_UP_BILL_IN_ACCEPTOR)
    assert sim.state().escrow == 5000
    ask(sim, Command.RESET)  # given back while initialising
    assert sim.state().escrow is None and sim.cashbox() == {}


def test_power_cut_while_stacking() -> None:
    sim = Id003Simulator(stack_time=10)
    ready(sim)
    sim.insert(5000)
    polls(sim, 2)
    ask(sim, Command.STACK_1)
    assert polls(sim, 2) == [Frame(Status.STACKING)] * 2
    sim.power_cut()
    sim.power_on()
    assert sim.handle(POLL) == Frame(Status.POWER_UP_BILL_IN_STACKER)
    assert sim.cashbox() == {5000: 1}
    ask(sim, Command.RESET)
    assert sim.cashbox() == {5000: 1}
    assert sim.state().inhibited


def test_escrow_timeout_returns_the_note() -> None:
    sim = Id003Simulator(escrow_timeout=0.05)
    ready(sim)
    sim.insert(1000)
    polls(sim, 2)
    time.sleep(0.06)
    assert polls(sim, 2) == [Frame(Status.RETURNING), Frame(Status.IDLING)]


# -- on a pty, raw bytes ------------------------------------------------------------------------


def test_bad_crc_is_answered_with_communication_error_and_gap_resyncs() -> None:
    async def main() -> None:
        sim = Id003Simulator()
        port = DevicePort()
        port.start()
        task = asyncio.create_task(serve(sim, port, gap=0.02))
        link = await open_link(str(port.path), ID003_LINE)
        try:
            host = Id003Protocol(link)
            await link.write(bytes.fromhex("FC 05 11 27 57"))  # bad CRC
            data = await link.read_some(1.0)
            assert Frame.deserialize(data) == (Frame(Status.COMMUNICATION_ERROR), b"")
            await link.write(b"\xfc\xff\x11")  # a corrupted LNG, then silence
            await asyncio.sleep(0.1)
            await link.write(POLL.serialize())
            data = await link.read_some(1.0)
            assert Frame.deserialize(data) == (Frame(Status.POWER_UP), b"")
            assert await host.request(POLL, 1.0) == Frame(Status.POWER_UP)
        finally:
            await link.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            port.close()

    asyncio.run(main())


def test_run_simulator_links_a_path(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "dev" / "validator"
        sim = Id003Simulator()
        ready_event = asyncio.Event()
        task = asyncio.create_task(run_simulator(path, sim=sim, ready=ready_event))
        await asyncio.wait_for(ready_event.wait(), 2)
        link = await open_link(str(path), ID003_LINE)
        try:
            answer = await Id003Protocol(link).request(POLL, 1.0)
            assert answer == Frame(Status.POWER_UP)
            assert sim.received == [POLL]
        finally:
            await link.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert not path.exists()

    asyncio.run(main())
