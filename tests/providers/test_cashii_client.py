"""The Cashii client against httpx.MockTransport: the documented create (201, a 16-digit id)
and read, the Bearer key, integer minor units, and errors mapped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kiosk.errors import (
    ProviderAmbiguous,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)
from kiosk.money import Money
from kiosk.providers.cashii.client import CashiiClient

KEY = "ck_test_0123456789abcdef"
PAYMENT = {
    "data": {
        "id": "1234567890123456",
        "amount": 10098,
        "currency": "SYP",
        "note": "Payment for Order #ORD-12345",
        "metadata": {},
        "status": "paid",
        "from": "5550001112223334",
        "to": "7700000000000001",
    }
}


def _run(handler: Callable[[httpx.Request], httpx.Response], call: Any) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = CashiiClient(
                http, base_url="https://api.cashii.app", api_key=KEY, timeout=httpx.Timeout(2.0)
            )
            return await call(client)

    return asyncio.run(go())


def test_create_posts_minor_units_and_reads_the_16_digit_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path == "/api/v1/remote-payments"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == {
            "amount": 10098,
            "currency": "SYP",
            "note": "Cash withdrawal K-1",
            "metadata": {"kiosk_id": "K", "reference": "K-1"},
        }
        return httpx.Response(201, json={"data": {"id": "1234567890123456"}})

    got = _run(
        handler,
        lambda c: c.create(
            Money.of(10098, "SYP"),
            "Cash withdrawal K-1",
            metadata={"kiosk_id": "K", "reference": "K-1"},
        ),
    )
    assert got == "1234567890123456"


def test_get_reads_the_payment() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/remote-payments/1234567890123456"
        return httpx.Response(200, json=PAYMENT)

    payment = _run(handler, lambda c: c.get("1234567890123456"))
    assert (payment.status, payment.amount, payment.payer) == (
        "paid",
        Money.of(10098, "SYP"),
        "5550001112223334",
    )


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": {"code": "unauthorized", "message": "bad key"}}, ProviderAuthFailed),
        (422, {"message": "amount must be an integer"}, ProviderRefused),
        (404, {"error": "not_found"}, ProviderRefused),
        (500, {"error": "boom"}, ProviderAmbiguous),
        (502, "<html>", ProviderAmbiguous),
        (429, "slow down", ProviderAmbiguous),
        (
            200,
            {"data": {"id": "12", "status": "paid", "amount": 1, "currency": "SYP"}},
            ProviderProtocolError,
        ),
        (200, {"data": {**PAYMENT["data"], "amount": 100.98}}, ProviderProtocolError),
        (200, {"data": {**PAYMENT["data"], "status": "lost"}}, ProviderProtocolError),
        (200, {"data": {**PAYMENT["data"], "id": "9999999999999999"}}, ProviderProtocolError),
    ],
)
def test_errors_are_mapped(status: int, body: object, error: type) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(error):
        _run(handler, lambda c: c.get("1234567890123456"))


def test_a_create_201_without_an_id_is_broken_and_a_timeout_in_doubt() -> None:
    def no_id(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"data": {}})

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no")

    def create(c: CashiiClient) -> Any:
        return c.create(Money.of(1, "SYP"), "n", metadata={})

    with pytest.raises(ProviderProtocolError):
        _run(no_id, create)
    with pytest.raises(ProviderAmbiguous):
        _run(slow, create)
    with pytest.raises(ProviderUnavailable):
        _run(refuse, create)
    with pytest.raises(ValueError):
        _run(refuse, lambda c: c.get("../../x"))
