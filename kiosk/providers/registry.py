"""Every provider this build knows, and what each declares. The config reader, the daemon,
money and the journal ask here; they name no provider themselves.

PayBy still has its section in :mod:`kiosk.config` (it moves here next, behaviour unchanged);
Paysera is the first provider declared this way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiosk.config import Table
from kiosk.money import Currency


@dataclass(frozen=True)
class Section:
    """A provider's ``[name]`` table in the config and in the secrets file."""

    read: Callable[[Table, Currency], Any]
    read_secrets: Callable[[Table], Any]


def sections() -> dict[str, Section]:
    from kiosk.providers.paysera import config as paysera

    return {"paysera": Section(paysera.read, paysera.read_secrets)}
