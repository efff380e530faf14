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


OTHER_DIGITS = (0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0xFF10, 0x1D7CE)  # zeros of 7 scripts


@pytest.mark.parametrize("zero", OTHER_DIGITS)
def test_digits_of_other_scripts_are_not_an_amount(zero: int) -> None:
    """``Decimal()`` and ``int()`` read any script's digits; an amount is ASCII only."""
    for text in ("".join(chr(zero + int(d)) for d in "150"), "1" + chr(zero + 5) + ".00"):
        with pytest.raises(MoneyError, match="not a decimal"):
            Money.from_decimal(text, "AED")


@pytest.mark.parametrize(
    "value",
    ["1" + "0" * 60, "1" + "0" * 23, Decimal("1E+60"), Decimal("-1E+30"), 10**40],
)
def test_absurd_amounts_are_refused(value: object) -> None:
    with pytest.raises(MoneyError, match="too large"):
        Money.from_decimal(value, "AED")  # type: ignore[arg-type]
    assert Money.from_decimal("1" + "0" * 21, "AED").minor == 10**23  # 24 digits: the limit


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("1234567890123456789012.99", "AED"),  # 24 digits of minor units: the most
        ("1234567890123456.12345678", "BUSD"),
        ("1." + "0" * 40 + "1", "AED"),  # once read as 1.00: the last digit rounded away
        ("0.00" + "0" * 30 + "1", "BUSD"),
        ("7." + "0" * 40, "EUR"),  # trailing zeros only: 7.00
    ],
)
def test_conversion_is_exact_beyond_the_default_precision(value: str, code: str) -> None:
    whole, _, frac = value.partition(".")
    exponent = currency(code).exponent
    if len(frac.rstrip("0")) > exponent:
        with pytest.raises(MoneyError, match="decimals"):
            Money.from_decimal(value, code)
    else:
        expected = int(whole) * 10**exponent + int(frac.ljust(exponent, "0"))
        assert Money.from_decimal(value, code).minor == expected
