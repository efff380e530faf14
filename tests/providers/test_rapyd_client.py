"""The Rapyd POS client against httpx.MockTransport: the signature (computed independently
here, from Rapyd's request-signatures page), the documented paths and headers, decimal sums
written exactly, the status envelope, and errors mapped."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from kiosk.errors import (
    ProviderAmbiguous,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)
from kiosk.money import Money
from kiosk.providers.rapyd import wire
from kiosk.providers.rapyd.client import RapydClient, Session
from kiosk.providers.rapyd.signing import Signer, new_salt, signature

ACCESS, SECRET = "8C6223151345345D", "s3cr3t-key-for-tests-only-0123456789"
POS, OTP, PHONE = "z128ffb-11a5-11l9-93p5-1231a8maf28", "876680", "+14155559992"
TOKEN, OP = "d9b7398f-5c2f-438c-8ac6-68e79f28c02e", "95e2c071-9513-48d6-a717-a480814f7df8"
LOGIN = {
    "status": {"error_code": "", "status": "SUCCESS", "message": "", "response_code": ""},
    "data": {
        "token_id": TOKEN,
        "operation_id": OP,
        "accounts": [
            {
                "account_id": "64e4a964-53b5-11e9-8495-02f0df928b",
                "account_currency": "GBP",
                "account_alias": "GBP",
                "account_balance": 189,
                "account_currency_symbol": "£",
            }
        ],
    },
}
OK = {"status": {"error_code": "0", "status": "SUCCESS", "message": "", "operation_id": "x"}}


def independent(method: str, path: str, salt: str, ts: str, body: str) -> str:
    """Rapyd's page, written out again: BASE64 of the *hex* digest."""
    to_sign = f"{method.lower()}{path}{salt}{ts}{ACCESS}{SECRET}{body}"
    hex_digest = hmac.new(SECRET.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(hex_digest.encode()).decode()


def test_the_signature_is_base64_of_the_hex_digest() -> None:
    got = signature(
        SECRET,
        method="POST",
        url_path="/v1/pos/withdraw/acc/10.00",
        salt="abcdefgh12",
        timestamp="1700000000",
        access_key=ACCESS,
        body="",
    )
    assert got == independent("POST", "/v1/pos/withdraw/acc/10.00", "abcdefgh12", "1700000000", "")
    assert len(base64.b64decode(got)) == 64  # 64 hex characters, not 32 raw bytes
    assert 8 <= len(new_salt()) <= 16
    with pytest.raises(ValueError):
        new_salt(20)


def _run(handler: Callable[[httpx.Request], httpx.Response], call: Any) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = RapydClient(
                http,
                base_url="https://sandboxpos.rapyd.net",
                signer=Signer(ACCESS, SECRET, clock=lambda: 1700000000.0),
                timeout=httpx.Timeout(2.0),
            )
            return await call(client)

    return asyncio.run(go())


def test_login_withdraw_reverse_logout_use_the_documented_paths_and_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        h = request.headers
        body = request.content.decode()
        assert h["access_key"] == ACCESS and h["timestamp"] == "1700000000"
        assert h["signature"] == independent(
            request.method, request.url.raw_path.decode(), h["salt"], h["timestamp"], body
        )
        if request.url.path.startswith("/v1/pos/login/"):
            assert h["phone_number"] == PHONE
            return httpx.Response(200, json=LOGIN)
        if "/withdraw/" in request.url.path:
            return httpx.Response(200, json={**OK, "data": {"transaction_id": "tx_1"}})
        return httpx.Response(200, json=OK)

    async def call(client: RapydClient) -> Any:
        session = await client.login(POS, OTP, PHONE)
        account = session.account("GBP")
        assert account is not None and account.balance == Money.of(18900, "GBP")
        tid = await client.withdraw(
            session, account.id, Money.of(1000, "GBP"), idempotency="KSK-1-000001-withdraw"
        )
        await client.reverse(
            session, account.id, Money.of(500, "GBP"), tid, idempotency="KSK-1-000001-reverse"
        )
        await client.logout(session)
        return session, tid

    session, tid = _run(handler, call)
    assert tid == "tx_1" and TOKEN not in repr(session) and PHONE not in repr(session)
    paths = [r.url.path for r in seen]
    assert paths == [
        f"/v1/pos/login/{POS}/{OTP}",
        "/v1/pos/withdraw/64e4a964-53b5-11e9-8495-02f0df928b/10.00",
        "/v1/pos/reversal/64e4a964-53b5-11e9-8495-02f0df928b/5.00",
        "/v1/pos/logout",
    ]
    withdraw, reverse, logout = seen[1:]
    assert withdraw.headers["idempotency"] == "KSK-1-000001-withdraw"
    assert (withdraw.headers["token_id"], withdraw.headers["operation_id"]) == (TOKEN, OP)
    assert reverse.headers["transaction_id"] == "tx_1"
    assert "idempotency" not in logout.headers and logout.headers["token_id"] == TOKEN


def test_deposit_carries_the_amount_and_currency_in_the_path() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/pos/deposit/150.00/AED"
        assert json.loads(request.content) == {"metadata": {"kiosk_reference": "K-deposit"}}
        return httpx.Response(200, json={**OK, "data": {"transaction_id": "dep_9"}})

    session = Session(TOKEN, OP, PHONE)
    got = _run(
        handler,
        lambda c: c.deposit(session, Money.of(15000, "AED"), idempotency="K-deposit"),
    )
    assert got == "dep_9"


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (
            400,
            {"status": {"error_code": "ERROR_INVALID_OTP", "status": "ERROR", "message": "bad"}},
            ProviderRefused,
            "ERROR_INVALID_OTP",
        ),
        (500, {"status": {"error_code": "ERROR_X", "status": "ERROR"}}, ProviderAmbiguous, None),
        (502, "<html>bad gateway</html>", ProviderAmbiguous, None),
        (429, "slow down", ProviderAmbiguous, None),
        (200, "not json", ProviderProtocolError, None),
        (200, {"status": {"status": "WHAT"}}, ProviderProtocolError, None),
    ],
)
def test_errors_are_mapped(status: int, body: object, error: type, code: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(error) as caught:
        _run(handler, lambda c: c.echo())
    if code is not None:
        assert caught.value.code == code  # type: ignore[attr-defined]
        assert caught.value.signed  # type: ignore[attr-defined]


def test_a_connect_error_is_not_delivered_and_a_timeout_is_in_doubt() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    with pytest.raises(ProviderUnavailable):
        _run(refuse, lambda c: c.echo())
    with pytest.raises(ProviderAmbiguous):
        _run(slow, lambda c: c.echo())


def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    for call in (
        lambda c: c.login(POS, "12ab", PHONE),
        lambda c: c.login(POS, OTP, "0044123"),
        lambda c: c.login("../echo", OTP, PHONE),
    ):
        with pytest.raises(ValueError):
            _run(handler, call)


def test_sums_are_exact_decimals() -> None:
    assert wire.path_amount(Money.of(1, "GBP")) == "0.01"
    assert wire.path_amount(Money.of(123456789, "AED")) == "1234567.89"
    assert wire.balance(Decimal("10.5"), "GBP") == Money.of(1050, "GBP")
    assert wire.balance(189, "GBP") == Money.of(18900, "GBP")
    with pytest.raises(ValueError):
        wire.path_amount(Money.of(0, "GBP"))
    from kiosk.errors import MoneyError

    for bad in (1.5, "x", Decimal("0.001"), True):
        with pytest.raises(MoneyError):
            wire.balance(bad, "GBP")
