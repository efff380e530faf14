"""The local endpoints, on asyncio (no web framework): a minimal HTTP/1.1 server.

- ``GET /healthz``: ``200 ok`` (text) in service; ``503`` with
  ``{"status": "out_of_service", "reasons": [...]}`` otherwise (a load balancer, a watchdog);
- ``GET /heartbeat``: the latest heartbeat document (JSON);
- ``GET /metrics``: the Prometheus exposition.

Wiring (the daemon)::

    server = await serve(cfg.fleet.listen, cfg.fleet.port, health=..., heartbeat=...,
                         metrics=metrics.exposition)
    ...
    server.close(); await server.wait_closed()

One request per connection (``Connection: close``), GET and HEAD only. The request line and
headers must arrive within ``read_timeout`` seconds and ``max_head`` bytes; the body, if any,
is never read. Every answer is a status line with a short text or JSON body: 400 for a
malformed request, 404 for an unknown path, 405 for another method, 408 for a client that
stays silent, 431 for an oversized head, 500 (logged) when a provider callable fails, 503 when
too many connections are open. A client never gets a traceback and never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

MAX_HEAD: Final = 8 * 1024  # bytes of request line + headers
READ_TIMEOUT_S: Final = 5.0
WRITE_TIMEOUT_S: Final = 5.0
MAX_CONNECTIONS: Final = 16
LINGER_S: Final = 1.0  # how long an error's connection waits for the client to close
LINGER_BYTES: Final = 64 * 1024
TEXT: Final = "text/plain; charset=utf-8"
JSON: Final = "application/json"

_REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/(\d)\.(\d)")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t -~\x80-\xff]*")

Health = Callable[[], tuple[bool, list[str]]]
Heartbeat = Callable[[], dict[str, Any]]
Exposition = Callable[[], bytes]


class _Reply(Exception):
    """Ends a request early with ``status`` (a plain-text body)."""

    def __init__(self, status: HTTPStatus, text: str = "") -> None:
        super().__init__(text)
        self.status, self.text = status, text or status.phrase.lower()


async def serve(
    host: str,
    port: int,
    *,
    health: Health,
    heartbeat: Heartbeat,
    metrics: Exposition,
    read_timeout: float = READ_TIMEOUT_S,
    max_head: int = MAX_HEAD,
) -> asyncio.AbstractServer:
    """Listen on ``host``:``port`` only (0: any free port; read it from the server's
    sockets). ``health()`` → (in service, reasons in words); ``heartbeat()`` → the latest
    heartbeat document; ``metrics()`` → the exposition bytes. The callables run on the event
    loop and must not block."""
    handler = _Handler(health, heartbeat, metrics, read_timeout, max_head)
    return await asyncio.start_server(handler, host, port, limit=max_head + 2)


class _Handler:
    def __init__(
        self,
        health: Health,
        heartbeat: Heartbeat,
        metrics: Exposition,
        read_timeout: float,
        max_head: int,
    ) -> None:
        self.routes: dict[str, Callable[[], tuple[HTTPStatus, str, bytes]]] = {
            "/healthz": lambda: _health(health),
            "/heartbeat": lambda: (HTTPStatus.OK, JSON, _json(heartbeat())),
            "/metrics": lambda: (HTTPStatus.OK, CONTENT_TYPE_LATEST, metrics()),
        }
        self.read_timeout, self.max_head = read_timeout, max_head
        self.open = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            status, ctype, body, head_only = await self._answer(reader)
            await _send(writer, status, ctype, body, head_only)
            if status >= 400:
                await _linger(reader, writer)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("local endpoint: client went away: %s", exc)
        except Exception:  # a bug here must not stop the server: log it, keep listening
            log.exception("local endpoint: request failed")
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT_S)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[HTTPStatus, str, bytes, bool]:
        head_only = False
        try:
            if self.open > MAX_CONNECTIONS:
                raise _Reply(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections")
            method, path = await self._request(reader)
            head_only = method == "HEAD"
            route = self.routes.get(path)
            if route is None:
                raise _Reply(HTTPStatus.NOT_FOUND)
            try:
                status, ctype, body = route()
            except Exception:
                log.exception("local endpoint %s failed", path)
                raise _Reply(HTTPStatus.INTERNAL_SERVER_ERROR) from None
        except _Reply as reply:
            status, ctype, body = reply.status, TEXT, reply.text.encode() + b"\n"
        return status, ctype, body, head_only

    async def _request(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        """The method and path of a well-formed GET or HEAD; raises :class:`_Reply`."""
        try:
            async with asyncio.timeout(self.read_timeout):
                lines = await _read_head(reader, self.max_head)
        except TimeoutError:
            raise _Reply(HTTPStatus.REQUEST_TIMEOUT) from None
        text = [line.decode("latin-1") for line in lines]  # any byte decodes: checked below
        match = _REQUEST_LINE.fullmatch(text[0]) if text else None
        if match is None or match[3] != "1" or any(not _HEADER.fullmatch(h) for h in text[1:]):
            raise _Reply(HTTPStatus.BAD_REQUEST)
        method, target = match[1], match[2]
        if method not in ("GET", "HEAD"):
            raise _Reply(HTTPStatus.METHOD_NOT_ALLOWED)
        if not target.startswith("/"):
            raise _Reply(HTTPStatus.BAD_REQUEST)
        return method, urlsplit(target).path


async def _read_head(reader: asyncio.StreamReader, max_head: int) -> list[bytes]:
    """The request line and header lines (without line ends), up to the empty line."""
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _Reply(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE) from None
        except asyncio.IncompleteReadError:
            raise _Reply(HTTPStatus.BAD_REQUEST, "incomplete request") from None
        size += len(line)
        if size > max_head:
            raise _Reply(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        line = line.rstrip(b"\r\n")
        if not line:
            if not lines:
                continue  # RFC 9112 2.2: ignore empty lines before the request line
            return lines
        lines.append(line)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After an error the request may be partly unread: closing now would reset the
    connection and could lose the answer at the client. Half-close, then discard what the
    client still sends (up to ``LINGER_BYTES``, ``LINGER_S``) until it closes its side."""
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(LINGER_S):
            left = LINGER_BYTES
            while left > 0 and (chunk := await reader.read(min(left, 4096))):
                left -= len(chunk)


def _health(health: Health) -> tuple[HTTPStatus, str, bytes]:
    ok, reasons = health()
    if ok:
        return HTTPStatus.OK, TEXT, b"ok\n"
    doc = {"status": "out_of_service", "reasons": list(reasons)}
    return HTTPStatus.SERVICE_UNAVAILABLE, JSON, _json(doc)


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


async def _send(
    writer: asyncio.StreamWriter, status: HTTPStatus, ctype: str, body: bytes, head_only: bool
) -> None:
    headers = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {ctype}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if status == HTTPStatus.METHOD_NOT_ALLOWED:
        headers.append("Allow: GET, HEAD")
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        writer.write(body)
    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
