"""The Paysera sandbox against the kiosk's own client, over loopback: the MAC checked as
Paysera does, the transaction state machine, and the seed's scenarios at the API level."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiosk.errors import ProviderRefused
from kiosk.money import Money
from kiosk.providers.paysera.client import PayseraClient
from kiosk.providers.paysera.mac import MacSigner
from kiosk.sandbox.server import Sandbox, start_sandbox

CLIENT, KEY = "kioskTest01", "k" * 32


def _hook(sb: Sandbox, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"{sb.url}/_sandbox/paysera/{path}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _with_client(
    tmp_path: Path, scenario: Callable[[Sandbox, PayseraClient], Awaitable[None]], *, key: str = KEY
) -> None:
    async def go() -> None:
        with start_sandbox(tmp_path / "sb") as sb:
            _hook(sb, "clients", {"client_id": CLIENT, "mac_key": KEY})
            async with httpx.AsyncClient() as http:
                client = PayseraClient(
                    http,
                    base_url=f"{sb.url}/rest/v1",
                    signer=MacSigner(CLIENT, key, clock=lambda: sb.clock.now_ms() // 1000),
                    timeout=httpx.Timeout(5.0),
                )
                await scenario(sb, client)

    asyncio.run(go())


def _wallet(sb: Sandbox, balance: int) -> tuple[int, str]:
    w = _hook(sb, "wallets", {"currency": "EUR", "balance": balance})
    return w["wallet_id"], _hook(sb, "codes", {"wallet_id": w["wallet_id"]})["code"]


def test_cash_out_with_a_code_moves_the_money_once(tmp_path: Path) -> None:
    async def scenario(sb: Sandbox, c: PayseraClient) -> None:
        wallet, code = _wallet(sb, 10000)
        tx = await c.create(Money.of(5000, "EUR"), "Cash withdrawal", reserve_for_s=300)
        assert tx.status == "new"
        tx = await c.reserve_with_code(tx.key, code)
        assert (tx.status, tx.type, tx.wallet) == ("reserved", "reservation_code", wallet)
        tx = await c.confirm(tx.key)
        assert tx.status == "confirmed"
        assert sb.paysera.wallets[str(wallet)]["balance"] == 5000
        with pytest.raises(ProviderRefused) as again:
            await c.confirm(tx.key)
        assert again.value.code == "invalid_state"

    _with_client(tmp_path, scenario)


@pytest.mark.parametrize(
    ("setup", "code_wanted"),
    [
        ("insufficient", "not_enough_funds"),
        ("invalid", "invalid_parameters"),
        ("expired", "invalid_parameters"),
    ],
)
def test_seed_refusals(tmp_path: Path, setup: str, code_wanted: str) -> None:
    async def scenario(sb: Sandbox, c: PayseraClient) -> None:
        _, code = _wallet(sb, 1000 if setup == "insufficient" else 10000)
        if setup == "invalid":
            code = "1" * 28
        if setup == "expired":
            _hook(sb, "codes/expire", {"code": code})
        tx = await c.create(Money.of(5000, "EUR"), "Cash withdrawal", reserve_for_s=300)
        with pytest.raises(ProviderRefused) as refused:
            await c.reserve_with_code(tx.key, code)
        assert refused.value.code == code_wanted
        assert (await c.revoke(tx.key)).status == "revoked"  # the kiosk cancels

    _with_client(tmp_path, scenario)


def test_cash_in_reserves_to_the_wallet_through_the_allowance(tmp_path: Path) -> None:
    async def scenario(sb: Sandbox, c: PayseraClient) -> None:
        wallet, _ = _wallet(sb, 0)
        tx = await c.create(
            Money.of(2000, "EUR"), "Cash deposit", reserve_for_s=300, allowance_id=77
        )
        tx = await c.reserve_to_wallet(tx.key, wallet)
        assert (tx.status, tx.type) == ("reserved", "automatic")
        await c.confirm(tx.key)
        assert sb.paysera.wallets[str(wallet)]["balance"] == 2000

    _with_client(tmp_path, scenario)


def test_a_wrong_mac_and_a_stale_ts_are_unauthorized(tmp_path: Path) -> None:
    async def wrong(sb: Sandbox, c: PayseraClient) -> None:
        with pytest.raises(ProviderRefused) as refused:
            await c.create(Money.of(100, "EUR"), "x", reserve_for_s=60)
        assert refused.value.code == "unauthorized"

    _with_client(tmp_path / "a", wrong, key="w" * 32)

    async def stale(sb: Sandbox, c: PayseraClient) -> None:
        _hook(sb, "clients", {"client_id": CLIENT, "mac_key": KEY})
        urllib.request.urlopen(
            urllib.request.Request(
                f"{sb.url}/_sandbox/clock", json.dumps({"advance_s": 600}).encode()
            ),
            timeout=5,
        ).read()
        c._signer = MacSigner(CLIENT, KEY)  # signs with the wall clock: now 10 min behind
        with pytest.raises(ProviderRefused) as refused:
            await c.get("abcdEFGH")
        assert refused.value.code == "unauthorized"

    _with_client(tmp_path / "b", stale)
