"""EsspValidator on the points where GA138 / GA973 constrain the host: the start-up order, the
fallbacks, poll spacing, acknowledgement, payouts with the validator enabled, HOLD refused,
and a credit no stack() asked for. Against the simulator over a real pty; where a unit's
answer must differ from the simulator's, one command's reply is replaced on the wire."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from drivers.errors import CommandRefused, DeviceFault
from drivers.essp.client import MIN_POLL_GAP, EsspValidator
from drivers.essp.codes import Command, Response
from drivers.essp.frames import Frame
from drivers.essp.sim import EsspSimulator
from drivers.pty import DevicePort
from drivers.validator.base import Fault, FaultKind, Note, NoteCredited, NoteEscrowed
from tests.drivers.essp.test_essp_client import TEN, escrowed, event, rig, run, until

_POLLS = frozenset({Command.POLL, Command.POLL_WITH_ACK, Command.HOLD})


def answer(sim: EsspSimulator, code: int, reply: bytes, *, when: Any = None) -> list[bytes]:
    """Replace the simulator's answer to plain command ``code`` (optionally only when
    ``when(data)``) with ``reply`` (generic response + data), as a unit of other firmware
    would answer. Returns the list of the replaced commands' data."""
    handle = sim.handle
    seen: list[bytes] = []

    def replaced(frame: Frame) -> Frame | None:
        data = frame.data
        if data and data[0] == code and (when is None or when(data)):
            seen.append(data)
            out = Frame(frame.address, reply, frame.seq)
            # the simulator's transport state follows, as if it had answered itself
            sim._last_seq, sim._last_reply = frame.seq, out  # type: ignore[attr-defined]
            return out
        return handle(frame)

    sim.handle = replaced  # type: ignore[method-assign]
    return seen


def polls_timed(sim: EsspSimulator) -> list[float]:
    times: list[float] = []

    def record(code: int) -> None:
        if code in _POLLS:
            times.append(time.monotonic())

    sim.on_command = record
    return times


def test_keys_are_exchanged_before_host_protocol_version() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> list[int]:
        await v.open()
        return list(sim.received)

    got = run(rig(body))
    order = [
        Command.SYNC,
        Command.SET_GENERATOR,
        Command.SET_MODULUS,
        Command.REQUEST_KEY_EXCHANGE,
        Command.HOST_PROTOCOL_VERSION,
        Command.SETUP_REQUEST,
    ]
    assert got[: len(order)] == order


def test_protocol_version_falls_back_on_parameter_out_of_range() -> None:
    sim = EsspSimulator(require_encryption=False)
    seen = answer(
        sim,
        Command.HOST_PROTOCOL_VERSION,
        bytes([Response.PARAMETER_OUT_OF_RANGE]),
        when=lambda data: data[1] > 7,
    )

    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> int:
        await v.open()
        return v.protocol

    assert run(rig(body, sim, encrypted=False)) == 7
    assert seen == [bytes([Command.HOST_PROTOCOL_VERSION, 8])]


def test_poll_with_ack_unknown_falls_back_to_poll() -> None:
    sim = EsspSimulator(require_encryption=False)
    answer(sim, Command.POLL_WITH_ACK, bytes([Response.UNKNOWN_COMMAND]))

    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        await v.enable()
        assert await escrowed(sim, v, 1000) == TEN
        assert v.poll_command == Command.POLL
        assert Command.EVENT_ACK not in sim.received  # POLL gives every event once

    run(rig(body, sim, encrypted=False))


def test_polls_stay_200_ms_apart_while_a_note_moves() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> list[float]:
        await v.open()
        times = polls_timed(sim)
        await v.enable()
        await escrowed(sim, v, 1000)

        async def on_credit(note: object) -> None:
            return None

        await v.stack(on_credit)
        await asyncio.sleep(0.5)
        return times

    times = run(rig(body))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 3
    assert min(gaps) >= MIN_POLL_GAP - 0.01  # GA973 §7.4: no back-to-back polling
    assert max(gaps) <= 1.0 + 0.1


def test_poll_interval_outside_the_manual_is_refused() -> None:
    for bad in (0.05, 1.5):
        with pytest.raises(ValueError, match="GA973"):
            EsspValidator("/dev/null", currency="EUR", poll_interval=bad)


def test_hold_refused_keeps_polling_and_the_credit_reaches_the_kiosk() -> None:
    sim = EsspSimulator(require_encryption=False)
    held = answer(sim, Command.HOLD, bytes([Response.FAIL]))

    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        await v.enable()
        await escrowed(sim, v, 1000)
        # nobody decides: HOLD is refused, the poll goes on and the unit takes the note
        got = await event(v, timeout=5.0)
        while not isinstance(got, NoteCredited):
            got = await event(v, timeout=5.0)
        assert got.note == TEN
        assert held  # HOLD was tried
        await until(lambda: bool(sim.state().unacked))
        await asyncio.sleep(0.5)
        assert sim.state().unacked  # not acknowledged before the kiosk committed it
        await v.ack_credit()
        assert sim.state().unacked == ()
        await v.ack_credit()  # nothing waits: no command

    run(rig(body, sim, encrypted=False))


