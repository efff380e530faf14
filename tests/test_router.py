"""The payload router: every kind of code, and clean refusals of everything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.router import (
    CashOutEnvelope,
    PayByTopUp,
    PayseraCashIn,
    PayseraReservation,
    RapydOtp,
    kind_of,
    route,
    route_bytes,
)

HOSTS = ("checkout.payby.com",)
TOKEN = "https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft=9f8e7d&t=1700000000000"
RESERVATION = "0155567464130298871198969060"


def test_every_kind() -> None:
    assert route(TOKEN, payby_hosts=HOSTS) == PayByTopUp(TOKEN)
    assert route(RESERVATION) == PayseraReservation(RESERVATION)
    assert route("EVP000000014471") == PayseraCashIn(14471)
    assert route("kiosk:otp?v=1&provider=rapyd&code=876680&phone=%2B971501234567") == (
        RapydOtp("876680", "+971501234567")
    )
    env = route(f"kiosk:cashout?v=1&provider=paysera&code={RESERVATION}&amount=50.00&currency=EUR")
    assert env == CashOutEnvelope("paysera", Money.of(5000, "EUR"), code=RESERVATION)
    rapyd = route(
        "kiosk:cashout?v=1&provider=rapyd&code=876680&phone=%2B15551234567&amount=100&currency=USD"
    )
    assert isinstance(rapyd, CashOutEnvelope) and rapyd.phone == "+15551234567"
    assert rapyd.amount == Money.of(10000, "USD")
    cashii = route("kiosk:cashout?v=1&provider=cashii&amount=250.00&currency=SYP")
    assert isinstance(cashii, CashOutEnvelope) and cashii.code is None


def test_secrets_stay_out_of_repr() -> None:
    for request in (
        route(TOKEN, payby_hosts=HOSTS),
        route(RESERVATION),
        route("kiosk:otp?v=1&provider=rapyd&code=876680&phone=%2B971501234567"),
    ):
        assert "876680" not in repr(request) and RESERVATION not in repr(request)
        assert "ft=9f8e7d" not in repr(request)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://evil.example/pay-page/main?ft=1", "not an accepted provider host"),
        ("http://checkout.payby.com/pay-page/main?ft=1", "not https"),
        ("0155567464130298871198969", "a Paysera reservation code has 28"),
        ("01555674641302988711989690601", "a Paysera reservation code has 28"),
        ("EVP00000001447", "EVP and 12 digits"),
        ("EVP0000000144711", "EVP and 12 digits"),
        ("EVPabcdefghijkl", "EVP and 12 digits"),
        ("hello world", "not a code this kiosk knows"),
        ("", "control characters or nothing"),
        ("abc\x07def", "control characters"),
        ("line1\nline2", "control characters"),
        ("A" * 4096, "too long"),
        ("kiosk:cashout?v=2&provider=paysera", "version"),
        ("kiosk:cashout?v=1&provider=payby&amount=1&currency=AED", "provider must be"),
        ("kiosk:cashout?v=1&provider=cashii&amount=1.005&currency=SYP", "amount"),
        ("kiosk:cashout?v=1&provider=cashii&amount=-5&currency=SYP", "amount"),
        ("kiosk:cashout?v=1&provider=cashii&amount=0&currency=SYP", "positive"),
        ("kiosk:cashout?v=1&provider=cashii&amount=5&currency=XXX", "amount"),
        ("kiosk:cashout?v=1&provider=paysera&code=123&amount=5&currency=EUR", "28 digits"),
        ("kiosk:cashout?v=1&provider=rapyd&code=876680&amount=5&currency=USD", "E.164"),
        ("kiosk:otp?v=1&provider=rapyd&code=12&phone=%2B971501234567", "4 to 8 digits"),
        ("kiosk:refund?v=1&provider=rapyd", "unknown request"),
        ("kiosk:cashout?v=1&&&provider", "malformed"),
    ],
)
def test_refusals_are_clean_and_never_echo_the_code(text: str, why: str) -> None:
    with pytest.raises(PayloadError, match=why) as err:
        route(text, payby_hosts=HOSTS)
    for secret in (RESERVATION, "876680", "ft=1"):
        if secret in text:
            assert secret not in str(err.value)
    assert kind_of(text, payby_hosts=HOSTS) == "unknown"


def test_non_utf8_and_oversized_bytes_are_refused() -> None:
    with pytest.raises(PayloadError, match="not UTF-8"):
        route_bytes(b"\xff\xfe\x00EVP")
    with pytest.raises(PayloadError, match="too long"):
        route_bytes(b"1" * 5000)
    assert route_bytes(b"EVP000000014471") == PayseraCashIn(14471)


def test_a_used_code_is_refused() -> None:
    used = {RESERVATION}
    with pytest.raises(PayloadError, match="already used"):
        route(RESERVATION, seen=used.__contains__)
    assert route("EVP000000014471", seen=used.__contains__).kind == "paysera_cashin"


@given(st.text(max_size=300))
def test_any_text_is_a_request_or_a_clean_refusal(text: str) -> None:
    with contextlib.suppress(PayloadError):
        route(text, payby_hosts=HOSTS)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_clean_refusal(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        route_bytes(data, payby_hosts=HOSTS)
