"""A port that vanishes (adapter unplugged, simulator killed: the pty hangs up)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.errors import DeviceFault
from drivers.id003.client import Id003Validator
from drivers.id003.codes import Command, Status
from drivers.id003.sim import Id003Simulator, serve
from drivers.pty import DevicePort
from drivers.validator.base import Fault, FaultKind
from tests.drivers.id003.test_id003_client import (
    FAST,
    credit_nothing,
    device,
    event,
    opened,
    run,
    sent,
    status_is,
    until,
)


@contextlib.asynccontextmanager
async def plugged(sim: Id003Simulator, link: Path) -> AsyncIterator[DevicePort]:
    """The simulator on a fresh pty linked at ``link`` (a stable name, like udev's)."""
    port = DevicePort()
    port.start()
    port.link(link)
    task = asyncio.create_task(serve(sim, port))
    try:
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        port.close()  # the pty hangs up: the driver's reads fail


async def disconnected(v: Id003Validator) -> Fault:
    got = await event(v, timeout=1.0)
    assert isinstance(got, Fault) and got.kind is FaultKind.DISCONNECTED, got
    return got


def test_a_vanished_port_is_reported_at_once_and_polling_stops(tmp_path: Path) -> None:
    async def main() -> None:
        sim = Id003Simulator()
        v = Id003Validator(str(tmp_path / "validator"), currency="EUR", **FAST)
        async with plugged(sim, tmp_path / "validator"):
            await v.open()
            await v.enable()
        got = await disconnected(v)
        assert "lost" in got.detail
        assert v._poller is not None
        await asyncio.wait_for(v._poller, 1.0)  # the poll task ended by itself
        await v.close()

    run(main())


def test_every_method_on_a_lost_port_raises_device_fault(tmp_path: Path) -> None:
    async def main() -> None:
        v = Id003Validator(str(tmp_path / "validator"), currency="EUR", **FAST)
        async with plugged(Id003Simulator(), tmp_path / "validator"):
            await v.open()
        await disconnected(v)
        calls = [
            v.enable(),
            v.disable(),
            v.stack(credit_nothing),
            v.return_note(),
            v.ack_power_up(),
            v.ack_credit(),
        ]
        for call in calls:
            with pytest.raises(DeviceFault) as lost:
                await call
            assert lost.value.kind == "disconnected"
        await v.close()

    run(main())


def test_every_method_on_a_closed_device_raises_device_fault() -> None:
    async def main() -> None:
        async with device() as (_, port), opened(port) as (v, _):
            pass
        for call in (v.enable(), v.disable(), v.ack_power_up(), v.ack_credit()):
            with pytest.raises(DeviceFault, match="not open"):
                await call

    run(main())


def test_a_lost_port_closes_and_opens_again(tmp_path: Path) -> None:
    async def main() -> None:
        sim = Id003Simulator()
        link = tmp_path / "validator"
        v = Id003Validator(str(link), currency="EUR", **FAST)
        async with plugged(sim, link):
            await v.open()
        await disconnected(v)
        await v.close()
        await v.close()  # twice: still fine
        async with plugged(sim, link):  # the adapter is back, on another pty
            await v.open()
            resets = len(sent(sim, Command.RESET))
            await v.enable()
            await until(status_is(sim, Status.IDLING))
            assert resets >= 1
            await v.close()

    run(main())


def test_a_stack_on_a_vanishing_port_raises_device_fault(tmp_path: Path) -> None:
    async def main() -> None:
        sim = Id003Simulator(stack_time=10)
        link = tmp_path / "validator"
        v = Id003Validator(str(link), currency="EUR", **FAST)
        async with plugged(sim, link):
            await v.open()
            await v.enable()
            await until(status_is(sim, Status.IDLING))
            assert sim.insert(1000)
            await event(v)
            stacking = asyncio.create_task(v.stack(credit_nothing))
            await until(status_is(sim, Status.STACKING))
        with pytest.raises(DeviceFault) as lost:
            await stacking
        assert lost.value.kind == "disconnected"
        await disconnected(v)
        await v.close()

    run(main())
