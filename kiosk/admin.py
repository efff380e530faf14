"""The technician's line to a running daemon: a Unix socket, ``state_dir/admin.sock``, mode 600.

The daemon owns the serial ports, so technician commands that move hardware go through it,
between customers, never during a journey. JSON lines, one reply per request::

    {"cmd": "status"}                 -> state, open transactions, open liabilities, devices
    {"cmd": "payout", "amount": 2000} -> a test dispense (local_cashout); the transaction
    {"cmd": "levels"}                 -> the recycler's stored notes
    {"cmd": "refund", "ref": R, "amount": "12.50"|null} -> a technician's refund (its journey's
                                         module's ``refund``); where it stands

``kiosk status``, ``kiosk payout AMOUNT`` and ``kiosk refund REF`` are CLI ends of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError

log = logging.getLogger("kiosk.admin")

MAX_LINE = 4096
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def serve_admin(path: Path, handlers: dict[str, Handler]) -> asyncio.AbstractServer:
    """Listen on ``path`` (mode 600) and dispatch ``{"cmd": ...}`` lines to ``handlers``."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await _dispatch(line, handlers)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # noqa: ASYNC240 - once, at start-up
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(client, path=str(path), limit=MAX_LINE)
    finally:
        os.umask(old)
    return server


async def _dispatch(line: bytes, handlers: dict[str, Handler]) -> dict[str, Any]:
    try:
        req = json.loads(line)
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise ValueError('expected {"cmd": ...}')
        handler = handlers.get(req["cmd"])
        if handler is None:
            raise ValueError(f"unknown command {req['cmd']!r}; one of {sorted(handlers)}")
        return {"ok": True, **await handler(req)}
    except (ValueError, KioskError) as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        from kiosk.devices import is_device_error

        if is_device_error(exc):  # a handler that drove a driver object itself
            return {"ok": False, "error": str(exc)}
        raise


def call(path: Path, request: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """The CLI end: one request (``{"cmd": ...}``), one reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise KioskError(f"no daemon answers on {path} ({exc}): is kiosk running?") from exc
        data = b""
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:  # a timeout, a daemon that went away mid-reply
            raise KioskError(
                f"the daemon on {path} did not answer ({exc}): journalctl -u kiosk"
            ) from exc
    try:
        reply = json.loads(data)
    except ValueError:
        raise KioskError(
            f"the daemon on {path} did not answer (it hung up): see journalctl -u kiosk"
        ) from None
    if not isinstance(reply, dict):
        raise KioskError(f"the daemon on {path} answered something that is not a reply")
    return reply
