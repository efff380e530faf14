"""The outbox: every provider call that moves money is a journal row before it is a request,
and a forwarder delivers it until a definitive, signed answer settles it.

The row (``outbox`` table, :meth:`kiosk.journal.Journal.start_call`) is committed in the same
transaction as the state change and the effect's intent; it holds the request sealed
(AES-GCM under a key derived from the journal key: it may hold a customer's code), its
idempotency key, the ``requestTime`` it is signed with, and ``void_after``: the moment from
which the provider can no longer apply it (PayBy refuses a ``requestTime`` older than 15
minutes; plus the configured clock margin). Every delivery re-sends the *same* request, with the
same key and the same ``requestTime``, so that bound never moves.

How a delivery counts (:func:`classify`), whatever the provider:

- a signed success ⇒ the call is **done**;
- a signed refusal ⇒ this delivery was processed and refused: the provider's state query
  decides (an earlier delivery may have been applied);
- in doubt (below) ⇒ the state query too, but only "applied" settles it then: "not applied"
  may just mean "not yet";
- nothing sent (connect error) ⇒ retry; nothing is in doubt;
- anything else — a timeout or reset after sending, HTTP 5xx, HTTP 429, an unsigned error
  head (402, 404 ...), a broken or forged reply — is **in doubt**: the request may land later.
  It never decides an outcome.

A call is settled as **not applied** only on a signed state query that says so *and* when no
delivery is in doubt, ``void_after`` has passed, or the query says its answer is **final**
(``detail["final"] is True``: the provider's state can no longer change, e.g. a transaction
revoked or a session closed, so no request in flight can land any more). Until then the
transaction is ``pending`` and the forwarder retries with bounded exponential backoff and
jitter, in the background, across restarts (the rows are in the journal), while the kiosk
serves the next customer. Rows of one
transaction go in order; different transactions in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from kiosk.errors import ProviderError, ProviderRefused, ProviderUnavailable
from kiosk.journal import AsyncJournal

log = logging.getLogger("kiosk.outbox")


class Delivery(StrEnum):
    DONE = "done"
    REFUSED = "refused"
    IN_DOUBT = "in_doubt"
    NOT_SENT = "not_sent"


class Verdict(StrEnum):
    APPLIED = "applied"
    NOT_APPLIED = "not_applied"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery: Delivery
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def classify(exc: ProviderError) -> Delivery:
    """What a failed delivery tells: see the module docstring."""
    if isinstance(exc, ProviderUnavailable) and exc.code is None and not exc.signed:
        return Delivery.NOT_SENT  # the connection never opened: nothing was sent
    if isinstance(exc, ProviderRefused) and exc.signed:
        return Delivery.REFUSED
    return Delivery.IN_DOUBT


class Operation(Protocol):
    """One kind of money call (``payby.pay``...), registered by its provider's flow."""

    async def send(self, row: dict[str, Any], request: dict[str, Any]) -> Attempt:
        """Deliver the request once (same key, same requestTime)."""

    async def query(self, row: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
        """The provider's signed view: was the call applied?"""

    async def settle(
        self, row: dict[str, Any], applied: bool, detail: dict[str, Any], *, inline: bool
    ) -> None:
        """Commit the decision (one journal commit, ending the row with ``finish_call``).
        ``inline``: the customer is still at the kiosk (queue the receipt)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential, bounded, with jitter (±``jitter`` of the delay)."""

    base_s: float = 2.0
    cap_s: float = 60.0
    jitter: float = 0.25

    def delay_s(self, attempts: int, rng: random.Random) -> float:
        raw = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return float(raw * (1 + rng.uniform(-self.jitter, self.jitter)))


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Forwarder:
    """Delivers the outbox. :meth:`run` is the background loop; a journey whose customer waits
    holds its row (:meth:`hold`) and calls :meth:`step` itself."""

    def __init__(
        self,
        journal: AsyncJournal,
        ops: dict[str, Operation],
        *,
        clock_ms: Callable[[], int] = wall_ms,
        backoff: Backoff | None = None,
        parallel: int = 8,
        seed: int | None = None,
        ahead_ms: Callable[[str], int] | None = None,
    ) -> None:
        """``ahead_ms(provider)``: how far our clock is measured ahead of the provider's (0 if
        behind or unknown); a request is void only once the provider's clock says so."""
        self.j = journal
        self.ops = ops
        self.clock_ms = clock_ms
        self.ahead_ms = ahead_ms or (lambda provider: 0)
        self.backoff = backoff or Backoff()
        self._rng = random.Random(seed)
        self._locks: dict[int, asyncio.Lock] = {}
        self._serving: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._parallel = asyncio.Semaphore(parallel)
        self.settled = 0

    def wake(self) -> None:
        self._wake.set()

    @contextlib.asynccontextmanager
    async def hold(self, row_id: int) -> AsyncIterator[None]:
        """Keep the background loop off ``row_id`` (a journey is delivering it)."""
        lock = self._locks.setdefault(row_id, asyncio.Lock())
        async with lock:
            yield

    @contextlib.contextmanager
    def serving(self, tx_id: int) -> Iterator[None]:
        """Keep the background loop off every row of ``tx_id`` while its customer waits:
        entered *before* the row is committed, so that no background delivery can slip in
        between the commit and :meth:`hold` (it would settle as if the customer had left)."""
        self._serving[tx_id] = self._serving.get(tx_id, 0) + 1
        try:
            yield
        finally:
            self._serving[tx_id] -= 1
            if not self._serving[tx_id]:
                del self._serving[tx_id]

    async def step(self, row_id: int, *, inline: bool = False) -> str:
        """One delivery (or state query) of a row the caller holds. Returns the row's status
        afterwards: ``done``, ``failed`` or ``queued``."""
        j = self.j
        row = await j.call(j.sync.outbox_row, row_id)
        if row["status"] != "queued":
            return str(row["status"])
        op = self.ops.get(row["op"])
        if op is None:
            log.error("outbox %s: no operation %r in this build; left queued", row_id, row["op"])
            return "queued"
        now = self.provider_now_ms(row)
        request = await j.call(j.sync.unseal, row)
        if request is not None and now < row["void_after_ms"]:
            attempt = await op.send(row, request)
            if attempt.delivery is Delivery.DONE:
                await op.settle(row, True, attempt.detail, inline=inline)
                self.settled += 1
                return "done"
            if attempt.delivery is Delivery.REFUSED and attempt.detail.get("final") is True:
                # a signed refusal that says for good how things stand (PayBy's ORDER_PAID
                # to a cancel): no query needed, whatever went before
                await op.settle(row, False, attempt.detail, inline=inline)
                self.settled += 1
                return str((await j.call(j.sync.outbox_row, row_id))["status"])
            row = await j.call(
                j.sync.call_attempt,
                row_id,
                delivery=str(attempt.delivery),
                error=attempt.error,
                in_doubt=attempt.delivery is Delivery.IN_DOUBT,
                # from the end of this delivery: a send that timed out took its time already
                next_at_ms=self.clock_ms() + self._delay_ms(row["attempts"] + 1),
            )
            if attempt.delivery is Delivery.NOT_SENT:
                return "queued"
            verdict, detail = await op.query(row)
            detail = {**attempt.detail, **detail}
            if attempt.delivery is Delivery.IN_DOUBT and verdict is not Verdict.APPLIED:
                return "queued"  # the same request goes again when due; only "paid" settles now
        else:
            verdict, detail = await op.query(row)
        void = now >= row["void_after_ms"]
        if verdict is Verdict.APPLIED:
            await op.settle(row, True, detail, inline=inline)
        elif verdict is Verdict.NOT_APPLIED and (
            void or detail.get("final") is True or not row["result"].get("in_doubt")
        ):
            await op.settle(row, False, {**detail, "void": void}, inline=inline)
        else:
            # Not applied *yet*, and a delivery that may still land is in doubt: wait (until
            # void_after at the latest); or no signed answer: ask again later.
            wait = self._delay_ms(row["attempts"] + 1)
            if request is None and not void and verdict is Verdict.NOT_APPLIED:
                wait = max(wait, row["void_after_ms"] - now)
            await j.call(
                j.sync.call_attempt,
                row_id,
                delivery="query",
                error=str(detail.get("error") or verdict),
                in_doubt=False,
                next_at_ms=self.clock_ms() + wait,
            )
            return "queued"
        self.settled += 1
        return str((await j.call(j.sync.outbox_row, row_id))["status"])

    def provider_now_ms(self, row: dict[str, Any]) -> int:
        """Now as the row's provider sees it, never later than our clock: a kiosk whose clock
        runs ahead (a bad NTP step) must not settle a request as void that the provider may
        still apply (the op's name starts with its provider: ``payby.pay``)."""
        return self.clock_ms() - max(0, self.ahead_ms(str(row["op"]).split(".")[0]))

    def _delay_ms(self, attempts: int) -> int:
        return int(self.backoff.delay_s(attempts, self._rng) * 1000)

    async def run(self) -> None:
        """Deliver due rows for ever: one row per transaction at a time, oldest first; a row
        that raises is logged and tried again later, the loop never dies."""
        j = self.j
        while True:
            self._wake.clear()  # a wake() from here on cuts the next wait short
            now = self.clock_ms()
            due = await j.call(j.sync.outbox_due, now, limit=256)
            firsts: dict[int, dict[str, Any]] = {}
            for row in due:
                firsts.setdefault(row["tx_id"], row)
            await asyncio.gather(*(self._background(row) for row in firsts.values()))
            if len(due) >= 256:
                continue
            nxt = await j.call(j.sync.next_due_ms)
            wait = 30.0 if nxt is None else min(30.0, max(0.05, (nxt - self.clock_ms()) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _background(self, row: dict[str, Any]) -> None:
        if row["tx_id"] in self._serving:
            return  # its customer is waiting: the journey delivers it
        lock = self._locks.setdefault(row["id"], asyncio.Lock())
        if lock.locked():
            return  # a journey holds it
        async with self._parallel, lock:
            try:
                await self.step(row["id"])
            except Exception as exc:  # a bug must not stop the forwarding of the others
                log.exception("outbox %s: delivery failed", row["id"])
                await self.j.call(
                    self.j.sync.call_attempt,
                    row["id"],
                    delivery="error",
                    error=f"{type(exc).__name__}: {exc}",
                    in_doubt=True,
                    next_at_ms=self.clock_ms() + self._delay_ms(row["attempts"] + 1),
                )
        if not lock.locked():
            self._locks.pop(row["id"], None)


__all__ = ["Attempt", "Backoff", "Delivery", "Forwarder", "Operation", "Verdict", "classify"]
