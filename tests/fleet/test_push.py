"""Heartbeats pushed to a loopback fleet: signed, only the latest kept, missed counted."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.fleet.heartbeat import canonical
from kiosk.fleet.push import HeartbeatPusher, verify
from kiosk.identity import Identity, new_key

ME = Identity("rpi-10000000a1b2c3d4", new_key())


@dataclass
class Fleet:
    """A tiny HTTP/1.1 server on loopback: records each request, answers ``status`` and
    ``reply`` (or never, when ``hang``)."""

    status: int = 200
    reply: bytes = b"{}"
    hang: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0
    received: asyncio.Event = field(default_factory=asyncio.Event)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((headers, body))
            self.received.set()
            if self.hang:
                await asyncio.sleep(3600)
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.reply)}\r\nConnection: close\r\n\r\n".encode()
                + self.reply
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.handlers):  # Python 3.11 has no Server.close_clients()
            task.cancel()
        if self.handlers:
            await asyncio.gather(*self.handlers, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/heartbeat"

    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@contextlib.asynccontextmanager
async def fleet_and_client(**kw: Any) -> AsyncIterator[tuple[Fleet, httpx.AsyncClient]]:
    fleet = Fleet(**kw)
    await fleet.start()
    try:
        async with httpx.AsyncClient() as http:
            yield fleet, http
    finally:
        await fleet.stop()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 20))


def doc(seq: int, missed: int = 0) -> dict[str, Any]:
    return {"seq": seq, "missed": missed, "note": "porte ouverte, côté client"}


# --- the signature -------------------------------------------------------------------------


def test_the_signature_verifies_and_fails_on_a_changed_byte() -> None:
    async def main() -> None:
        async with fleet_and_client() as (fleet, http):
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=5)
            pusher.offer(doc(1))
            assert await pusher.send()
        ((headers, body),) = fleet.requests
        assert body == canonical(doc(1))
        assert headers["content-type"] == "application/json"
        assert headers["x-kiosk-device"] == ME.device_id
        sig = headers["x-kiosk-signature"]
        assert sig.startswith("ed25519=") and len(base64.b64decode(sig[8:])) == 64
        assert verify(body, sig, ME.public_b64)
        for i in (0, len(body) // 2, len(body) - 1):
            changed = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
            assert not verify(changed, sig, ME.public_b64)
        other = Identity("rpi-2", Ed25519PrivateKey.generate()).public_b64
        assert not verify(body, sig, other)
        for bad in ("", sig[8:], "rsa=" + sig[8:], "ed25519=!!", "ed25519=" + sig[9:]):
            assert not verify(body, bad, ME.public_b64)
        assert not verify(body, sig, "not base64")

    run(main)


# --- down and back -------------------------------------------------------------------------


def test_down_then_back_sends_only_the_latest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "kiosk.fleet")

    async def main() -> None:
        fleet = Fleet()
        await fleet.start()
        await fleet.stop()  # the port is known and nobody listens: the fleet is down
        async with httpx.AsyncClient() as http:
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=2)
            assert pusher.missed == 0 and pusher.last_sent_at is None
            pusher.offer(doc(1))
            assert not await pusher.send()
            assert pusher.missed == 1
            pusher.offer(doc(2, pusher.missed))  # replaces a failed one: counted already
            assert pusher.missed == 1
            assert not await pusher.send()
            assert pusher.missed == 2
            pusher.offer(doc(3, 2))
            pusher.offer(doc(4, 2))  # 3 replaced unsent: missed
            assert pusher.missed == 3
            assert not await pusher.send()
            assert pusher.missed == 4 and pusher.pending == doc(4, 2)

            await fleet.start()  # back, on the same port
            try:
                assert await pusher.send()
                assert pusher.missed == 0 and pusher.pending is None
                assert pusher.last_sent_at is not None
                assert not await pusher.send()  # nothing left to send
            finally:
                await fleet.stop()
        assert fleet.docs() == [doc(4, 2)]  # only the latest

    run(main)
    messages = [r.getMessage() for r in caplog.records]
    down = [m for m in messages if "unreachable" in m]
    assert len(down) == 1 and down[0].startswith("fleet: unreachable (ConnectError")  # said once
    assert messages.count("fleet: reachable again, 4 missed") == 1


def test_run_keeps_the_rhythm_through_an_outage() -> None:
    async def main() -> None:
        fleet = Fleet()
        await fleet.start()
        await fleet.stop()
        built: list[dict[str, Any]] = []

        def make_doc(missed: int) -> dict[str, Any]:
            built.append(doc(len(built) + 1, missed))
            return built[-1]

        async with httpx.AsyncClient() as http:
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=1)
            task = asyncio.create_task(pusher.run(make_doc, 0.02))
            while len(built) < 5:
                await asyncio.sleep(0.01)
            await fleet.start()
            try:
                await asyncio.wait_for(fleet.received.wait(), 5)
                while pusher.missed:
                    await asyncio.sleep(0.01)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await fleet.stop()
        first = fleet.docs()[0]
        assert first["missed"] == first["seq"] - 1 >= 5  # everything before it was missed
        seqs = [d["seq"] for d in fleet.docs()]
        assert seqs == sorted(seqs) and all(d["missed"] == 0 for d in fleet.docs()[1:])

    run(main)


@pytest.mark.parametrize("status", [400, 401, 404, 500, 503, 301])
def test_a_refusal_is_not_a_delivery(status: int) -> None:
    async def main() -> None:
        async with fleet_and_client(status=status) as (fleet, http):
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=5)
            pusher.offer(doc(1))
            assert not await pusher.send()
            assert pusher.missed == 1 and pusher.pending == doc(1)
            fleet.status = 204
            fleet.reply = b""
            assert await pusher.send()
            assert pusher.missed == 0 and len(fleet.requests) == 2

    run(main)


def test_a_fleet_that_never_answers_times_out(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with fleet_and_client(hang=True) as (fleet, http):
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=0.2)
            pusher.offer(doc(1))
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert not await pusher.send()
            assert loop.time() - started < 2
            assert pusher.missed == 1 and len(fleet.requests) == 1

    run(main)
    assert any("fleet: unreachable" in r.getMessage() for r in caplog.records)


# --- replies -------------------------------------------------------------------------------


def test_commands_in_the_reply_go_to_on_commands() -> None:
    got: list[list[dict[str, Any]]] = []

    async def on_commands(commands: list[dict[str, Any]]) -> None:
        got.append(commands)

    cmds = [{"seq": 1, "cmd": "reprint"}, {"seq": 2, "cmd": "restart"}]

    async def main() -> None:
        reply = json.dumps({"commands": cmds, "next": "ignored"}).encode()
        async with fleet_and_client(reply=reply) as (fleet, http):
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=5, on_commands=on_commands)
            pusher.offer(doc(1))
            assert await pusher.send()
            fleet.reply = b"{}"
            pusher.offer(doc(2))
            assert await pusher.send()

    run(main)
    assert got == [cmds]


@pytest.mark.parametrize(
    "reply", [b"<html>proxy</html>", b"[1, 2]", b'{"commands": 3}', b'{"commands": [1]}', b"\xff"]
)
def test_a_bad_reply_is_logged_once_and_ignored(
    reply: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[list[dict[str, Any]]] = []

    async def on_commands(commands: list[dict[str, Any]]) -> None:
        got.append(commands)

    async def main() -> None:
        async with fleet_and_client(reply=reply) as (fleet, http):
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=5, on_commands=on_commands)
            for seq in (1, 2, 3):
                pusher.offer(doc(seq))
                assert await pusher.send()  # delivered all the same
            assert pusher.missed == 0

    run(main)
    assert got == []
    bad = [r for r in caplog.records if "bad reply" in r.getMessage()]
    assert len(bad) == 1


def test_a_failing_command_handler_does_not_break_the_push(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_commands(commands: list[dict[str, Any]]) -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        reply = b'{"commands": [{"seq": 1}]}'
        async with fleet_and_client(reply=reply) as (fleet, http):
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=5, on_commands=on_commands)
            pusher.offer(doc(1))
            assert await pusher.send()

    run(main)
    assert any("handling commands failed" in r.getMessage() for r in caplog.records)


# --- the loop ------------------------------------------------------------------------------


def test_run_survives_a_failing_builder_and_stops_on_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        calls: list[int] = []

        def make_doc(missed: int) -> dict[str, Any]:
            calls.append(missed)
            if len(calls) in (2, 3):
                raise KeyError("figures")
            return doc(len(calls), missed)

        async with fleet_and_client() as (fleet, http):
            pusher = HeartbeatPusher(http, fleet.url, ME, timeout_s=5)
            task = asyncio.create_task(pusher.run(make_doc, 0.01))
            while len(fleet.requests) < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert task.cancelled()
        assert [d["seq"] for d in fleet.docs()][:3] == [1, 4, 5]

    run(main)
    failed = [r for r in caplog.records if "building the heartbeat failed" in r.getMessage()]
    assert len(failed) == 1  # two failures in a row, said once


def test_mock_transport_sees_the_same_request() -> None:
    """The same request through httpx.MockTransport (what the daemon's unit tests use)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            pusher = HeartbeatPusher(http, "https://fleet.invalid/hb", ME, timeout_s=5)
            pusher.offer(doc(9))
            assert await pusher.send()

    run(main)
    (request,) = seen
    assert request.method == "POST" and request.content == canonical(doc(9))
    assert verify(request.content, request.headers["X-Kiosk-Signature"], ME.public_b64)
