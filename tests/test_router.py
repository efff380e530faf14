"""The payload router: every kind of code, through each provider's own recogniser, and clean
refusals of everything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.providers.payby.codes import PayByTopUp
from kiosk.providers.payby.config import PayByConfig
from kiosk.providers.paysera.codes import PayseraCashIn, PayseraCashOut
from kiosk.router import kind_of, route, route_bytes

CONFIGS = {"payby": PayByConfig(token_hosts=("checkout.payby.com",))}
TOKEN = "https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft=9f8e7d&t=1700000000000"
RESERVATION = "0155567464130298871198969060"


def test_every_kind() -> None:
    assert route(TOKEN, configs=CONFIGS) == PayByTopUp(TOKEN)
    assert route(RESERVATION) == PayseraCashOut(RESERVATION)
    assert route("EVP000000014471") == PayseraCashIn(14471)
    env = route(f"kiosk:cashout?v=1&provider=paysera&code={RESERVATION}&amount=50.00&currency=EUR")
    assert env == PayseraCashOut(RESERVATION, Money.of(5000, "EUR"))
    bare = route(f"kiosk:cashout?v=1&provider=paysera&code={RESERVATION}")
    assert bare == PayseraCashOut(RESERVATION, None)  # the customer picks a preset


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"kiosk:cashin?v=1&provider=paysera&code={RESERVATION}", "cash-in: EVP code"),
        ("kiosk:cashin?v=1&provider=paysera&amount=5.00&currency=EUR", "carries no amount"),
        ("kiosk:refund?v=1&provider=paysera", "one of cashout, cashin"),
        (f"kiosk:cashout?v=1&provider=paysera&code={RESERVATION}&currency=EUR", "amount"),
    ],
)
def test_envelope_actions(text: str, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        route(text)


def test_a_payby_link_is_known_without_a_payby_table_by_the_default_hosts() -> None:
    assert route(TOKEN).kind == "payby_tokenurl"  # refused later: PayBy is not configured
    with pytest.raises(PayloadError, match="not an accepted provider host"):
        route(TOKEN, configs={"payby": PayByConfig(token_hosts=("other.example",))})


def test_secrets_stay_out_of_repr() -> None:
    for request in (
        route(TOKEN, configs=CONFIGS),
        route(RESERVATION),
        route(f"kiosk:cashout?v=1&provider=paysera&code={RESERVATION}&amount=5&currency=EUR"),
    ):
        assert RESERVATION not in repr(request)
        assert "ft=9f8e7d" not in repr(request)


ARABIC_INDIC = "".join(chr(0x0660 + int(d)) for d in RESERVATION)
FULL_WIDTH = "EVP" + "".join(chr(0xFF10 + int(d)) for d in "000000014471")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://evil.example/pay-page/main?ft=1", "not an accepted provider host"),
        ("http://checkout.payby.com/pay-page/main?ft=1", "not https"),
        ("https://evil.example.com\\@checkout.payby.com/x", "user info"),
        ("https://user@checkout.payby.com/x", "user info"),
        ("0155567464130298871198969", "a Paysera reservation code has 28"),
        ("01555674641302988711989690601", "a Paysera reservation code has 28"),
        (ARABIC_INDIC, "not a code this kiosk knows"),
        (FULL_WIDTH, "EVP and 12 digits"),
        ("EVP00000001447", "EVP and 12 digits"),
        ("EVP0000000144711", "EVP and 12 digits"),
        ("EVP000000000000", "EVP and 12 digits"),
        ("EVPabcdefghijkl", "EVP and 12 digits"),
        (RESERVATION + " ", "leading or trailing spaces"),
        (" EVP000000014471", "leading or trailing spaces"),
        ("hello world", "not a code this kiosk knows"),
        ("", "control characters or nothing"),
        ("abc\x07def", "control characters"),
        ("line1\nline2", "control characters"),
        ("A" * 4096, "too long"),
        ("kiosk:cashout?v=2&provider=paysera", "version"),
        ("kiosk:cashout?v=1&provider=nobody&amount=1&currency=AED", "provider must be"),
        ("kiosk:cashout?v=1&provider=payby&code=1&amount=1&currency=AED", "no other field"),
        ("kiosk:cashout?v=1&provider=paysera&amount=1.005&currency=EUR", "amount"),
        ("kiosk:cashout?v=1&provider=paysera&amount=-5&currency=EUR", "amount"),
        ("kiosk:cashout?v=1&provider=paysera&amount=0&currency=EUR", "positive"),
        ("kiosk:cashout?v=1&provider=paysera&amount=1" + "0" * 60 + "&currency=EUR", "digits"),
        ("kiosk:cashout?v=1&provider=paysera&amount=" + chr(0x0665) + "&currency=EUR", "amount"),
        ("kiosk:cashout?v=1&provider=paysera&amount=5&currency=XXX", "amount"),
        ("kiosk:cashout?v=1&provider=paysera&code=123&amount=5&currency=EUR", "28 digits"),
        ("kiosk:refund?v=1&provider=paysera", "unknown request"),
        ("kiosk:cashout?v=1&&&provider", "malformed"),
    ],
)
def test_refusals_are_clean_and_never_echo_the_code(text: str, why: str) -> None:
    with pytest.raises(PayloadError, match=why) as err:
        route(text, configs=CONFIGS)
    for secret in (RESERVATION, "ft=1"):
        if secret in text:
            assert secret not in str(err.value)
    assert kind_of(text, configs=CONFIGS) == "unknown"


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
        route(text, configs=CONFIGS)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_clean_refusal(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        route_bytes(data, configs=CONFIGS)
