"""The kiosk's boundary with its devices (kiosk.devices): every driver error comes out as the
right DeviceError, naming the device, and no kiosk module outside the boundary names
DriverError."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import (
    CommandRefused,
    DecoderUnavailable,
    DeviceFault,
    DriverError,
    FrameError,
    PortError,
)
from drivers.printer.base import Document
from drivers.validator.base import Note
from kiosk import devices
from kiosk.errors import (
    DecoderMissing,
    DeviceError,
    DeviceFaulted,
    DeviceGarbled,
    DeviceLost,
    DeviceRefused,
    KioskError,
    StorageError,
)


def sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """A coroutine test run on its own loop (the suite has no asyncio plugin)."""

    @functools.wraps(fn)
    def test(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return test


KIOSK = Path(__file__).resolve().parents[1] / "kiosk"
BOUNDARY = {KIOSK / "devices.py", KIOSK / "errors.py"}


def test_no_kiosk_module_outside_the_boundary_names_driver_error() -> None:
    named = [
        f"{path.relative_to(KIOSK.parent)}:{n}"
        for path in sorted(KIOSK.rglob("*.py"))
        if path not in BOUNDARY
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bDriverError\b", line)
    ]
    assert named == []


NOTE = Note(1, 1000, "EUR")


@pytest.mark.parametrize(
    ("raised", "kind", "attrs"),
    [
        (DeviceFault("jam", "safe jam"), DeviceFaulted, {"kind": "jam", "detail": "safe jam"}),
        (DeviceFault("disconnected"), DeviceFaulted, {"kind": "disconnected"}),
        (CommandRefused("no note in escrow"), DeviceRefused, {"kind": None}),
        (DecoderUnavailable("apt install libzbar0"), DecoderMissing, {}),
        (FrameError("bad CRC"), DeviceGarbled, {}),
        (PortError("/dev/ttyUSB0: gone"), DeviceLost, {}),
        (OSError(5, "Input/output error"), DeviceLost, {}),
        (DriverError("something else"), DeviceError, {}),
    ],
)
def test_each_driver_error_is_its_device_error(
    raised: Exception, kind: type[DeviceError], attrs: dict[str, Any]
) -> None:
    err = devices.device_error("validator", raised)
    assert type(err) is kind
    assert err.device == "validator" and err.message == str(raised)
    assert str(err) == f"validator: {raised}"
    assert isinstance(err, KioskError) and isinstance(err, OSError)
    for name, value in attrs.items():
        assert getattr(err, name) == value


def test_an_empty_message_names_the_error() -> None:
    assert devices.device_error("printer", PortError()).message == "PortError"


class Failing:
    """Every method raises ``error``; ``stack`` runs ``on_credit`` first."""

    name = "failing"
    columns = 32

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.extra_attr = 7

    async def _raise(self, *args: Any) -> Any:
        raise self.error

    open = close = enable = disable = next_event = return_note = ack_credit = _raise
    levels = can_pay = payout = halt = smart_empty = _raise
    status = print = next_code = ack_power_up = _raise

    async def stack(self, on_credit: Any) -> Note:
        await on_credit(NOTE)
        raise self.error

    def sync_call(self) -> None:
        raise self.error

    async def events(self) -> AsyncIterator[int]:
        yield 1
        raise self.error


CALLS: list[tuple[str, Any, str, tuple[Any, ...]]] = [
    ("validator", devices.validator, "open", ()),
    ("validator", devices.validator, "enable", (None,)),
    ("validator", devices.validator, "next_event", ()),
    ("validator", devices.validator, "return_note", ()),
    ("validator", devices.validator, "ack_credit", ()),
    ("validator", devices.validator, "ack_power_up", ()),  # the driver's own, guarded too
    ("recycler", devices.dispenser, "levels", ()),
    ("recycler", devices.dispenser, "payout", (1000,)),
    ("recycler", devices.dispenser, "can_pay", (1000,)),
    ("printer", devices.printer, "status", ()),
    ("printer", devices.printer, "print", (Document("x", ()),)),
    ("code reader", devices.reader, "next_code", ()),
]


@pytest.mark.parametrize(("device", "wrap", "method", "args"), CALLS)
@sync
async def test_every_call_of_every_device_raises_device_error(
    device: str, wrap: Any, method: str, args: tuple[Any, ...]
) -> None:
    raw = Failing(DeviceFault("jam"))
    guarded = wrap(raw)
    with pytest.raises(DeviceFaulted) as info:
        await getattr(guarded, method)(*args)
    assert info.value.device == device and info.value.kind == "jam"
    assert isinstance(info.value.__cause__, DeviceFault)


@sync
async def test_stack_passes_the_kiosks_own_error_on() -> None:
    """The journal failing inside on_credit is the journal's error, not the device's."""
    guarded = devices.validator(Failing(PortError("never reached")))

    async def on_credit(note: Note) -> None:
        raise StorageError("disk full")

    with pytest.raises(StorageError, match="disk full"):
        await guarded.stack(on_credit)


@sync
async def test_stack_translates_the_devices_error() -> None:
    guarded = devices.validator(Failing(PortError("/dev/ttyUSB0: lost")))
    credited: list[Note] = []

    async def on_credit(note: Note) -> None:
        credited.append(note)

    with pytest.raises(DeviceLost, match="validator: /dev/ttyUSB0: lost"):
        await guarded.stack(on_credit)
    assert credited == [NOTE]


@sync
async def test_driver_attributes_and_sync_calls_and_async_iterators() -> None:
    raw = Failing(FrameError("garbage"))
    guarded: Any = devices.validator(raw)
    assert guarded.extra_attr == 7 and guarded.name == "failing"
    guarded.extra_attr = 8  # set on the driver
    assert raw.extra_attr == 8
    with pytest.raises(DeviceGarbled):
        guarded.sync_call()
    seen = []
    with pytest.raises(DeviceGarbled):
        async for item in guarded.events():
            seen.append(item)
    assert seen == [1]
    with pytest.raises(AttributeError):
        _ = guarded.no_such_thing


def test_wrapping_twice_is_once() -> None:
    once = devices.validator(Failing(PortError()))
    assert devices.validator(once) is once


@sync
async def test_kiosk_errors_and_other_exceptions_pass_through() -> None:
    for error in (StorageError("disk"), ValueError("bug"), KeyError("bug")):
        with pytest.raises(type(error)):
            await devices.printer(Failing(error)).status()


@sync
async def test_a_context_guards_whatever_it_is_given(tmp_path: Path) -> None:
    from kiosk.flows.context import Context

    ctx = Context(None, None, Failing(PortError("v")), Failing(PortError("p")), None)  # type: ignore[arg-type]
    ctx.dispenser = Failing(PortError("r"))  # type: ignore[assignment]
    for call, device in (
        (ctx.validator.open(), "validator"),
        (ctx.printer.status(), "printer"),
        (ctx.dispenser.levels(), "recycler"),
    ):
        with pytest.raises(DeviceLost) as info:
            await call
        assert info.value.device == device
