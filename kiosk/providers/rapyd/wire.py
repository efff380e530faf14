"""Rapyd's money on the wire: decimal sums in URL paths (``withdraw/{account}/{sum}``,
``deposit/{amount}/{currency}``) and ``account_balance`` numbers in replies. Converted exactly
from and to integer minor units with the currency's exponent; never through a float."""

from __future__ import annotations

from decimal import Decimal

from kiosk.errors import MoneyError
from kiosk.money import Money


def path_amount(amount: Money) -> str:
    """``Money.of(1000, "GBP")`` → ``"10.00"``: the currency's decimals, always written."""
    if amount.minor <= 0:
        raise ValueError("a Rapyd amount is positive")
    return amount.to_decimal_str()


def balance(value: object, currency: str) -> Money:
    """An ``account_balance`` (a JSON number in major units: ``189``, ``10.5``) as Money.
    The JSON reader hands it over as ``int`` or ``Decimal`` (``parse_float=Decimal``); a
    balance with more decimals than the currency has is refused (MoneyError)."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise MoneyError(f"not a balance: {value!r}")
    return Money.from_decimal(value, currency)
