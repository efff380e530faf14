"""Money as integer minor units with the currency's exponent. No floats anywhere.

Only the generic forms live here: integer minor units, exact decimals (``Decimal`` or a
decimal string) with the currency's exponent, refusing what they cannot represent. Each
provider's own wire format (a JSON number, a path segment, an object) is in its provider
package (``kiosk/providers/<name>/wire.py``), built on these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Final

from kiosk.errors import MoneyError


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO-4217-style code and its exponent (number of decimals of the minor unit)."""

    code: str
    exponent: int


CURRENCIES: Final[dict[str, Currency]] = {
    c.code: c
    for c in (
        Currency("AED", 2),
        Currency("EUR", 2),
        Currency("GBP", 2),
        Currency("USD", 2),
        Currency("SYP", 2),
        Currency("TRY", 2),
        Currency("BUSD", 8),  # PayBy crypto refunds, Decimal(12,8)
    )
}

_DECIMAL_RE: Final = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", re.ASCII)

MAX_MINOR_DIGITS: Final = 24
"""A decimal read as money has at most 24 digits of minor units: more than any wire format
carries (PayBy's Decimal(12,8) has 20), and no ``1`` and sixty zeros from outside."""


def currency(code: str) -> Currency:
    """The currency for ``code``, or :class:`MoneyError` naming the supported ones."""
    try:
        return CURRENCIES[code]
    except (KeyError, TypeError):
        raise MoneyError(
            f"unknown currency {code!r}; supported: {', '.join(sorted(CURRENCIES))}"
        ) from None


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``minor`` units of ``currency`` (15000 AED = AED 150.00)."""

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        if type(self.minor) is not int:  # bool and float are refused on purpose
            raise MoneyError(f"minor units must be an int, got {type(self.minor).__name__}")

    @classmethod
    def of(cls, minor: int, code: str) -> Money:
        return cls(minor, currency(code))

    @classmethod
    def zero(cls, code: str) -> Money:
        return cls(0, currency(code))

    @property
    def code(self) -> str:
        return self.currency.code

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise MoneyError(f"cannot combine {self.code} with {other.code}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def to_decimal(self) -> Decimal:
        """The major-unit value with exactly ``exponent`` decimals: ``Decimal('150.00')``."""
        return Decimal(self.minor).scaleb(-self.currency.exponent)

    def to_decimal_str(self) -> str:
        """``'150.00'``; never scientific notation."""
        return f"{self.to_decimal():.{self.currency.exponent}f}"

    def __str__(self) -> str:
        return f"{self.code} {self.to_decimal_str()}"

    @classmethod
    def from_decimal(cls, value: Decimal | int | str, code: str) -> Money:
        """Exact conversion from a major-unit decimal; refuses extra precision, NaN, floats,
        digits other than ASCII and amounts of more than :data:`MAX_MINOR_DIGITS` digits of
        minor units."""
        cur = currency(code)
        if isinstance(value, (bool, float)):
            raise MoneyError(f"refusing {type(value).__name__} amount {value!r}: not exact")
        if isinstance(value, str):
            text = value.strip()
            if not _DECIMAL_RE.fullmatch(text):
                raise MoneyError(f"not a decimal amount: {value!r}")
            value = Decimal(text)
        try:
            dec = Decimal(value)
            if not dec.is_finite():
                raise MoneyError(f"not a finite amount: {value!r}")
            if dec and dec.adjusted() + cur.exponent >= MAX_MINOR_DIGITS:
                raise MoneyError(
                    f"too large: at most {MAX_MINOR_DIGITS} digits of {code} minor units"
                )
            # a precision that holds every digit: the scaling is exact, never rounded
            scaled = dec.scaleb(cur.exponent, Context(prec=len(dec.as_tuple().digits) + 1))
            if scaled != scaled.to_integral_value():
                raise MoneyError(f"{value} {code} has more than {cur.exponent} decimals")
            return cls(int(scaled), cur)
        except InvalidOperation as exc:
            raise MoneyError(f"not a decimal amount: {value!r}") from exc

    @classmethod
    def parse(cls, text: str) -> Money:
        """``'AED 150.00'`` or ``'150.00 AED'`` (CLI and config input)."""
        parts = text.split()
        if len(parts) != 2:
            raise MoneyError(f"expected 'CUR 12.34', got {text!r}")
        a, b = parts
        if a.isalpha():
            return cls.from_decimal(b, a.upper())
        return cls.from_decimal(a, b.upper())

    @classmethod
    def from_minor_units(cls, value: object, code: str) -> Money:
        """From a JSON integer of minor units (refusing anything else, bools included)."""
        if type(value) is not int:
            raise MoneyError(f"expected integer minor units, got {value!r}")
        return cls(value, currency(code))
