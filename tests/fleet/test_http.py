"""The local endpoints over loopback: /healthz, /heartbeat, /metrics, and every way a client
can get a request wrong without stopping the server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from kiosk.daemon import FAULT_WORDS
from kiosk.fleet.http import serve
from kiosk.fleet.metrics import Metrics
from kiosk.fleet.view import KioskView

HEARTBEAT = {"schema": "kiosk.heartbeat/1", "kiosk_id": "KSK-0001", "seq": 7, "state": "busy"}


class Kiosk:
    """What the endpoints read: a health that tests change, a heartbeat, metrics."""

    def __init__(self) -> None:
        self.ok, self.reasons = True, list[str]()
        self.metrics = Metrics("KSK-0001", "rpi-1", "0.1.0")
        self.fail = False

    def health(self) -> tuple[bool, list[str]]:
        if self.fail:
            raise RuntimeError("a bug in the daemon")
        return self.ok, self.reasons


@asynccontextmanager
async def running(kiosk: Kiosk, **kw: Any) -> AsyncIterator[tuple[int, httpx.AsyncClient]]:
    server = await serve(
        "127.0.0.1",
        0,
        health=kiosk.health,
        heartbeat=lambda: HEARTBEAT,
        metrics=kiosk.metrics.exposition,
        **kw,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            yield port, http
    finally:
        server.close()
        await server.wait_closed()


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(test(), 15)

    asyncio.run(bounded())


async def raw(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    """Send ``data`` as is and read the whole answer (the server closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_the_server_listens_on_the_given_host_only() -> None:
    async def main() -> None:
        server = await serve(
            "127.0.0.1", 0, health=lambda: (True, []), heartbeat=dict, metrics=bytes
        )
        try:
            assert {s.getsockname()[0] for s in server.sockets} == {"127.0.0.1"}
        finally:
            server.close()
            await server.wait_closed()

    run(main)


@pytest.mark.parametrize(
    "reason",
    [
        "door open (service mode)",
        FAULT_WORDS["jam"],
        "printer: paper out",
        "no payment provider answers (payby, rapyd)",
    ],
)
def test_healthz_is_ok_in_service_and_503_with_the_reasons_otherwise(reason: str) -> None:
    kiosk = Kiosk()

    async def main() -> None:
        async with running(kiosk) as (_, http):
            r = await http.get("/healthz")
            assert (r.status_code, r.text) == (200, "ok\n")
            assert r.headers["content-type"].startswith("text/plain")
            assert r.headers["connection"] == "close"
            kiosk.ok, kiosk.reasons = False, [reason, "printer: paper out"]
            r = await http.get("/healthz")
            assert r.status_code == 503
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"status": "out_of_service", "reasons": kiosk.reasons}

    run(main)


def test_metrics_is_the_exposition_in_prometheus_format() -> None:
    kiosk = Kiosk()
    kiosk.metrics.update(
        KioskView(
            kiosk_id="KSK-0001",
            device_id="rpi-1",
            version="0.1.0",
            started_at=0.0,
            now=10.0,
            state="out_of_service",
            reasons=("printer: paper out",),
            devices=(),
            providers=(),
            currency="AED",
            cashbox_notes=3,
            cashbox_value=15000,
            cashbox_capacity=0,
            pending=0,
            pending_oldest_s=0.0,
            outbox_depth=0,
            outbox_oldest_s=0.0,
            liabilities={},
            liabilities_count=0,
            disk_free_bytes=1,
            cpu_temperature_c=None,
        )
    )

    async def main() -> None:
        async with running(kiosk) as (_, http):
            r = await http.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"] == CONTENT_TYPE_LATEST
            found = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(r.text)
                for s in f.samples
            }
            assert found[("kiosk_out_of_service", (("reason", "printer"),))] == 1
            assert found[("kiosk_cashbox_notes", ())] == 3
            assert found[("kiosk_uptime_seconds", ())] == 10
            head = await http.head("/metrics")
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == len(r.content)

    run(main)


def test_heartbeat_is_the_latest_document_as_json() -> None:
    async def main() -> None:
        async with running(Kiosk()) as (_, http):
            r = await http.get("/heartbeat?pretty=no")
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            assert r.json() == HEARTBEAT

    run(main)


def test_unknown_paths_other_methods_and_malformed_requests() -> None:
    async def main() -> None:
        async with running(Kiosk()) as (port, http):
            assert (await http.get("/nope")).status_code == 404
            r = await http.post("/healthz", content=b"x")
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
            assert (await http.delete("/metrics")).status_code == 405
            for bad in (
                b"garbage\r\n\r\n",
                b"GET /healthz\r\n\r\n",
                b"GET /healthz HTTP/2.0\r\n\r\n",
                b"GET healthz HTTP/1.1\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\n folded: header\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: \x01\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # ends before the empty line
                b"\xff\xfe\r\n\r\n",
            ):
                answer = await raw(port, bad)
                assert status_of(answer) == 400, bad
                assert b"Traceback" not in answer
            ok = await raw(port, b"\r\nGET /healthz HTTP/1.0\nHost: x\n\n")  # bare LFs, 1.0
            assert status_of(ok) == 200 and ok.endswith(b"\r\n\r\nok\n")
            assert (await http.get("/healthz")).status_code == 200  # still serving

    run(main)


def test_an_oversized_request_is_refused() -> None:
    async def main() -> None:
        async with running(Kiosk()) as (port, http):
            headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 100) for i in range(100))
            answer = await raw(port, b"GET /healthz HTTP/1.1\r\n" + headers + b"\r\n")
            assert status_of(answer) == 431
            one_line = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n"
            assert status_of(await raw(port, one_line, half_close=False)) == 431
            assert (await http.get("/healthz", headers={"X-Pad": "a" * 7000})).status_code == 200
            assert (await http.get("/healthz")).status_code == 200

    run(main)


def test_a_silent_client_times_out_without_blocking_others() -> None:
    async def main() -> None:
        async with running(Kiosk(), read_timeout=0.3) as (port, http):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                assert (await http.get("/healthz")).status_code == 200  # served meanwhile
                answer = await asyncio.wait_for(reader.read(), 5)
                assert status_of(answer) == 408
            finally:
                writer.close()
                await writer.wait_closed()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()  # connects and leaves at once
            await writer.wait_closed()
            assert (await http.get("/healthz")).status_code == 200

    run(main)


def test_a_failing_callable_is_a_500_and_the_server_keeps_serving() -> None:
    kiosk = Kiosk()

    async def main() -> None:
        async with running(kiosk) as (_, http):
            kiosk.fail = True
            r = await http.get("/healthz")
            assert r.status_code == 500 and "Traceback" not in r.text
            kiosk.fail = False
            assert (await http.get("/healthz")).status_code == 200

    run(main)


def test_too_many_idle_connections_are_turned_away() -> None:
    async def main() -> None:
        async with running(Kiosk(), read_timeout=2.0) as (port, http):
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(16)]
            try:
                await asyncio.sleep(0.05)
                assert status_of(await raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")) == 503
            finally:
                for _, writer in idle:
                    writer.close()
                    await writer.wait_closed()
            await asyncio.sleep(0.05)
            assert (await http.get("/healthz")).status_code == 200

    run(main)


def test_the_body_is_json_with_the_reasons_in_order() -> None:
    kiosk = Kiosk()
    kiosk.ok, kiosk.reasons = False, ["b", "a"]

    async def main() -> None:
        async with running(kiosk) as (port, _):
            answer = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: k\r\n\r\n")
            head, body = answer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert json.loads(body)["reasons"] == ["b", "a"]

    run(main)
