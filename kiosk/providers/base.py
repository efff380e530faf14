"""What a provider plug-in declares (:class:`Provider`), and the contract of a journey module.

A provider is one package under ``kiosk/providers/<name>/`` whose ``__init__`` exports
``PROVIDER``, one sandbox package under ``kiosk/sandbox/<name>/``, one journey module per
journey under ``kiosk/flows/``, and one line in :mod:`kiosk.providers.registry`. Everything
else (the daemon, the config reader, money, the journal) asks the registry.

Names are ``"module:attribute"`` strings, imported on first use: a kiosk that does not use a
provider never imports its client, and importing the registry costs nothing at start-up.

A **journey module** (``kiosk.flows.<journey>``) exports::

    JOURNEY: Journey                    the state machine (kiosk.journeys)
    STARTS: frozenset[str]              the routed request kinds that start it
    LOOK: Look                          how its receipts name it
    async def run(ctx, request) -> Tx   the journey, with the customer at the kiosk
    async def recover(ctx, tx) -> Tx    local decisions at start-up (no provider call)
    def operations(ctx) -> list[Operation]   its outbox operations (kiosk.outbox)
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

    from kiosk.config import Config, Secrets, Table
    from kiosk.money import Currency, Money


@dataclass(frozen=True, slots=True)
class Section:
    """A provider's ``[name]`` table in the config and in the secrets file."""

    read: Callable[[Table, Currency], Any]
    read_secrets: Callable[[Table], Any]
    local_check: Callable[[Config, Secrets], None] | None = None
    """Checks what the section names on this machine (key files, secrets present); raises
    ConfigError. ``kiosk config check`` runs it; it calls nobody."""


@dataclass(frozen=True, slots=True)
class Connection:
    """A provider client and the HTTP client it owns (closed by :meth:`aclose`)."""

    http: httpx.AsyncClient
    client: Any

    async def aclose(self) -> None:
        await self.http.aclose()


class Connect(Protocol):
    """Builds a provider's client (no I/O). ``on_reply(got_reply)`` after every call;
    ``on_clock(skew_s, refused)`` when the provider's time can be read from a reply or it
    refused ours (a provider that cannot tell ignores it)."""

    def __call__(
        self,
        cfg: Config,
        secrets: Secrets,
        on_reply: Callable[[bool], None],
        on_clock: Callable[[float | None, bool], None] | None = None,
    ) -> Connection: ...


@dataclass(frozen=True, slots=True)
class Envelope:
    """The generic part of a ``kiosk:<action>?...`` envelope (the router checked it)."""

    action: str
    """``cashout`` or ``cashin``: the provider refuses an action it has no journey for."""
    amount: Money | None
    """The amount the app chose (a positive amount of its currency); ``None``: the kiosk
    asks (``[cashout] presets``), or the customer's notes decide (cash-in)."""
    fields: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    """The config table, the secrets table, the sandbox prefix and the journal's provider."""
    title: str
    section: str
    """``"module:attr"`` of a :class:`Section`."""
    connect: str
    """``"module:attr"``: a :class:`Connect` that builds the client from the config."""
    check: str
    """``"module:attr"``: ``async (cfg, secrets) -> (ok, message)``: ``kiosk provider check``."""
    journeys: tuple[str, ...]
    """The journey modules (``kiosk.flows.<name>``)."""
    codes: str = ""
    """``"module:attr"``: ``(text, cfg) -> request | None``: a code only this provider reads."""
    envelope: str = ""
    """``"module:attr"``: ``(Envelope) -> request``: its ``kiosk:`` envelopes (raises
    PayloadError for a field it refuses)."""
    probe: str = ""
    """``"module:attr"``: ``async (client, cfg) -> None``: a cheap read that tells an idle
    kiosk whether the provider answers again."""
    reconcile: str = ""
    """``"module:attr"``: ``async (client, cfg, tx) -> "APPLIED" | "NOT_APPLIED:<s>" |
    "UNREACHABLE:<why>"``: the provider's own view of a transaction (``kiosk reconcile``)."""
    sandbox: str = ""
    """``"module:attr"``: the sandbox class (``(state_dir, clock) -> sandbox``)."""

    def resolve(self, what: str) -> Any:
        name = getattr(self, what)
        if not name:
            return None
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)

    def configured(self, cfg: Config) -> bool:
        return self.name in cfg.providers


def load(name: str) -> Any:
    """``"module:attr"`` → the object."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["Awaitable", "Connection", "Envelope", "Provider", "Section", "load"]
