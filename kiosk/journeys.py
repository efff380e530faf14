"""Every journey the kiosk runs, as an explicit state machine (``../shared/reference/journeys.md``).

A transaction's state is a row in the journal; :meth:`Journey.check` refuses any transition
not drawn here, so a bug cannot skip a step. Each non-terminal state names what recovery does
when the kiosk restarts and finds a transaction there (``recovery``): that is the contract the
journal's intent/outcome records must satisfy. Terminal states:

- ``completed``: the money moved as the customer wanted;
- ``refused`` / ``cancelled`` / ``void``: nothing moved;
- ``owed``: the customer gave money (or was debited) and did not get what they came for: a
  liability row exists, a receipt says so, the fleet is told;
- ``unknown``: a payout whose outcome neither the device nor the provider can settle: a
  technician counts the cash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

TERMINAL: Final = frozenset({"completed", "refused", "cancelled", "void", "owed", "unknown"})


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    provider: str
    direction: str  # "in" (cash-in), "out" (cash-out), "none" (refund)
    initial: str
    edges: dict[str, frozenset[str]]
    recovery: dict[str, str]
    legacy: frozenset[str] = frozenset()
    """States no transition leads to any more, kept so that a journal written by an older
    build still recovers (each has edges out and a recovery rule)."""

    @property
    def states(self) -> frozenset[str]:
        out = set(self.edges)
        for targets in self.edges.values():
            out |= targets
        return frozenset(out)

    def can(self, src: str, dst: str) -> bool:
        return dst in self.edges.get(src, frozenset())

    def check(self, src: str, dst: str) -> None:
        if not self.can(src, dst):
            raise ValueError(f"{self.name}: no transition {src} -> {dst}")


def define(
    name: str,
    provider: str,
    direction: str,
    initial: str,
    edges: dict[str, str],
    recovery: dict[str, str],
    legacy: str = "",
) -> Journey:
    return Journey(
        name,
        provider,
        direction,
        initial,
        {k: frozenset(v.split()) for k, v in edges.items()},
        recovery,
        frozenset(legacy.split()),
    )


LOCAL_CASHOUT = define(
    "local_cashout",
    "none",
    "out",
    "checking",
    {
        "checking": "dispensing refused",
        "dispensing": "completed owed unknown",
    },
    {
        "checking": "nothing moved: refused",
        "dispensing": "the recycler's levels (before: in the intent) settle what was paid; "
        "the rest is owed; levels unreadable ⇒ unknown (technician)",
    },
)


CASH_COLLECTION = define(
    "cash_collection",
    "none",
    "none",
    "counting",
    {"counting": "completed cancelled"},
    {"counting": "nothing was recorded (a collection is one commit): cancelled"},
)
"""A technician empties the cashbox: the count since the last collection, its receipt."""

CASH_REFILL = define(
    "cash_refill",
    "none",
    "none",
    "accepting",
    {"accepting": "completed"},
    {"accepting": "the notes stacked are the technician's float: completed with what went in"},
)
"""A technician loads the recycler through the validator; the notes are nobody's credit (no
customer's money: direction ``none``, never owed)."""

LOCAL: Final = {j.name: j for j in (LOCAL_CASHOUT, CASH_COLLECTION, CASH_REFILL)}
"""The journeys that belong to no provider (the technician's)."""


class _Journeys(Mapping[str, Journey]):
    """Every journey of this build: the technician's (:data:`LOCAL`) and each registered
    provider's journey modules' ``JOURNEY`` (read on first use, so that this module imports no
    provider)."""

    def __init__(self) -> None:
        self._all: dict[str, Journey] | None = None

    def _load(self) -> dict[str, Journey]:
        if self._all is None:
            from kiosk.providers.registry import journey_modules

            found = dict(LOCAL)
            for module in journey_modules():
                found[module.JOURNEY.name] = module.JOURNEY
            self._all = found
        return self._all

    def __getitem__(self, name: str) -> Journey:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


JOURNEYS: Final[Mapping[str, Journey]] = _Journeys()
