"""The sandbox kit: what every provider sandbox builds on (requests, responses, hooks, faults,
the sandbox clock). Provider sandboxes import this module, never :mod:`.server`, which imports
them through the provider registry: no import circle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

MAX_DELAY_S: Final = 60


# --- requests and responses --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request; ``path`` is relative to the provider prefix or hook root."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    query: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP reply. ``drop``: close the connection without replying (after the effect)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    delay_ms: int = 0

    @classmethod
    def json(cls, obj: object, status: int = 200) -> Response:
        """Hook replies: stdlib JSON, Decimals written as strings."""
        return cls(status, json.dumps(obj, default=_hook_default).encode())

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), content_type="text/plain; charset=utf-8")


def _hook_default(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot write {type(value).__name__}")


class HookError(ValueError):
    """A hook payload is wrong; the reply is 400 ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


def hook_json(request: Request) -> dict[str, object]:
    """The hook request's JSON object (numbers with a fraction as Decimal)."""
    try:
        doc = json.loads(request.body or b"{}", parse_float=Decimal)
    except ValueError as exc:
        raise HookError("body is not JSON") from exc
    if not isinstance(doc, dict):
        raise HookError("body must be a JSON object")
    return doc


class Provider(Protocol):
    """What the server needs of a provider sandbox."""

    name: str  # hooks under /_sandbox/<name>/
    prefix: str  # real API path prefix, e.g. "/sgs/api"

    def handle(self, request: Request) -> Response: ...

    def handle_hook(self, request: Request) -> Response: ...

    def close(self) -> None: ...


# --- sandbox time ------------------------------------------------------------------------------


class SandboxClock:
    """Wall clock plus an offset moved forward by the clock hook; kept in ``clock.json``."""

    def __init__(self, state_dir: Path, wall_ms: Callable[[], int] | None = None) -> None:
        self._path = state_dir / "clock.json"
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._offset_ms = 0
        if self._path.exists():
            saved = json.loads(self._path.read_text())
            self._offset_ms = int(saved.get("offset_ms", 0))

    def now_ms(self) -> int:
        """Sandbox time in epoch milliseconds."""
        with self._lock:
            return self._wall_ms() + self._offset_ms

    def advance(self, seconds: Decimal | int) -> int:
        """Move time forward by ``seconds`` (≥ 0); returns the new ``now_ms``."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset_ms += int(Decimal(seconds) * 1000)
            self._path.write_text(json.dumps({"offset_ms": self._offset_ms}))
        return self.now_ms()


# --- fault injection ---------------------------------------------------------------------------


class FaultMode(StrEnum):
    DROP_RESPONSE = "drop_response"  # the operation takes effect, the reply never comes
    ERROR_500 = "error_500"  # HTTP 500, no effect
    DELAY = "delay"  # the operation takes effect, the reply comes delay_s later
    HOLD = "hold"  # the request is held delay_s (a slow network), then takes effect and replies
    HTTP_429 = "http_429"  # the operation takes effect, the reply is an HTTP 429 (a gateway)
    UNSIGNED_402 = "unsigned_402"  # the operation takes effect; the reply: unsigned head 402
    UNSIGNED_404 = "unsigned_404"  # the operation takes effect; the reply: unsigned head 404


@dataclass(frozen=True, slots=True)
class Fault:
    op: str
    mode: FaultMode
    delay_ms: int = 2000

    def apply(self, response: Response) -> Response:
        """The reply as this fault shapes it (ERROR_500 is handled before the operation)."""
        if self.mode is FaultMode.DROP_RESPONSE:
            return replace(response, drop=True)
        if self.mode is FaultMode.DELAY:
            return replace(response, delay_ms=self.delay_ms)
        if self.mode is FaultMode.HTTP_429:
            return Response.text("Too Many Requests", 429)
        if self.mode in (FaultMode.UNSIGNED_402, FaultMode.UNSIGNED_404):
            code = "402" if self.mode is FaultMode.UNSIGNED_402 else "404"
            head = {"applyStatus": "FAIL", "code": code, "msg": "unsigned error head"}
            return Response.json({"head": head})  # no sign header
        return response


class FaultPlan:
    """Faults armed per operation name, each for ``count`` calls; thread-safe."""

    def __init__(self, ops: Sequence[str]) -> None:
        self._ops = frozenset(ops)
        self._lock = threading.Lock()
        self._armed: dict[str, list[Fault]] = {}

    def arm(self, op: str, mode: FaultMode, count: int = 1, delay_ms: int = 2000) -> None:
        if op not in self._ops:
            raise HookError(f"unknown op {op!r}; one of {', '.join(sorted(self._ops))}")
        if not 1 <= count <= 1000 or not 0 <= delay_ms <= MAX_DELAY_S * 1000:
            raise HookError(f"count must be 1..1000 and delay_s 0..{MAX_DELAY_S}")
        with self._lock:
            self._armed.setdefault(op, []).extend([Fault(op, mode, delay_ms)] * count)

    def arm_from_hook(self, doc: dict[str, object]) -> dict[str, object]:
        """``{"op", "mode", "count"?: 1, "delay_s"?: 2}`` from the faults hook."""
        op, mode, count = doc.get("op"), doc.get("mode"), doc.get("count", 1)
        delay = doc.get("delay_s", 2)
        if not isinstance(op, str) or mode not in set(FaultMode) or type(count) is not int:
            raise HookError(f"expected op, mode in {[m.value for m in FaultMode]}, int count")
        if not isinstance(delay, (int, Decimal)) or isinstance(delay, bool):
            raise HookError("delay_s must be a number of seconds")
        self.arm(op, FaultMode(str(mode)), count, int(Decimal(delay) * 1000))
        return {"op": op, "mode": str(mode), "armed": self.pending(op)}

    def take(self, op: str) -> Fault | None:
        with self._lock:
            queue = self._armed.get(op)
            return queue.pop(0) if queue else None

    def pending(self, op: str) -> int:
        with self._lock:
            return len(self._armed.get(op, []))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()
