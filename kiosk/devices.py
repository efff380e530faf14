"""The kiosk's boundary with its devices: driver errors become :class:`DeviceError` here.

Every device the kiosk drives is reached through one of these wrappers (built by
:func:`kiosk.hardware.build`; :class:`~kiosk.flows.context.Context` wraps whatever it is
given, so a flow never sees a bare driver): each call, sync or async, each event wait
(``next_event``, ``next_code``) and each async iterator a driver hands out turns a
:class:`~drivers.errors.DriverError`, or the port's ``OSError``, into the matching
:class:`~kiosk.errors.DeviceError` with the device's name, ``raise ... from exc``:

==================================  ==========================================
driver error                        kiosk error
==================================  ==========================================
``DeviceFault(kind)``               ``DeviceFaulted`` (``kind``, ``detail`` kept)
``CommandRefused``                  ``DeviceRefused``
``DecoderUnavailable``              ``DecoderMissing``
``FrameError``                      ``DeviceGarbled``
``PortError``, any other OSError    ``DeviceLost``
any other ``DriverError``           ``DeviceError``
==================================  ==========================================

A :class:`~kiosk.errors.KioskError` passes through untouched, and so does whatever the
kiosk's own callback raises inside a driver call (``stack``'s ``on_credit`` commits to the
journal: its error is the journal's, not the device's). Attributes a wrapper does not define
are the driver's (``ack_power_up``, ``incomplete_payout``...), their calls guarded the same
way; attributes set on a wrapper are set on the driver.

No other kiosk module names ``DriverError`` (``tests/test_device_boundary.py`` checks).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from drivers.errors import (
    CommandRefused,
    DecoderUnavailable,
    DeviceFault,
    DriverError,
    FrameError,
)
from drivers.printer.base import Document, PrinterStatus, ReceiptPrinter
from drivers.reader.base import CodeReader
from drivers.validator.base import (
    BillValidator,
    CreditCallback,
    Note,
    NoteDispenser,
    PayoutResult,
    PowerUpReport,
    ValidatorEvent,
)
from kiosk.errors import (
    DecoderMissing,
    DeviceError,
    DeviceFaulted,
    DeviceGarbled,
    DeviceLost,
    DeviceRefused,
    KioskError,
)

T = TypeVar("T")

VALIDATOR, RECYCLER, PRINTER, READER = "validator", "recycler", "printer", "code reader"


def device_error(device: str, exc: BaseException) -> DeviceError:
    """The :class:`DeviceError` a driver error (or a port's ``OSError``) of ``device`` is."""
    if isinstance(exc, DeviceError):
        return exc
    message = str(exc) or type(exc).__name__
    if isinstance(exc, DeviceFault):
        return DeviceFaulted(device, message, kind=exc.kind, detail=exc.detail)
    if isinstance(exc, CommandRefused):
        return DeviceRefused(device, message)
    if isinstance(exc, DecoderUnavailable):
        return DecoderMissing(device, message)
    if isinstance(exc, FrameError):
        return DeviceGarbled(device, message)
    if isinstance(exc, OSError):  # PortError, and a port's own errors (EIO, ENXIO...)
        return DeviceLost(device, message)
    return DeviceError(device, message)


def is_device_error(exc: BaseException) -> bool:
    """``exc`` comes from a device: a :class:`DeviceError` or an untranslated driver error
    (what a command that drives a simulator or a port directly may still meet)."""
    return isinstance(exc, DeviceError | DriverError)


def _translatable(exc: BaseException) -> bool:
    return isinstance(exc, DriverError | OSError) and not isinstance(exc, KioskError)


@contextlib.contextmanager
def boundary(device: str, garbled: list[int] | None = None) -> Iterator[None]:
    """Inside: a driver error or an ``OSError`` becomes ``device``'s :class:`DeviceError`
    (for the few places that drive a driver object directly: a simulator, a control socket).
    ``garbled``: a one-item counter bumped for each :class:`DeviceGarbled`."""
    try:
        yield
    except Exception as exc:
        if _translatable(exc):
            err = device_error(device, exc)
            if garbled is not None and isinstance(err, DeviceGarbled):
                garbled[0] += 1
            raise err from exc
        raise


async def _guarded_iter(device: str, it: AsyncIterator[T]) -> AsyncIterator[T]:
    while True:
        with boundary(device):
            try:
                item = await anext(it)
            except StopAsyncIteration:
                return
        yield item


def _guard_callable(device: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        def agen(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            return _guarded_iter(device, fn(*args, **kwargs))

        return agen
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coro(*args: Any, **kwargs: Any) -> Any:
            with boundary(device):
                return await fn(*args, **kwargs)

        return coro

    @functools.wraps(fn)
    def sync(*args: Any, **kwargs: Any) -> Any:
        with boundary(device):
            result = fn(*args, **kwargs)
        if hasattr(result, "__anext__"):
            return _guarded_iter(device, result)
        return result

    return sync


class Guarded:
    """The common part of the wrappers: the driver (``inner``), the device's name, and the
    driver's other attributes, guarded."""

    device: str

    def __init__(self, inner: Any, device: str) -> None:
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "_garbled", [0])

    @property
    def name(self) -> str:
        """The driver's name of the unit (every interface has one)."""
        name: str = self.inner.name
        return name

    @name.setter
    def name(self, value: str) -> None:  # pragma: no cover - __setattr__ sets the driver's
        self.inner.name = value

    @property
    def line_errors(self) -> int:
        """Bad frames seen on the device's line so far: the driver's own count of frames it
        dropped and retried (``bad_frames``, reset when it opens again) plus the calls that
        failed with :class:`DeviceGarbled`. :class:`GarbleWatch` reads it."""
        own = getattr(self.inner, "bad_frames", 0)
        garbled: int = self._garbled[0]
        return (own if type(own) is int else 0) + garbled

    def __getattr__(self, name: str) -> Any:  # only for what the wrapper does not define
        if name == "inner":  # not set yet (copy, pickle): never recurse
            raise AttributeError(name)
        value = getattr(self.inner, name)
        return _guard_callable(self.device, value) if callable(value) else value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)

    def __repr__(self) -> str:
        return f"<{self.device}: {self.inner!r}>"

    async def _call(self, call: Awaitable[T]) -> T:
        with boundary(self.device, self._garbled):
            return await call


class GuardedValidator(Guarded):
    """A :class:`~drivers.validator.base.BillValidator` whose errors are ``DeviceError``."""

    inner: BillValidator

    def __init__(self, inner: BillValidator, device: str = VALIDATOR) -> None:
        super().__init__(inner, device)

    async def open(self) -> PowerUpReport:
        return await self._call(self.inner.open())

    async def close(self) -> None:
        await self._call(self.inner.close())

    async def enable(self, accept: frozenset[int] | None = None) -> None:
        await self._call(self.inner.enable(accept))

    async def disable(self) -> None:
        await self._call(self.inner.disable())

    async def next_event(self) -> ValidatorEvent:
        return await self._call(self.inner.next_event())

    async def stack(self, on_credit: CreditCallback) -> Note:
        """The kiosk's ``on_credit`` raising is the kiosk's error, passed on as it is."""
        own: list[BaseException] = []

        async def credit(note: Note) -> None:
            try:
                await on_credit(note)
            except BaseException as exc:
                own.append(exc)
                raise

        try:
            return await self.inner.stack(credit)
        except Exception as exc:
            if any(exc is mine for mine in own) or not _translatable(exc):
                raise
            err = device_error(self.device, exc)
            if isinstance(err, DeviceGarbled):
                self._garbled[0] += 1
            raise err from exc

    async def return_note(self) -> Note:
        return await self._call(self.inner.return_note())

    async def ack_credit(self) -> None:
        await self._call(self.inner.ack_credit())


class GuardedDispenser(Guarded):
    """A :class:`~drivers.validator.base.NoteDispenser` (the recycler) likewise."""

    inner: NoteDispenser

    def __init__(self, inner: NoteDispenser, device: str = RECYCLER) -> None:
        super().__init__(inner, device)

    async def levels(self) -> dict[int, int]:
        return await self._call(self.inner.levels())

    async def can_pay(self, amount: int) -> bool:
        return await self._call(self.inner.can_pay(amount))

    async def payout(self, amount: int) -> PayoutResult:
        return await self._call(self.inner.payout(amount))

    async def halt(self) -> None:
        await self._call(self.inner.halt())

    async def smart_empty(self) -> dict[int, int]:
        return await self._call(self.inner.smart_empty())


class GuardedPrinter(Guarded):
    """A :class:`~drivers.printer.base.ReceiptPrinter` likewise."""

    inner: ReceiptPrinter

    def __init__(self, inner: ReceiptPrinter, device: str = PRINTER) -> None:
        super().__init__(inner, device)

    @property
    def columns(self) -> int:
        return self.inner.columns

    @columns.setter
    def columns(self, value: int) -> None:  # pragma: no cover - __setattr__ sets the driver's
        self.inner.columns = value

    async def open(self) -> None:
        await self._call(self.inner.open())

    async def close(self) -> None:
        await self._call(self.inner.close())

    async def status(self) -> PrinterStatus:
        return await self._call(self.inner.status())

    async def print(self, doc: Document) -> None:
        await self._call(self.inner.print(doc))


class GuardedReader(Guarded):
    """A :class:`~drivers.reader.base.CodeReader` likewise."""

    inner: CodeReader

    def __init__(self, inner: CodeReader, device: str = READER) -> None:
        super().__init__(inner, device)

    async def open(self) -> None:
        await self._call(self.inner.open())

    async def close(self) -> None:
        await self._call(self.inner.close())

    async def next_code(self) -> str:
        return await self._call(self.inner.next_code())


GARBLED_FRAMES = 5
"""Bad frames within :data:`GARBLED_WINDOW_S` that make a line "sending garbage" (a single
bad frame is retried by the driver, as its protocol says, and is no news)."""
GARBLED_WINDOW_S = 10.0


class GarbleWatch:
    """Whether a device's line sends garbage: more than ``limit`` bad frames
    (:attr:`Guarded.line_errors`) within ``window_s`` seconds. :meth:`check` is called
    often (the daemon: every second) with the device's count."""

    def __init__(
        self,
        limit: int = GARBLED_FRAMES,
        window_s: float = GARBLED_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._seen: list[tuple[float, int]] = []  # (when, count) within the window
        self._last: int | None = None

    def check(self, count: int) -> int | None:
        """The bad frames of the window when over the limit (then it starts afresh), else None."""
        now = self.clock()
        if self._last is not None and count < self._last:  # the driver opened again: new count
            self._seen.clear()
        self._last = count
        self._seen = [(t, n) for t, n in self._seen if now - t <= self.window_s]
        self._seen.append((now, count))
        bad = count - self._seen[0][1]
        if bad > self.limit:
            self._seen = [(now, count)]
            return bad
        return None


def validator(inner: BillValidator) -> BillValidator:
    return inner if isinstance(inner, Guarded) else GuardedValidator(inner)


def dispenser(inner: NoteDispenser) -> NoteDispenser:
    return inner if isinstance(inner, Guarded) else GuardedDispenser(inner)


def printer(inner: ReceiptPrinter) -> ReceiptPrinter:
    return inner if isinstance(inner, Guarded) else GuardedPrinter(inner)


def reader(inner: CodeReader) -> CodeReader:
    return inner if isinstance(inner, Guarded) else GuardedReader(inner)
