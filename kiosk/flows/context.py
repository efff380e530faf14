"""What a journey needs: the config, the journal, the devices and the provider clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.printer.base import ReceiptPrinter
from drivers.validator.base import BillValidator, FaultKind, NoteDispenser
from kiosk import devices
from kiosk.approvals import Approvals
from kiosk.config import Config
from kiosk.journal import AsyncJournal
from kiosk.outbox import wall_ms
from kiosk.reachability import Reachability

if TYPE_CHECKING:
    from drivers.panel import Panel
    from kiosk.outbox import Forwarder
    from kiosk.tamper import Tamper

log = logging.getLogger("kiosk.flows")


@dataclass
class Context:
    config: Config
    journal: AsyncJournal
    validator: BillValidator
    printer: ReceiptPrinter
    panel: Panel
    clients: dict[str, Any] = field(default_factory=dict)
    """Each configured provider's client, by provider name (:mod:`kiosk.providers.registry`)."""
    dispenser: NoteDispenser | None = None
    """The recycler that pays notes out, when the validator is one (SMART Payout)."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Backoff sleeps (tests pass a fast one)."""
    fault: FaultKind | None = None
    """The validator's last fault, set by whoever saw it (a journey or the idle loop)."""
    out_of_service: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by a flow that saw a device fault; the daemon stops taking customers."""
    forwarder: Forwarder | None = None
    """The outbox's forwarder (built on first use when the daemon did not)."""
    clock_ms: Callable[[], int] = field(default_factory=lambda: wall_ms)
    """Epoch milliseconds (tests pass the sandbox's clock, so time passing there moves us)."""
    reachability: Reachability = field(default_factory=Reachability)
    """Which providers answer (fed by every call; see :mod:`kiosk.reachability`)."""
    approvals: Approvals = field(default_factory=Approvals)
    """The transactions waiting for a technician's approval (:mod:`kiosk.approvals`)."""
    tamper: Tamper | None = None
    """The daemon's tamper latches (:mod:`kiosk.tamper`): a fraud or a cashbox removed that
    a flow sees latches there; ``None`` where nothing latches (tests, benches)."""
    read_code: Callable[[], Awaitable[str]] | None = None
    """The code reader's next text, for a journey that asks the customer for a second code
    (an OTP shown only once the notes are in); ``None`` where there is no reader."""

    def __setattr__(self, name: str, value: Any) -> None:
        """The devices are held through the kiosk's boundary (:mod:`kiosk.devices`): a flow
        meets only ``DeviceError``, whatever driver or test double it was given."""
        guard = _GUARDS.get(name)
        object.__setattr__(self, name, value if value is None or guard is None else guard(value))

    def client(self, provider: str) -> Any:
        """The provider's client; a journey only starts when it is configured."""
        try:
            return self.clients[provider]
        except KeyError:
            raise LookupError(f"{provider} is not configured on this kiosk") from None

    def outbox(self) -> Forwarder:
        """The forwarder, with every provider operation this build knows."""
        if self.forwarder is None:
            from kiosk.outbox import Forwarder
            from kiosk.providers.registry import journey_modules

            ops: dict[str, Any] = {}
            for module in journey_modules():
                if module.JOURNEY.provider in self.clients:
                    for op in module.operations(self):
                        ops[op.name] = op
            self.forwarder = Forwarder(
                self.journal, ops, clock_ms=self.clock_ms, ahead_ms=self.reachability.ahead_ms
            )
        return self.forwarder


_GUARDS: dict[str, Callable[[Any], Any]] = {
    "validator": devices.validator,
    "printer": devices.printer,
    "dispenser": devices.dispenser,
}


class Sources:
    """Waits on several event sources at once without losing an event: one pending task per
    source survives between waits; :meth:`close` cancels the rest and hands back the events
    of waits that had already completed."""

    def __init__(self, **sources: Callable[[], Awaitable[Any]]) -> None:
        self._sources = sources
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    async def next(self, timeout: float) -> tuple[str, Any] | None:
        """``(source name, event)`` or ``None`` when ``timeout`` seconds pass quietly."""
        for name, source in self._sources.items():
            if name not in self._tasks:
                self._tasks[name] = asyncio.ensure_future(source())
        done, _ = await asyncio.wait(
            self._tasks.values(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            return None
        for name, task in list(self._tasks.items()):
            if task in done:
                del self._tasks[name]
                return name, task.result()
        return None  # pragma: no cover - asyncio.wait returned a task we do not own

    async def close(self) -> list[tuple[str, Any]]:
        """Cancel the pending waits. Returns, in source order, the events of waits that had
        already completed (or completed while being cancelled): the caller handles them, so
        no event is ever dropped."""
        for task in self._tasks.values():
            task.cancel()
        left: list[tuple[str, Any]] = []
        for name, task in self._tasks.items():
            try:
                result = await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # we ourselves are being cancelled
                continue
            except Exception as exc:
                log.debug("%s: wait failed while closing: %s", name, exc)
                continue
            left.append((name, result))
        self._tasks.clear()
        return left
