"""The Paysera client against httpx.MockTransport: paths, bodies, the MAC over the exact bytes,
replies parsed, errors mapped (a well-formed error body decides; a gateway page does not)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from kiosk.errors import (
    ProviderAmbiguous,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRefused,
)
from kiosk.money import Money
from kiosk.providers.paysera.client import PayseraClient
from kiosk.providers.paysera.mac import MacSigner, parse_header, verify

KEY = "IrdTc8uQodU7PRpLzzLTW6wqZAO6tAMU"
CODE = "0155567464130298871198969060"
TX = {
    "transaction_key": "pDAlAZ3z",
    "created_at": 1343811600,
    "status": "new",
    "payments": [{"id": 7, "status": "new", "price": 5000, "currency": "EUR"}],
}


def _run(handler: Callable[[httpx.Request], httpx.Response], call):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = PayseraClient(
                http,
                base_url="https://wallet.paysera.com/rest/v1",
                signer=MacSigner("wkVd93h2uS", KEY),
                timeout=httpx.Timeout(2.0),
            )
            return await call(client)

    return asyncio.run(go())


def test_create_signs_the_exact_body_and_parses_the_transaction() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=TX)

    tx = _run(
        handler,
        lambda c: c.create(Money.of(5000, "EUR"), "Cash withdrawal", reserve_for_s=300),
    )
    assert (tx.key, tx.status, tx.total) == ("pDAlAZ3z", "new", 5000)
    (req,) = seen
    assert (req.method, req.url.path) == ("POST", "/rest/v1/transaction")
    body = json.loads(req.content)
    assert body == {
        "payments": [{"description": "Cash withdrawal", "price": 5000, "currency": "EUR"}],
        "reserve_for": 300,
    }
    h = parse_header(req.headers["Authorization"])
    assert verify(KEY, h, "POST", "/rest/v1/transaction", "wallet.paysera.com", 443, req.content)


def test_reserve_confirm_revoke_and_get_use_the_documented_paths() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.content))
        return httpx.Response(200, json={**TX, "status": "reserved"})

    async def calls(c: PayseraClient) -> None:
        await c.reserve_with_code("pDAlAZ3z", CODE)
        await c.reserve_to_wallet("pDAlAZ3z", 14471)
        await c.confirm("pDAlAZ3z")
        await c.revoke("pDAlAZ3z")
        await c.get("pDAlAZ3z")

    _run(handler, calls)
    assert [(m, p) for m, p, _ in seen] == [
        ("PUT", "/rest/v1/transaction/pDAlAZ3z/reserve"),
        ("PUT", "/rest/v1/transaction/pDAlAZ3z/reserve/14471"),
        ("PUT", "/rest/v1/transaction/pDAlAZ3z/confirm"),
        ("DELETE", "/rest/v1/transaction/pDAlAZ3z"),
        ("GET", "/rest/v1/transaction/pDAlAZ3z"),
    ]
    assert json.loads(seen[0][2]) == {"code": CODE}
    assert all(body == b"" for _, _, body in seen[1:])


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (409, {"error": "invalid_state"}, ProviderRefused, "invalid_state"),
        (400, {"error": "not_enough_funds"}, ProviderRefused, "not_enough_funds"),
        (401, {"error": "unauthorized"}, ProviderAuthFailed, "unauthorized"),
        (500, {"error": "internal_server_error"}, ProviderAmbiguous, "internal_server_error"),
        (502, None, ProviderAmbiguous, None),  # a gateway page: not Paysera's answer
        (429, None, ProviderAmbiguous, None),
        (400, None, ProviderProtocolError, None),  # not an error body
    ],
)
def test_errors_are_mapped(status: int, body: object, error: type, code: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="<html>Bad Gateway</html>")
        return httpx.Response(status, json=body)

    with pytest.raises(error) as info:
        _run(handler, lambda c: c.get("pDAlAZ3z"))
    assert getattr(info.value, "code", None) == code
    if error is ProviderRefused:
        assert info.value.signed  # Paysera's own answer over TLS


@pytest.mark.parametrize(
    "reply",
    [
        {"transaction_key": "k", "status": "flying"},
        {"status": "new"},
        {**TX, "payments": [{"id": 1, "price": 1.5, "currency": "EUR"}]},
        [],
    ],
)
def test_a_broken_reply_is_a_protocol_error(reply: object) -> None:
    with pytest.raises(ProviderProtocolError):
        _run(lambda r: httpx.Response(200, json=reply), lambda c: c.get("pDAlAZ3z"))


def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    for call in (
        lambda c: c.reserve_with_code("pDAlAZ3z", "123"),
        lambda c: c.create(Money.of(100, "EUR"), "x", reserve_for_s=3600),
        lambda c: c.get("../etc"),
    ):
        with pytest.raises(ValueError):
            _run(handler, call)
