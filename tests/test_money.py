from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.errors import MoneyError
from kiosk.money import CURRENCIES, Money, currency

codes = st.sampled_from(sorted(CURRENCIES))
minor = st.integers(min_value=0, max_value=10**14)


@given(codes, minor)
def test_decimal_string_round_trip(code: str, n: int) -> None:
    m = Money.of(n, code)
    text = m.to_decimal_str()
    assert "e" not in text.lower()
    assert len(text.split(".")[1]) == currency(code).exponent
    assert Money.from_decimal(text, code) == m


@given(codes, minor)
def test_payby_round_trip_through_json_number(code: str, n: int) -> None:
    from kiosk.providers.payby.wire import dumps, loads, money_in, money_out

    m = Money.of(n, code)
    wire = dumps({"amount": money_out(m)})
    assert f'"amount":{m.to_decimal_str()}}}'.encode() in wire  # a bare, fixed-point number
    assert money_in(loads(wire)["amount"]) == m
    assert money_in({"currency": code, "amount": m.to_decimal_str()}) == m


@given(codes, minor)
def test_minor_units_round_trip(code: str, n: int) -> None:
    m = Money.of(n, code)
    assert Money.from_minor_units(m.minor, code) == m


def test_busd_has_eight_decimals() -> None:
    assert Money.from_decimal("12.12345678", "BUSD").minor == 1212345678
    assert str(Money.of(1, "BUSD")) == "BUSD 0.00000001"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (1.5, "AED"),
        (True, "AED"),
        ("1.005", "AED"),
        ("0.000000001", "BUSD"),
        ("NaN", "EUR"),
        ("1e3", "EUR"),
        ("12,34", "EUR"),
        (Decimal("Infinity"), "USD"),
        ("1.00", "XXX"),
    ],
)
def test_inexact_or_unknown_amounts_are_refused(value: object, code: str) -> None:
    with pytest.raises(MoneyError):
        Money.from_decimal(value, code)  # type: ignore[arg-type]


def test_floats_and_bools_never_become_money() -> None:
    with pytest.raises(MoneyError):
        Money(1.0, currency("AED"))  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money.from_minor_units(True, "EUR")
    from kiosk.providers.payby.wire import money_in

    with pytest.raises(MoneyError):
        money_in({"currency": "AED", "amount": 1.5})


def test_currencies_do_not_mix() -> None:
    with pytest.raises(MoneyError):
        Money.of(1, "AED") + Money.of(1, "EUR")
    with pytest.raises(MoneyError):
        assert Money.of(1, "AED") < Money.of(2, "EUR")


def test_parse_and_arithmetic() -> None:
    assert Money.parse("AED 150.00") == Money.parse("150 AED") == Money.of(15000, "AED")
    assert Money.of(10000, "AED") + Money.of(5000, "AED") == Money.of(15000, "AED")
    assert Money.of(5000, "AED") < Money.of(15000, "AED")
    with pytest.raises(MoneyError):
        Money.parse("150")
