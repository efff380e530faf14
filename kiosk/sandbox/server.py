"""Loopback HTTP server hosting the provider sandboxes, plus test hooks.

Routing (one :class:`Provider` per payment provider, each under its real path prefix)::

    /sgs/api/...              PayBy            (kiosk.sandbox.payby)
    /rest/v1/...              Paysera          (kiosk.sandbox.paysera.api)
    /_sandbox/clock           POST {"advance_s": N} moves sandbox time forward; GET reads it
    /_sandbox/<name>/...      the provider's own hooks (JSON in, JSON out, no signatures)

A provider sandbox is any object with ``name``, ``prefix``, ``handle(request)``,
``handle_hook(request)`` and ``close()`` (:class:`kiosk.sandbox.kit.Provider`), declared by its
provider's plug-in (``Provider.sandbox`` in :mod:`kiosk.providers.registry`).

The server binds loopback only, reads at most 1 MiB per request, and drops idle keep-alive
connections after 30 s. Faults armed through a provider's hooks become a :class:`Response`
with ``drop`` (close without a reply) or ``delay_ms`` (sleep before replying), which the
server honours after the operation took effect.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlsplit

from kiosk.errors import ListenError, UsageError
from kiosk.sandbox.kit import (
    MAX_DELAY_S,
    Fault,
    FaultMode,
    FaultPlan,
    HookError,
    Provider,
    Request,
    Response,
    SandboxClock,
    hook_json,
)

if TYPE_CHECKING:
    from kiosk.sandbox.payby import PayBySandbox
    from kiosk.sandbox.paysera import PayseraSandbox

__all__ = [
    "Fault",
    "FaultMode",
    "FaultPlan",
    "HookError",
    "Provider",
    "Request",
    "Response",
    "Sandbox",
    "SandboxApp",
    "SandboxClock",
    "hook_json",
    "serve_forever",
    "start_sandbox",
]

log = logging.getLogger("kiosk.sandbox")

MAX_BODY: Final = 1 << 20
IDLE_TIMEOUT_S: Final = 30.0


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

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header on the sandbox's clock (moved by the clock hook), as a provider's
        servers would show their own time."""
        import email.utils

        return email.utils.formatdate(self.server.app.clock.now_ms() / 1000, usegmt=True)


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
    raise UsageError(
        f"host {host!r}: the sandbox binds loopback only (127.0.0.1, ::1 or localhost)"
    )


# --- start-up: each refusal a message saying what to change (kiosk.errors), never a traceback ---


def _port(port: int) -> int:
    if isinstance(port, bool) or not 0 <= port <= 65535:
        raise UsageError(f"port {port}: expected 0-65535 (0: any free port)")
    return port


def _state_dir(state_dir: Path) -> None:
    """Make ``state_dir`` and prove a file can be written there (the providers' ledgers and
    keys are), or refuse naming it."""
    from kiosk.paths import writable_dir

    writable_dir("sandbox state directory", state_dir, "the sandbox's ledgers and keys")


def _listen(address: tuple[str, int], app: SandboxApp) -> _Server:
    try:
        return _Server(address, app)
    except OSError as exc:
        host, port = address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = {
            errno.EADDRINUSE: "the port is in use (another kiosk sandbox?): stop that one, or"
            " choose another port",
            errno.EACCES: "ports below 1024 need privileges: choose another port",
            errno.EADDRNOTAVAIL: "this machine has no such address: use 127.0.0.1",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise ListenError(f"the sandbox cannot listen on {shown}: {why}") from exc


def default_providers(state_dir: Path, clock: SandboxClock) -> list[Provider]:
    """Every registered provider's sandbox (``Provider.sandbox``), each keeping its state
    under ``state_dir``."""
    from kiosk.providers.registry import providers

    return [p.resolve("sandbox")(state_dir, clock) for p in providers().values() if p.sandbox]


class Sandbox:
    """A running sandbox: ``url`` (``http://127.0.0.1:<port>``), ``payby``, ``clock``."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        """Raises :class:`~kiosk.errors.UsageError` for a host that is not loopback, a port out
        of range or a ``state_dir`` that is a file or not writable, and
        :class:`~kiosk.errors.ListenError` when the address cannot be bound (port in use)."""
        address = (_loopback(host), _port(port))  # refused before anything is written
        _state_dir(state_dir)
        self.clock = SandboxClock(state_dir)
        self.app = SandboxApp(self.clock, default_providers(state_dir, self.clock))
        try:
            self._server = _listen(address, self.app)
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
