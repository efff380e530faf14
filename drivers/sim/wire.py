"""Wire-level validator simulators behind the control channel's vocabulary.

The control socket (``drivers.sim.control``) speaks ``insert`` / ``insert_fake`` / ``fault`` /
``clear_fault`` / ``power``; these adapters turn that into each protocol simulator's own
scripting, so the demo, the tests and a technician drive an ID-003 or eSSP simulator exactly
as they drive the interface-level one. The driver under test sees the result only on the wire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from drivers.errors import CommandRefused
from drivers.validator.base import FaultKind, ValidatorEvent


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(str(_jsonable(v)) for v in value)
    if hasattr(value, "name") and hasattr(value, "value"):  # an enum member
        return value.name.lower()
    return value


class Id003Script:
    """Scripts an :class:`~drivers.id003.sim.Id003Simulator`."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def insert(self, value: int) -> ValidatorEvent | None:
        if not self.sim.insert(value):
            raise CommandRefused(f"the acceptor does not take a note of {value} now")
        return None

    def insert_fake(self) -> ValidatorEvent | None:
        self.sim.insert_fake()
        return None

    def fault(self, kind: FaultKind, detail: str = "") -> ValidatorEvent | None:
        actions = {
            FaultKind.JAM: self.sim.jam,
            FaultKind.FRAUD: self.sim.fraud,
            FaultKind.CASHBOX_FULL: self.sim.stacker_full,
            FaultKind.CASHBOX_REMOVED: self.sim.stacker_open,
            FaultKind.FAILURE: self.sim.failure,
            FaultKind.DISCONNECTED: self.sim.power_cut,
        }
        actions[kind]()
        return None

    def clear_fault(self) -> ValidatorEvent | None:
        self.sim.clear_fault()
        if not self.sim.powered:
            self.sim.power_on()
        return None

    def empty_cashbox(self) -> dict[int, int]:
        return dict(self.sim.empty_cashbox())

    def power_cut(self) -> None:
        self.sim.power_cut()

    def power_on(self) -> None:
        self.sim.power_on()

    def state(self) -> dict[str, Any]:
        state = dataclasses.asdict(self.sim.state())
        return {"protocol": "id003", **_jsonable(state)}


class EsspScript:
    """Scripts an :class:`~drivers.essp.sim.EsspSimulator` (NV200 / SMART Payout)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def insert(self, value: int) -> ValidatorEvent | None:
        if not self.sim.insert(value):
            raise CommandRefused(f"the validator does not take a note of {value} now")
        return None

    def insert_fake(self) -> ValidatorEvent | None:
        self.sim.insert_fake()
        return None

    def fault(self, kind: FaultKind, detail: str = "") -> ValidatorEvent | None:
        first_channel = next(iter(self.sim.channels))
        actions = {
            FaultKind.JAM: self.sim.jam,
            FaultKind.FRAUD: lambda: self.sim.fraud(first_channel),
            FaultKind.CASHBOX_FULL: self.sim.cashbox_full,
            FaultKind.CASHBOX_REMOVED: self.sim.cashbox_removed,
            FaultKind.FAILURE: self.sim.note_path_open,
            FaultKind.DISCONNECTED: self.sim.power_cut,
        }
        actions[kind]()
        return None

    def clear_fault(self) -> ValidatorEvent | None:
        self.sim.cashbox_replaced(emptied=False)  # E4 only if the cashbox was out
        self.sim.clear_faults()
        if not self.sim.state().powered:
            self.sim.power_on()
        return None

    def empty_cashbox(self) -> dict[int, int]:
        held = dict(self.sim.state().cashbox)
        self.sim.cashbox_replaced(emptied=True)
        return held

    def power_cut(self) -> None:
        self.sim.power_cut()

    def power_on(self) -> None:
        self.sim.power_on()

    def payout_stop_after(self, notes: int) -> None:
        self.sim.payout_stop_after(notes)

    def state(self) -> dict[str, Any]:
        state = dataclasses.asdict(self.sim.state())
        return {"protocol": "essp", **_jsonable(state)}


class Unscripted:
    """A validator whose simulator runs in another process: script it there."""

    def _refuse(self) -> CommandRefused:
        return CommandRefused(
            "the validator is not simulated in this process: use the "
            "control socket of `kiosk sim validator`"
        )

    def insert(self, value: int) -> ValidatorEvent | None:
        raise self._refuse()

    def insert_fake(self) -> ValidatorEvent | None:
        raise self._refuse()

    def fault(self, kind: FaultKind, detail: str = "") -> ValidatorEvent | None:
        raise self._refuse()

    def clear_fault(self) -> ValidatorEvent | None:
        raise self._refuse()

    def empty_cashbox(self) -> dict[int, int]:
        raise self._refuse()

    def state(self) -> dict[str, Any]:
        return {"protocol": "external"}
