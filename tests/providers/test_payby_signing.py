"""PayBy signing both ways and the exact Decimal JSON (providers.md §1.3-1.4)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import cache
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.errors import (
    ProviderAmbiguous,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)
from kiosk.money import Money
from kiosk.providers.payby.client import PayByClient
from kiosk.providers.payby.wire import (
    Signer,
    Verifier,
    dumps,
    generate_key_pair,
    loads,
    money_in,
    money_out,
)
from kiosk.sandbox import Sandbox, start_sandbox

STORE = "200000000888"


@cache
def keys(name: str) -> tuple[bytes, bytes]:
    """One RSA pair per name for the whole session (key generation is the slow part)."""
    return generate_key_pair()


@cache
def signer(name: str) -> Signer:
    return Signer(keys(name)[0])  # loading a private key takes ~40 ms: once per test session


# --- signatures ------------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    private, public = keys("store")
    body = b'{"requestTime":1581493898000,"bizContent":{"amount":150.00}}'
    sign = Signer(private).sign(body)
    assert len(sign) == 344  # Base64 of a 2048-bit signature, as in PayBy's samples
    assert Verifier(public).verify(body, sign)


def test_verify_refuses_altered_body_wrong_key_and_garbage() -> None:
    private, public = keys("store")
    body = b'{"a":1}'
    sign = Signer(private).sign(body)
    assert not Verifier(public).verify(b'{"a":2}', sign)
    assert not Verifier(keys("other")[1]).verify(body, sign)
    assert not Verifier(public).verify(body, "not base64 !!")
    assert not Verifier(public).verify(body, base64.b64encode(b"\0" * 256).decode())
    assert not Verifier(public).verify(body, "")


def test_verifier_accepts_bare_base64_key_as_shown_by_the_portal() -> None:
    private, public = keys("store")
    bare = b"".join(line for line in public.splitlines() if not line.startswith(b"-----"))
    assert Verifier(bare).verify(b"x", Signer(private).sign(b"x"))


def test_keys_are_not_shown_in_repr() -> None:
    private, public = keys("store")
    assert "BEGIN" not in repr(Signer(private)) + repr(Verifier(public))


# --- exact JSON ------------------------------------------------------------------------------


def test_decimal_is_a_bare_number() -> None:
    money = money_out(Money.of(15000, "AED"))
    assert dumps({"totalAmount": money}) == b'{"totalAmount":{"currency":"AED","amount":150.00}}'
    assert dumps([Decimal("1E-8"), Decimal("1E+2"), Decimal("-0.10")]) == b"[0.00000001,100,-0.10]"


@pytest.mark.parametrize("bad", [1.5, {"a": [0.1]}, Decimal("NaN"), Decimal("Infinity"), {1: 2}])
def test_dumps_refuses_floats_and_inexact_values(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        dumps(bad)


def test_loads_reads_fractions_as_decimal_and_refuses_nan() -> None:
    assert loads(b'{"amount":150.00,"n":3}') == {"amount": Decimal("150.00"), "n": 3}
    assert type(loads(b"0.1")) is Decimal
    with pytest.raises(ValueError):
        loads(b"NaN")


_decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _decimals | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_numbers = st.recursive(
    st.integers() | _decimals,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.just("k"), inner, max_size=1),
    max_leaves=20,
)
_NUMBER = re.compile(rb"-?\d+(\.\d+)?")


@given(_json)
def test_dumps_round_trips_through_standard_json(value: object) -> None:
    raw = dumps(value)
    assert loads(raw) == value
    assert json.loads(raw, parse_float=Decimal) == value


@given(_numbers)
def test_numbers_are_plain_digits_never_exponents(value: object) -> None:
    for token in re.findall(rb"[^\[\]{},:\"k]+", dumps(value)):
        assert _NUMBER.fullmatch(token), token


@given(st.integers(min_value=-(10**20), max_value=10**20), st.sampled_from(["AED", "BUSD"]))
def test_money_survives_the_wire_exactly(minor: int, code: str) -> None:
    money = Money.of(minor, code)
    assert money_in(loads(dumps(money_out(money)))) == money


@given(st.integers(min_value=1, max_value=10**20 - 1))
def test_busd_is_written_as_decimal_12_8_exactly(minor: int) -> None:
    money = Money.of(minor, "BUSD")
    text = dumps(money_out(money)).decode()
    number = re.search(r'"amount":([0-9.]+)', text)
    assert number is not None
    whole, _, frac = number.group(1).partition(".")
    assert len(whole) <= 12 and len(frac) == 8
    assert money_in(loads(text.encode())) == money


# --- both ways against the sandbox -----------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    private, public = keys("payby")
    (tmp_path / "payby_private_key.pem").write_bytes(private)
    (tmp_path / "payby_public_key.pem").write_bytes(public)
    with start_sandbox(tmp_path) as sb:
        sb.payby.register_merchant(STORE, keys("store")[1], Money.of(100_000, "AED"))
        yield sb


def _post(sb: Sandbox, body: bytes, sign: str | None, partner: str = STORE) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Partner-Id": partner}
    if sign is not None:
        headers["sign"] = sign
    return httpx.post(sb.url + "/sgs/api/member/getBalance", content=body, headers=headers)


def _balance_body(sb: Sandbox) -> bytes:
    return dumps({"requestTime": sb.clock.now_ms(), "bizContent": {"currencyCode": "AED"}})


def test_sandbox_accepts_a_signed_request_and_signs_its_reply(sandbox: Sandbox) -> None:
    body = _balance_body(sandbox)
    reply = _post(sandbox, body, signer("store").sign(body))
    doc = loads(reply.content)
    assert isinstance(doc, dict)
    assert doc["head"]["applyStatus"] == "SUCCESS"
    assert doc["body"]["balanceList"][0]["availableBalance"]["amount"] == Decimal("1000.00")
    payby_key = httpx.get(sandbox.url + "/_sandbox/payby/public-key").content
    assert Verifier(payby_key).verify(reply.content, reply.headers["Sign"])


@pytest.mark.parametrize(
    "case", ["other key", "altered body", "no sign", "unknown partner", "garbage sign"]
)
def test_sandbox_refuses_bad_signatures_with_error(sandbox: Sandbox, case: str) -> None:
    body = _balance_body(sandbox)
    sign: str | None = signer("store").sign(body)
    partner = STORE
    if case == "other key":
        sign = signer("other").sign(body)
    elif case == "altered body":
        body = body.replace(b"AED", b"AEE")
    elif case == "no sign":
        sign = None
    elif case == "unknown partner":
        partner = "200000000999"
    else:
        sign = "Zm9v"
    doc = loads(_post(sandbox, body, sign, partner).content)
    assert isinstance(doc, dict)
    assert doc["head"]["applyStatus"] == "ERROR"
    assert "body" not in doc


def _client(
    http: httpx.AsyncClient, sb: Sandbox, signer_key: bytes, clock: Callable[[], int] | None = None
) -> PayByClient:
    return PayByClient(
        http,
        base_url=sb.url + "/sgs/api",
        partner_id=STORE,
        signer=Signer(signer_key),
        verifier=Verifier(keys("payby")[1]),
        timeout=httpx.Timeout(5.0),
        clock=clock or sb.clock.now_ms,
    )


def test_client_sees_our_rejected_signature_as_refused(sandbox: Sandbox) -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as http:
            with pytest.raises(ProviderRefused) as err:
                await _client(http, sandbox, keys("other")[0]).get_balance("AED")
            assert err.value.code == "403"
            assert await _client(http, sandbox, keys("store")[0]).get_balance("AED") == (
                Money.of(100_000, "AED")
            )

    asyncio.run(go())


# --- replies the client must refuse ----------------------------------------------------------

_OK = {
    "body": {"balanceList": [{"availableBalance": {"currency": "AED", "amount": Decimal("5.00")}}]},
    "head": {"applyStatus": "SUCCESS", "code": "0", "msg": "SUCCESS"},
}


def _fail(code: str) -> dict[str, object]:
    return {"head": {"applyStatus": "FAIL", "code": code, "msg": "X"}}


def _mock_client(reply: Callable[[], httpx.Response]) -> PayByClient:
    transport = httpx.MockTransport(lambda request: reply())
    return PayByClient(
        httpx.AsyncClient(transport=transport),
        base_url="https://api.payby.test/sgs/api",
        partner_id=STORE,
        signer=signer("store"),
        verifier=Verifier(keys("payby")[1]),
        timeout=httpx.Timeout(1.0),
        clock=lambda: 1_700_000_000_000,
    )


def _balance(reply: Callable[[], httpx.Response]) -> Money:
    return asyncio.run(_mock_client(reply).get_balance("AED"))


def _signed(doc: object, key: str = "payby", alter: bytes = b"") -> httpx.Response:
    raw = dumps(doc)
    sign = signer(key).sign(raw)
    return httpx.Response(200, content=raw + alter, headers={"SIGN": sign})


def test_client_accepts_a_properly_signed_reply_any_header_case() -> None:
    assert _balance(lambda: _signed(_OK)) == Money.of(500, "AED")


@pytest.mark.parametrize(
    "reply",
    [
        lambda: _signed(_OK, key="other"),  # forged: signed with another key
        lambda: _signed(_OK, alter=b" "),  # altered after signing
        lambda: httpx.Response(200, content=dumps(_OK)),  # unsigned success
        lambda: httpx.Response(200, content=dumps(_fail("62001"))),  # unsigned business code
        lambda: httpx.Response(200, content=dumps(_OK), headers={"sign": "!!"}),
    ],
    ids=["other key", "altered", "unsigned success", "unsigned 62001", "garbage sign"],
)
def test_client_refuses_forged_or_unsigned_replies(reply: Callable[[], httpx.Response]) -> None:
    with pytest.raises(ProviderProtocolError):
        _balance(reply)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("400", ProviderRefused),
        ("402", ProviderUnavailable),
        ("403", ProviderAuthFailed),  # UNAUTHORIZED: our keys or address
        ("404", ProviderUnavailable),
        ("500", ProviderAmbiguous),
        ("504", ProviderAmbiguous),
        ("601", ProviderRefused),
        ("58012", ProviderRefused),
    ],
)
def test_missing_sign_tolerated_only_on_generic_codes(code: str, error: type[Exception]) -> None:
    with pytest.raises(error) as err:
        _balance(lambda: httpx.Response(200, content=dumps(_fail(code))))
    assert getattr(err.value, "code", None) == code


def test_sandbox_may_omit_sign_on_generic_errors_and_client_copes(sandbox: Sandbox) -> None:
    sandbox.payby.omit_sign_on_generic_errors = True
    body = dumps({"requestTime": 1, "bizContent": {"currencyCode": "AED"}})  # far too early
    reply = _post(sandbox, body, signer("store").sign(body))
    assert "sign" not in reply.headers
    assert reply.json()["head"]["code"] == "400"

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            client = _client(http, sandbox, keys("store")[0], clock=lambda: 1)
            with pytest.raises(ProviderRefused, match="REQUESTTIME_TOO_EARLY"):
                await client.get_balance("AED")

    asyncio.run(go())
