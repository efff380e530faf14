"""VEND VALID with no stack() waiting: ``NoteCredited`` and no ACK until ``ack_credit()``."""

from __future__ import annotations

import asyncio

import pytest

from drivers.errors import CommandRefused, DeviceFault
from drivers.id003.client import Id003Validator
from drivers.id003.codes import Command, Status
from drivers.validator.base import Fault, FaultCleared, Note, NoteCredited, ValidatorEvent
from tests.drivers.id003.test_id003_client import (
    TEN,
    credit_nothing,
    device,
    escrowed,
    event,
    opened,
    run,
    sent,
    status_is,
    until,
)


async def credited(v: Id003Validator, timeout: float = 2.0) -> NoteCredited:
    got: ValidatorEvent = await event(v, timeout)
    while isinstance(got, Fault | FaultCleared):
        got = await event(v, timeout)
    assert isinstance(got, NoteCredited), got
    return got


def test_vend_valid_after_a_failed_stack_is_credited_and_not_acknowledged() -> None:
    async def main() -> None:
        async with device(stack_time=0.3) as (sim, port), opened(port) as (v, _):
            await v.enable()
            await escrowed(v, sim, 1000)
            stacking = asyncio.create_task(v.stack(credit_nothing))
            await until(status_is(sim, Status.STACKING))
            sim.jam(in_stacker=True)
            with pytest.raises(DeviceFault):
                await stacking
            sim.clear_fault()  # the note carries on into the cashbox
            assert await credited(v) == NoteCredited(TEN)  # the escrow seen before it
            before = sim.state().vend_valid_reports
            await until(lambda: sim.state().vend_valid_reports >= before + 3)
            assert sent(sim, Command.ACK) == [] and sim.state().pending_ack
            assert v._events.empty()  # reported once

    run(main())


def test_ack_credit_acknowledges_the_vend_valid() -> None:
    async def main() -> None:
        async with device(stack_time=0.3) as (sim, port), opened(port) as (v, _):
            await v.enable()
            await escrowed(v, sim, 1000)
            stacking = asyncio.create_task(v.stack(credit_nothing))
            await until(status_is(sim, Status.STACKING))
            sim.jam(in_stacker=True)
            with pytest.raises(DeviceFault):
                await stacking
            sim.clear_fault()
            await credited(v)
            with pytest.raises(CommandRefused, match="ack_credit"):
                await v.enable()  # the acceptor takes no note until then
            await v.ack_credit()
            assert len(sent(sim, Command.ACK)) >= 1 and not sim.state().pending_ack
            assert sim.cashbox() == {1000: 1}
            await v.enable()
            await until(status_is(sim, Status.IDLING))

    run(main())


def test_an_unknown_note_is_credited_with_value_zero() -> None:
    async def main() -> None:
        async with device(stack_time=0.3) as (sim, port), opened(port) as (v, _):
            await v.enable()
            await escrowed(v, sim, 1000)
            stacking = asyncio.create_task(v.stack(credit_nothing))
            await until(status_is(sim, Status.STACKING))
            sim.jam(in_stacker=True)
            with pytest.raises(DeviceFault):
                await stacking
            v._escrow = None  # the driver no longer knows which note it was
            sim.clear_fault()
            assert await credited(v) == NoteCredited(Note(0, 0, "EUR"))

    run(main())


def test_ack_credit_with_nothing_pending_is_a_no_op() -> None:
    async def main() -> None:
        async with device() as (sim, port), opened(port) as (v, _):
            await v.ack_credit()
            assert sent(sim, Command.ACK) == []

    run(main())
