"""The daemon's outbound HTTP clients: verified TLS from one shared context, no cookie jar."""

from __future__ import annotations

import asyncio
import ssl

import httpx

from kiosk.httpclient import client, tls_context


def test_every_client_shares_one_verified_tls_context() -> None:
    asyncio.run(_shared())


async def _shared() -> None:
    a, b = client(httpx.Timeout(5.0)), client(httpx.Timeout(1.0))
    try:
        ctx = tls_context()
        assert ctx is tls_context()
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        pools = [c._transport._pool._ssl_context for c in (a, b)]  # type: ignore[attr-defined]
        assert pools == [ctx, ctx]
    finally:
        await a.aclose()
        await b.aclose()


def test_a_client_keeps_no_cookie() -> None:
    asyncio.run(_no_cookie())


async def _no_cookie() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        assert "cookie" not in request.headers
        return httpx.Response(200, headers={"set-cookie": "sid=1; Path=/"})

    http = client(httpx.Timeout(5.0))
    http._transport = httpx.MockTransport(reply)  # type: ignore[attr-defined]
    try:
        await http.get("https://api.example/a")
        await http.get("https://api.example/b")
        assert not http.cookies
    finally:
        await http.aclose()
