"""COMMUNICATION MODE (C2 n) and setting commands the acceptor refuses (INVALID COMMAND)."""

from __future__ import annotations

import asyncio

import pytest

from drivers.errors import CommandRefused
from drivers.id003.codes import Command, Status
from drivers.id003.frames import Frame
from drivers.id003.protocol import Id003Protocol
from drivers.id003.sim import Id003Simulator
from drivers.serialport import ID003_LINE, open_link
from tests.drivers.id003.test_id003_client import device, opened, run, status_is, until

INVALID = Frame(Status.INVALID_COMMAND)
MODE = Command.SET_COMMUNICATION_MODE


def test_sim_echoes_polled_mode_and_refuses_interrupt_modes() -> None:
    sim = Id003Simulator()
    assert sim.handle(Frame(MODE, b"\x00")) == Frame(MODE, b"\x00")
    assert sim.handle(Frame(MODE, b"\x01")) == INVALID
    assert sim.handle(Frame(MODE, b"\x02")) == INVALID
    assert sim.handle(Frame(Command.GET_COMMUNICATION_MODE)) == Frame(
        Command.GET_COMMUNICATION_MODE, b"\x00"
    )
    assert sim.handle(Frame(Command.STATUS_REQUEST)) == Frame(Status.POWER_UP)  # still polled


def test_a_host_asking_for_interrupt_mode_gets_an_answer_not_silence() -> None:
    async def main() -> None:
        async with device() as (_, port):
            link = await open_link(str(port.path), ID003_LINE)
            try:
                proto = Id003Protocol(link)
                assert await proto.request(Frame(MODE, b"\x01"), 0.5) == INVALID
                assert await proto.request(Frame(Command.STATUS_REQUEST), 0.5) is not None
            finally:
                await link.close()

    run(main())


def test_the_driver_asks_for_polled_mode_only() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.enable()
            modes = [f.data for f in sim.received if f.cmd == MODE]
            assert modes == [b"\x00"]

    run(main())


def refusing(sim: Id003Simulator, cmd: Command) -> None:
    """The acceptor answers INVALID COMMAND to every ``cmd`` (firmware without it)."""
    real = sim.handle

    def handle(frame: Frame) -> Frame | None:
        if frame.cmd == cmd:
            sim.received.append(frame)
            return INVALID
        return real(frame)

    sim.handle = handle  # type: ignore[method-assign]


@pytest.mark.parametrize("cmd", [Command.SET_COMMUNICATION_MODE, Command.SET_SECURITY])
def test_a_refused_optional_setting_keeps_the_default(cmd: Command) -> None:
    async def main() -> None:
        async with device() as (sim, port):
            refusing(sim, cmd)
            async with opened(port) as (v, _):
                await v.enable()
                await until(status_is(sim, Status.IDLING))

    run(main())


def test_a_refused_denomination_setting_raises_command_refused() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port, poll_interval=30) as (v, _):
            refusing(sim, Command.SET_DENOMINATIONS)
            with pytest.raises(CommandRefused, match="SET_DENOMINATIONS"):
                await v.enable()
            sim.handle = Id003Simulator.handle.__get__(sim)  # type: ignore[method-assign]
            await v.enable()  # the driver carries on
            await asyncio.sleep(0)
            assert not sim.state().inhibited

    run(main())