def test_a_fraud_attempt_is_one_fault_not_one_per_poll() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> list[object]:
        await v.open()
        await v.enable()
        sim.fraud(2)
        await asyncio.sleep(1.5)
        got: list[object] = []
        while not v._events.empty():
            got.append(v._events.get_nowait())
        return got

    faults = [e for e in run(rig(body)) if isinstance(e, Fault) and e.kind == FaultKind.FRAUD]
    assert len(faults) == 1


def test_a_payout_enables_the_validator_around_payout_amount() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        assert not sim.state().enabled
        sim.on_command = None
        start = len(sim.received)
        assert await v.can_pay(1000)
        result = await v.payout(1000)
        assert result.complete
        sent = [c for c in sim.received[start:] if c in (0x02, 0x09, 0x0A, 0x33)]
        inhibit_all = [Command.SET_INHIBITS, Command.ENABLE]
        assert sent[:4] == [*inhibit_all, Command.PAYOUT_AMOUNT, Command.DISABLE]
        assert not sim.state().enabled  # as it was

        # While it pays out, no note can go in: every channel is inhibited.
        await v.enable()  # a journey's channels
        await v.disable()
        async with v._enabled_for_payout():
            assert sim.insert(1000)  # read ...
            await asyncio.sleep(0.7)
        assert sum(sim.cashbox.values()) == 0  # ... and rejected: nothing was stacked

    run(rig(body, EsspSimulator(levels={1000: 5})))


def test_a_payout_that_does_not_fit_the_wire_is_refused_before_anything_is_sent() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        with pytest.raises(CommandRefused, match="more than a payout can carry"):
            await v.payout(2**32)
        assert not await v.can_pay(2**32)
        assert Command.PAYOUT_AMOUNT not in sim.received

    run(rig(body, EsspSimulator(levels={1000: 5})))


def test_cannot_pay_the_exact_amount_answers_false() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        assert not await v.can_pay(1500)  # F5 2 (GA138): no 5.00 note to make 15.00
        assert not await v.can_pay(10000)  # F5 1: not enough value stored
        assert await v.can_pay(3000)

    run(rig(body, EsspSimulator(levels={1000: 5})))


def test_a_credit_after_a_fault_mid_stack_comes_as_note_credited() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        await v.enable()
        await escrowed(sim, v, 1000)

        async def on_credit(note: object) -> None:
            raise AssertionError("the stack failed: no on_credit")

        stacking = asyncio.create_task(v.stack(on_credit))
        await until(lambda: sim.state().note_phase not in (None, "escrow"), timeout=3.0)
        sim.jam()
        with pytest.raises(DeviceFault):
            await stacking
        sim.clear_faults()
        got = await event(v, timeout=5.0)
        while not isinstance(got, NoteCredited):
            got = await event(v, timeout=5.0)
        assert got.note == TEN
        await v.ack_credit()
        await until(lambda: sim.state().unacked == ())

    run(rig(body))


def test_enable_payout_device_goes_bare_on_firmware_before_4_16() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        assert v.is_payout and sim.state().payout_enabled  # bare 5C accepted
        assert await v.can_pay(1000)

    run(rig(body, EsspSimulator(firmware="0415", levels={1000: 1})))


def test_the_driver_never_polls_sooner_than_the_manual_allows() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> int:
        await v.open()
        await v.enable()
        for value in (1000, 2000):
            await until(lambda value=value: sim.insert(value), timeout=3.0)  # type: ignore[misc]
            while not isinstance(await event(v), NoteEscrowed):
                pass

            async def on_credit(note: object) -> None:
                return None

            await v.stack(on_credit)
        return sim.fast_polls

    assert run(rig(body)) == 0


def test_a_power_cut_mid_payout_is_reported_exactly_and_held_for_the_kiosk() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> None:
        await v.open()
        paying = asyncio.create_task(v.payout(3000))
        await until(lambda: sim.state().levels[1000] < 3, timeout=5.0)  # a note went out
        sim.power_cut()
        with pytest.raises(DeviceFault):
            await paying
        sim.power_on()
        await v.close()
        await v.open()
        got = v.incomplete_payout
        assert got is not None and got.requested == 3000
        assert got.dispensed == 1000 * (3 - sim.state().levels[1000])
        assert got.dispensed < 3000
        # the unit repeats INCOMPLETE PAYOUT until the kiosk's recovery has committed it
        assert any(e.code == 0xDC for e in sim.state().unacked)
        await v.ack_power_up()
        assert sim.state().unacked == ()

    run(rig(body, EsspSimulator(levels={1000: 3})))


def test_against_a_unit_answering_f4_above_its_protocol() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> int:
        await v.open()
        return v.protocol

    sim = EsspSimulator(max_protocol=7, version_refusal=Response.PARAMETER_OUT_OF_RANGE)
    assert run(rig(body, sim)) == 7


def test_against_a_unit_without_poll_with_ack() -> None:
    async def body(sim: EsspSimulator, v: EsspValidator, port: DevicePort) -> Note:
        await v.open()
        await v.enable()
        await escrowed(sim, v, 1000)

        async def on_credit(note: Note) -> None:
            return None

        credited = await v.stack(on_credit)
        assert v.poll_command == Command.POLL
        assert Command.EVENT_ACK not in sim.received
        return credited

    assert run(rig(body, EsspSimulator(poll_with_ack=False))) == TEN
