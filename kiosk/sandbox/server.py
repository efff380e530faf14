"""Loopback HTTP server hosting the provider sandboxes, plus test hooks.

Routing (one :class:`Provider` per payment provider, each under its real path prefix)::

    /sgs/api/...              PayBy            (kiosk.sandbox.payby)
    /rest/v1/..., /v1/pos/..., /api/v1/...     later: Paysera, Rapyd, Cashii
    /_sandbox/clock           POST {"advance_s": N} moves sandbox time forward; GET reads it
    /_sandbox/<name>/...      the provider's own hooks (JSON in, JSON out, no signatures)

A provider is any object with ``name``, ``prefix``, ``handle(request)``,
``handle_hook(request)`` and ``close()``; adding one is a line in :func:`default_providers`.

The server binds loopback only, reads at most 1 MiB per request, and drops idle keep-alive
connections after 30 s. Faults armed through a provider's hooks become a :class:`Response`
with ``drop`` (close without a reply) or ``delay_ms`` (sleep before replying), which the
server honours after the operation took effect.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from kiosk.sandbox.payby import PayBySandbox
    from kiosk.sandbox.paysera import PayseraSandbox

log = logging.getLogger("kiosk.sandbox")

MAX_BODY: Final = 1 << 20
IDLE_TIMEOUT_S: Final = 30.0
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


# --- routing -----------------------------------------------------------------------------------


class SandboxApp:
    """Routes requests to providers by prefix and hooks by provider name."""

    def __init__(self, clock: SandboxClock, providers: Sequence[Provider]) -> None:
        self.clock = clock
        self.providers = {p.name: p for p in providers}
        # longest prefix first, so "/v1/pos" wins over a shorter "/v1"
        self._by_prefix = sorted(providers, key=lambda p: len(p.prefix), reverse=True)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        try:
            if path == "/_sandbox/clock":
                return self._clock_hook(request)
            if path.startswith("/_sandbox/"):
                name, _, rest = path.removeprefix("/_sandbox/").partition("/")
                provider = self.providers.get(name)
                if provider is None:
                    return Response.json({"error": f"no sandbox provider {name!r}"}, 404)
                return provider.handle_hook(replace(request, path="/" + rest))
        except HookError as exc:
            return Response.json({"error": str(exc)}, exc.status)
        for provider in self._by_prefix:
            if path == provider.prefix or path.startswith(provider.prefix + "/"):
                return provider.handle(replace(request, path=path.removeprefix(provider.prefix)))
        return Response.text("not found", 404)

    def _clock_hook(self, request: Request) -> Response:
        if request.method == "POST":
            seconds = hook_json(request).get("advance_s")
            if not isinstance(seconds, (int, Decimal)) or isinstance(seconds, bool) or seconds < 0:
                raise HookError("advance_s must be a number of seconds ≥ 0")
            return Response.json({"now_ms": self.clock.advance(seconds)})
        return Response.json({"now_ms": self.clock.now_ms()})

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = IDLE_TIMEOUT_S
    server: _Server

    def _serve(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._reply(Response.text("chunked bodies are not accepted", 411), close=True)
            return
        length_text = self.headers.get("Content-Length") or "0"
        length = int(length_text) if length_text.isdigit() else -1
        if not 0 <= length <= MAX_BODY:
            self._reply(Response.text("bad or too large Content-Length", 413), close=True)
            return
        body = self.rfile.read(length)
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
            query=dict(parse_qsl(url.query)),
        )
        try:
            response = self.server.app.dispatch(request)
        except Exception:
            log.exception("sandbox: %s %s failed", self.command, url.path)
            response = Response.text("sandbox internal error", 500)
        if response.delay_ms:
            time.sleep(min(response.delay_ms, MAX_DELAY_S * 1000) / 1000)
        if response.drop:
            self.close_connection = True  # the effect happened; the client never hears of it
            return
        self._reply(response)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def _reply(self, response: Response, *, close: bool = False) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:  # the client gave up (timeout fault): nothing to tell it
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("sandbox: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        if ipaddress.ip_address(address[0]).version == 6:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("sandbox: connection from %s ended abnormally", client_address, exc_info=True)


def _loopback(host: str) -> str:
    address = "127.0.0.1" if host == "localhost" else host
    try:
        if ipaddress.ip_address(address).is_loopback:
            return address
    except ValueError:
        pass
    raise ValueError(f"the sandbox binds loopback only (127.0.0.1, ::1, localhost), not {host!r}")


def default_providers(state_dir: Path, clock: SandboxClock) -> list[Provider]:
    """Every provider sandbox, each keeping its state under ``state_dir``."""
    from kiosk.sandbox.payby import PayBySandbox  # imported here: they build on this module
    from kiosk.sandbox.paysera import PayseraSandbox

    return [PayBySandbox(state_dir, clock), PayseraSandbox(state_dir, clock)]


class Sandbox:
    """A running sandbox: ``url`` (``http://127.0.0.1:<port>``), ``payby``, ``clock``."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = SandboxClock(state_dir)
        self.app = SandboxApp(self.clock, default_providers(state_dir, self.clock))
        try:
            self._server = _Server((_loopback(host), port), self.app)
        except BaseException:
            self.app.close()
            raise
        bound_host, bound_port = str(self._server.server_address[0]), self._server.server_address[1]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self._thread: threading.Thread | None = None

    @property
    def payby(self) -> PayBySandbox:
        from kiosk.sandbox.payby import PayBySandbox

        provider = self.app.providers["payby"]
        assert isinstance(provider, PayBySandbox)
        return provider

    @property
    def paysera(self) -> PayseraSandbox:
        from kiosk.sandbox.paysera import PayseraSandbox

        provider = self.app.providers["paysera"]
        assert isinstance(provider, PayseraSandbox)
        return provider

    def start(self) -> Sandbox:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self.serve, name="kiosk-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve(self) -> None:
        """Serve from the calling thread until interrupted (^C); then call :meth:`close`."""
        self._server.serve_forever(poll_interval=0.05)  # seconds; bounds close() latency

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self.app.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_sandbox(state_dir: Path, host: str = "127.0.0.1", port: int = 0) -> Sandbox:
    """Start the sandbox in a daemon thread; use ``with`` or call ``.close()``."""
    return Sandbox(state_dir, host, port).start()


def serve_forever(
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[Sandbox], None] | None = None,
) -> None:
    """Run the sandbox in the foreground (``kiosk sandbox``) until interrupted.

    ``ready`` is called once the socket is bound, e.g. to print ``sandbox.url``.
    """
    sandbox = Sandbox(state_dir, host, port)
    try:
        if ready is not None:
            ready(sandbox)
        sandbox.serve()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.close()
