"""Heartbeats POSTed to the fleet, signed with the device's Ed25519 key.

Wiring (the daemon)::

    pusher = HeartbeatPusher(http, cfg.fleet.url or me.fleet_url, me,
                             timeout_s=cfg.fleet.timeout_s, on_commands=on_commands)
    task = asyncio.create_task(pusher.run(make_doc, cfg.fleet.interval_s))
    # make_doc(missed) -> dict: heartbeat.build(view(), next_seq(), missed)
    pusher.missed, pusher.last_sent_at           # for the metrics

The request: ``POST <url>`` with the body :func:`kiosk.fleet.heartbeat.canonical` of the
document and the headers

- ``Content-Type: application/json``
- ``X-Kiosk-Device: <device id>``
- ``X-Kiosk-Signature: ed25519=<base64 of the 64-byte Ed25519 signature of the exact body>``

which the fleet checks with the public key it registered for that device (:func:`verify`).

A 2xx reply means delivered. Its body is a JSON object (it may be empty); a ``commands`` list in
it goes to ``on_commands`` (:mod:`kiosk.fleet.commands` verifies each). Anything else (connect
error, timeout after ``timeout_s``, 3xx/4xx/5xx) means not delivered: the document is kept, to
be replaced by the next one. Only the latest document is ever sent; ``missed`` counts the
documents that were never delivered (each once: replaced while unsent, or failed) and goes back
to 0 on a delivery. Transitions are logged, not every failure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from kiosk.fleet.heartbeat import canonical
from kiosk.identity import Identity

log = logging.getLogger("kiosk.fleet")

SIGNATURE_PREFIX = "ed25519="


def signature_header(identity: Identity, body: bytes) -> str:
    """``ed25519=<base64 signature of body>``."""
    return SIGNATURE_PREFIX + base64.b64encode(identity.sign(body)).decode()


def verify(body: bytes, header: str, public_b64: str) -> bool:
    """Does ``header`` (``X-Kiosk-Signature``) sign ``body`` with the raw Ed25519 public key
    ``public_b64`` (base64, 32 bytes)? False on anything malformed; never raises."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not header.startswith(SIGNATURE_PREFIX):
        return False
    try:
        signature = base64.b64decode(header[len(SIGNATURE_PREFIX) :], validate=True)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
        key.verify(signature, body)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HeartbeatPusher:
    """Keeps the latest heartbeat and POSTs it; see the module's docstring."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        identity: Identity,
        *,
        timeout_s: float,
        on_commands: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
    ) -> None:
        self._http = http
        self.url = url
        self._identity = identity
        self._timeout_s = timeout_s
        self._on_commands = on_commands
        self._doc: dict[str, Any] | None = None
        self._doc_counted = False  # the pending document already counts in missed
        self._inflight: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._missed = 0
        self._last_sent_at: float | None = None
        self._reachable: bool | None = None  # None: not tried yet
        self._bad_reply = False
        self._loop_failing = False

    @property
    def missed(self) -> int:
        """Heartbeats not delivered since the last one that was."""
        return self._missed

    @property
    def last_sent_at(self) -> float | None:
        """``time.time()`` of the last delivery; ``None``: none yet."""
        return self._last_sent_at

    @property
    def pending(self) -> dict[str, Any] | None:
        """The document waiting to be sent, if any."""
        return self._doc

    def offer(self, doc: dict[str, Any]) -> None:
        """Make ``doc`` the one to send; an unsent one it replaces counts as missed (unless it
        is being sent right now: then that send's outcome decides)."""
        old = self._doc
        if old is not None and not self._doc_counted and old is not self._inflight:
            self._missed += 1
        self._doc, self._doc_counted = doc, False

    async def send(self) -> bool:
        """POST the latest document; True when the fleet took it. Never raises (but for
        cancellation)."""
        async with self._lock:
            doc = self._doc
            if doc is None:
                return False
            counted = self._doc_counted
            self._inflight = doc
            try:
                reply, error = await self._post(doc)
            finally:
                self._inflight = None
            if reply is None:
                if not counted:
                    self._missed += 1
                if self._doc is doc:
                    self._doc_counted = True
                if self._reachable is not False:
                    log.warning("fleet: unreachable (%s)", error)
                self._reachable = False
                return False
            if self._reachable is False:
                log.info("fleet: reachable again, %d missed", self._missed)
            self._reachable = True
            self._missed = 0
            self._last_sent_at = time.time()
            if self._doc is doc:
                self._doc = None
        await self._reply(reply)
        return True

    async def _post(self, doc: dict[str, Any]) -> tuple[httpx.Response | None, str]:
        try:
            body = canonical(doc)
            headers = {
                "Content-Type": "application/json",
                "X-Kiosk-Device": self._identity.device_id,
                "X-Kiosk-Signature": signature_header(self._identity, body),
            }
            async with asyncio.timeout(self._timeout_s):
                resp = await self._http.post(
                    self.url, content=body, headers=headers, timeout=httpx.Timeout(self._timeout_s)
                )
        except TimeoutError:
            return None, f"no answer in {self._timeout_s:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
            return None, _reason(exc)
        if not resp.is_success:
            return None, f"HTTP {resp.status_code}"
        return resp, ""

    async def _reply(self, resp: httpx.Response) -> None:
        """The reply's commands to ``on_commands``; a bad body is logged once and ignored."""
        commands, problem = _commands(resp.content)
        if problem:
            if not self._bad_reply:
                log.warning("fleet: ignoring a bad reply body (%s)", problem)
            self._bad_reply = True
        else:
            self._bad_reply = False
        if commands and self._on_commands is not None:
            try:
                await self._on_commands(commands)
            except Exception:
                log.exception("fleet: handling commands failed")

    async def run(self, make_doc: Callable[[int], dict[str, Any]], interval_s: float) -> None:
        """Every ``interval_s`` (the first at once): ``offer(make_doc(self.missed))`` and
        :meth:`send`. Survives everything but cancellation."""
        loop = asyncio.get_running_loop()
        interval_s = max(interval_s, 0.01)
        due = loop.time()
        while True:
            try:
                self.offer(make_doc(self._missed))
                await self.send()
                if self._loop_failing:
                    log.info("fleet: heartbeats are built again")
                self._loop_failing = False
            except Exception:
                if not self._loop_failing:
                    log.exception("fleet: building the heartbeat failed")
                self._loop_failing = True
            due += interval_s
            now = loop.time()
            if due < now:  # a round overran: skip the ticks it covered, keep the rhythm
                due += (now - due) // interval_s * interval_s + interval_s
            await asyncio.sleep(due - now)


def _commands(content: bytes) -> tuple[list[dict[str, Any]], str]:
    """The ``commands`` of a reply body, and what is wrong with it (``""``: nothing)."""
    if not content.strip():
        return [], ""
    try:
        reply = json.loads(content)
    except (UnicodeDecodeError, ValueError):
        return [], "not JSON"
    if not isinstance(reply, dict):
        return [], "not a JSON object"
    commands = reply.get("commands", [])
    if not isinstance(commands, list):
        return [], "commands is not a list"
    good = [c for c in commands if isinstance(c, dict)]
    return good, "" if len(good) == len(commands) else "a command is not an object"
