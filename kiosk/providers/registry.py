"""Every provider this build knows: one line each. The config reader, the daemon, the router,
the outbox and the journal ask here; they name no provider themselves (:mod:`.base`)."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from kiosk.errors import ProviderAuthFailed
from kiosk.providers.base import Connection, Provider, Section

if TYPE_CHECKING:
    from kiosk.config import Config, Secrets

NAMES: tuple[str, ...] = (
    "payby",
    "paysera",
    "rapyd",
    "cashii",
)


@cache
def providers() -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    for name in NAMES:
        provider: Provider = importlib.import_module(f"kiosk.providers.{name}").PROVIDER
        assert provider.name == name, f"kiosk.providers.{name} declares {provider.name}"
        out[name] = provider
    return out


def get(name: str) -> Provider | None:
    return providers().get(name)


def sections() -> dict[str, Section]:
    return {name: p.resolve("section") for name, p in providers().items()}


@cache
def journey_modules() -> tuple[ModuleType, ...]:
    return tuple(
        importlib.import_module(module) for p in providers().values() for module in p.journeys
    )


def journey_module(journey: str) -> ModuleType | None:
    """The module that runs ``journey`` (by its ``JOURNEY.name``)."""
    for module in journey_modules():
        if module.JOURNEY.name == journey:
            return module
    return None


def starter(kind: str) -> ModuleType | None:
    """The journey module a routed request of ``kind`` starts."""
    for module in journey_modules():
        if kind in module.STARTS:
            return module
    return None


def connect_all(
    cfg: Config,
    secrets: Secrets,
    recorder: Callable[[str], Callable[[bool], None]] | None = None,
    clock_recorder: Callable[[str], Callable[[float | None, bool], None]] | None = None,
    auth_recorder: Callable[[str], Callable[[str], object]] | None = None,
) -> tuple[dict[str, Any], list[Connection]]:
    """A client for every provider configured on this kiosk, by name, and the connections to
    close. ``recorder(name)``: the client's ``on_reply`` (``Reachability.recorder``);
    ``clock_recorder(name)``: its ``on_clock`` (``Reachability.clock_recorder``);
    ``auth_recorder(name)``: told what the provider said each time one of the client's calls
    raises :class:`~kiosk.errors.ProviderAuthFailed` (the client is then :class:`Watched`)."""
    clients: dict[str, Any] = {}
    connections: list[Connection] = []
    for name, provider in providers().items():
        if provider.configured(cfg):
            on_reply = recorder(name) if recorder is not None else (lambda ok: None)
            on_clock = clock_recorder(name) if clock_recorder is not None else None
            conn = provider.resolve("connect")(cfg, secrets, on_reply, on_clock)  # builds only
            connections.append(conn)
            clients[name] = (
                conn.client if auth_recorder is None else Watched(conn.client, auth_recorder(name))
            )
    return clients, connections


class Watched:
    """A provider client whose calls report a refusal of the kiosk's credentials: any of its
    coroutine methods that raises :class:`~kiosk.errors.ProviderAuthFailed` first tells
    ``on_auth`` what the provider said (the exception goes on, unchanged). One place for all
    four providers, the journeys, the outbox and the probes alike."""

    __slots__ = ("_client", "_on_auth")

    def __init__(self, client: Any, on_auth: Callable[[str], object]) -> None:
        self._client = client
        self._on_auth = on_auth

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attr(*args, **kwargs)
            except ProviderAuthFailed as exc:
                self._on_auth(str(exc))
                raise

        return call
