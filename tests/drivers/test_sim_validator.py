"""The simulated bill validator through the BillValidator interface."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import CommandRefused, DeviceFault
from drivers.validator.base import (
    Fault,
    FaultCleared,
    FaultKind,
    Note,
    NoteEscrowed,
    NoteRejected,
    NoteReturned,
    PowerUpReport,
)
from drivers.validator.sim import SimValidator

T = TypeVar("T")

TEN = Note(channel=5, value=10000, currency="EUR")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def opened(**kwargs: Any) -> SimValidator:
    v = SimValidator(**kwargs)
    await v.open()
    await v.enable()
    return v


async def next_event(v: SimValidator) -> object:
    return await asyncio.wait_for(v.next_event(), 1)


def test_escrow_then_stack_awaits_on_credit_before_acknowledging(tmp_path: Path) -> None:
    state_file = tmp_path / "v.json"

    async def main() -> None:
        v = await opened(state_file=state_file)
        assert v.insert(10000) == NoteEscrowed(TEN)
        assert await next_event(v) == NoteEscrowed(TEN)
        seen: list[dict[str, Any]] = []

        async def on_credit(note: Note) -> None:
            assert note == TEN
            await asyncio.sleep(0)
            # at the safe credit point: in the cashbox, not yet acknowledged, on disk too
            seen.append(v.state())
            seen.append(json.loads(state_file.read_text()))

        assert await v.stack(on_credit) == TEN
        live, disk = seen
        assert live["escrow"] is None and live["stacked"]["value"] == 10000
        assert disk["stacked"]["value"] == 10000 and disk["cashbox"] == {"10000": 1}
        assert v.state()["stacked"] is None
        assert json.loads(state_file.read_text())["stacked"] is None
        assert v.cashbox() == {10000: 1}

    run(main())


def test_return_gives_the_note_back_without_an_event() -> None:
    async def main() -> None:
        v = await opened()
        v.insert(2000)
        await next_event(v)
        note = await v.return_note()
        assert note.value == 2000
        assert v.cashbox() == {}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(v.next_event(), 0.05)
        with pytest.raises(CommandRefused):
            await v.return_note()

    run(main())


def test_stack_without_a_note_is_refused() -> None:
    async def main() -> None:
        v = await opened()

        async def on_credit(note: Note) -> None:
            raise AssertionError("no credit without a note")

        with pytest.raises(CommandRefused):
            await v.stack(on_credit)

    run(main())


def test_rejections() -> None:
    async def main() -> None:
        v = SimValidator()
        await v.open()
        assert v.insert(500) == NoteRejected("disabled")
        await v.enable(frozenset({500, 1000}))
        assert v.insert(2000) == NoteRejected("inhibited")
        assert v.insert(777) == NoteRejected("unknown")
        assert v.insert_fake() == NoteRejected("fake")
        assert isinstance(v.insert(1000), NoteEscrowed)
        assert v.insert(500) == NoteRejected("busy")
        await v.return_note()
        await v.disable()
        assert v.insert(500) == NoteRejected("disabled")
        events = [v.next_event() for _ in range(6)]
        reasons = [getattr(await e, "reason", "escrowed") for e in events]
        assert reasons == ["disabled", "inhibited", "unknown", "fake", "escrowed", "busy"]

    run(main())


def test_fault_refuses_until_cleared() -> None:
    async def main() -> None:
        v = await opened()
        v.insert(5000)
        await next_event(v)
        assert v.fault(FaultKind.JAM, "in transport") == Fault(FaultKind.JAM, "in transport")
        assert await next_event(v) == Fault(FaultKind.JAM, "in transport")
        assert v.insert(500) == NoteRejected("fault")
        await next_event(v)

        async def on_credit(note: Note) -> None:
            raise AssertionError("a jammed note is not credited")

        with pytest.raises(DeviceFault) as exc:
            await v.stack(on_credit)
        assert exc.value.kind == "jam"
        with pytest.raises(DeviceFault):
            await v.return_note()
        assert v.state()["escrow"]["value"] == 5000  # still held
        assert v.clear_fault() == FaultCleared()
        assert await next_event(v) == FaultCleared()
        assert v.clear_fault() is None
        assert (await v.return_note()).value == 5000

    run(main())


def test_fault_while_stacking_leaves_the_note_in_escrow() -> None:
    async def main() -> None:
        v = await opened(stack_time=0.05)
        v.insert(1000)

        async def on_credit(note: Note) -> None:
            raise AssertionError("not stacked, not credited")

        task = asyncio.create_task(v.stack(on_credit))
        await asyncio.sleep(0.01)
        v.fault(FaultKind.CASHBOX_REMOVED)
        with pytest.raises(DeviceFault):
            await task
        assert v.cashbox() == {}
        assert v.state()["escrow"]["value"] == 1000

    run(main())


def test_escrow_timeout_returns_the_note_by_itself() -> None:
    async def main() -> None:
        v = await opened(escrow_timeout=0.05)
        v.insert(20000)
        assert isinstance(await next_event(v), NoteEscrowed)
        event = await next_event(v)
        assert isinstance(event, NoteReturned) and event.note.value == 20000
        assert v.state()["escrow"] is None

        async def on_credit(note: Note) -> None:
            raise AssertionError("returned notes are not credited")

        with pytest.raises(CommandRefused):
            await v.stack(on_credit)

    run(main())


def test_power_up_after_on_credit_raised_reports_stacked(tmp_path: Path) -> None:
    state_file = tmp_path / "v.json"

    async def crash() -> None:
        v = await opened(state_file=state_file)
        v.insert(50000)

        async def on_credit(note: Note) -> None:
            raise RuntimeError("journal write failed")

        with pytest.raises(RuntimeError):
            await v.stack(on_credit)

    async def restart() -> None:
        v = SimValidator(state_file=state_file)
        report = await v.open()
        assert report == PowerUpReport(stacked=Note(7, 50000, "EUR"))
        assert v.cashbox() == {50000: 1}
        assert await SimValidator(state_file=state_file).open() == PowerUpReport()

    run(crash())
    run(restart())


def test_power_up_after_on_credit_never_returned(tmp_path: Path) -> None:
    state_file = tmp_path / "v.json"

    async def crash() -> None:
        v = await opened(state_file=state_file)
        v.insert(1000)
        entered = asyncio.Event()

        async def on_credit(note: Note) -> None:
            entered.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(v.stack(on_credit))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def restart() -> PowerUpReport:
        return await SimValidator(state_file=state_file).open()

    run(crash())
    assert run(restart()).stacked == Note(2, 1000, "EUR")


def test_power_up_returns_a_note_left_in_escrow(tmp_path: Path) -> None:
    state_file = tmp_path / "v.json"

    async def before() -> None:
        v = await opened(state_file=state_file)
        v.insert(500)
        v.insert(500)  # busy, ignored

    async def after() -> None:
        v = SimValidator(state_file=state_file)
        assert await v.open() == PowerUpReport(in_escrow=Note(1, 500, "EUR"))
        assert v.cashbox() == {}
        assert v.state()["escrow"] is None

    run(before())
    run(after())


def test_sigkill_inside_on_credit(tmp_path: Path) -> None:
    """A real crash: the process dies inside on_credit; the file says the note was stacked."""
    state_file = tmp_path / "v.json"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from drivers.validator.sim import SimValidator

        async def main():
            v = SimValidator(state_file=Path({str(state_file)!r}))
            await v.open()
            await v.enable()
            v.insert(10000)

            async def on_credit(note):
                print("crediting", flush=True)
                await asyncio.sleep(60)

            await v.stack(on_credit)

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "crediting"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    async def restart() -> None:
        v = SimValidator(state_file=state_file)
        assert await v.open() == PowerUpReport(stacked=TEN)
        assert v.cashbox() == {10000: 1}

    run(restart())


def test_unreadable_memory_is_a_device_fault(tmp_path: Path) -> None:
    state_file = tmp_path / "v.json"
    state_file.write_text("{not json")
    with pytest.raises(DeviceFault) as exc:
        run(SimValidator(state_file=state_file).open())
    assert exc.value.kind == "failure"


def test_state_is_json() -> None:
    async def main() -> dict[str, Any]:
        v = await opened(currency="GBP", channels={1: 500, 2: 1000})
        v.insert(1000)
        return v.state()

    state = run(main())
    assert json.loads(json.dumps(state)) == state
    assert state["escrow"] == {"channel": 2, "value": 1000, "currency": "GBP"}
    assert state["channels"] == {"1": 500, "2": 1000}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["insert", "fake", "stack", "return", "bad"]), max_size=20))
def test_cashbox_holds_exactly_what_was_credited(ops: list[str]) -> None:
    async def main() -> None:
        v = await opened()
        credited: list[int] = []

        async def on_credit(note: Note) -> None:
            credited.append(note.value)

        for op in ops:
            if op == "insert":
                v.insert(1000)
            elif op == "fake":
                v.insert_fake()
            elif op == "bad":
                v.insert(1)
            elif op == "stack":
                with contextlib.suppress(CommandRefused):
                    await v.stack(on_credit)
            else:
                with contextlib.suppress(CommandRefused):
                    await v.return_note()
        box = v.cashbox()
        assert sum(value * n for value, n in box.items()) == sum(credited)

    run(main())
