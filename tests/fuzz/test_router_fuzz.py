"""The router fuzzed: whatever the text, ``kiosk.router.route`` returns a request or raises a
clean PayloadError; valid codes with another script's digits, spaces or a field twice are
refused; valid codes and their equivalent forms route to their request.

The short form for CI (300 examples a test); ``kiosk bench fuzz router --seconds N`` is the
long form (:func:`kiosk.fuzz.router.fuzz_router`), over the same properties.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.fuzz import router as fuzz
from kiosk.money import Money
from kiosk.providers.paysera.codes import PayseraCashOut

SHORT = settings(max_examples=300, deadline=None)
randoms = st.randoms(use_true_random=False)


@SHORT
@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    fuzz.total(text)


@SHORT
@given(st.text(st.characters(exclude_categories=()), max_size=100))  # lone surrogates too
def test_any_code_point(text: str) -> None:
    fuzz.total(text)


@SHORT
@given(st.text(st.characters(max_codepoint=255), max_size=100))
def test_byteish_text(text: str) -> None:
    fuzz.total(text)


@SHORT
@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    fuzz.total_bytes(data)


@SHORT
@given(st.lists(st.sampled_from(fuzz.TOKENS), min_size=1, max_size=16).map("".join))
def test_sentences_of_the_codes_own_pieces(text: str) -> None:
    fuzz.total(text)


@SHORT
@given(st.integers(fuzz.MAX_PAYLOAD - 2, fuzz.MAX_PAYLOAD + 2), st.sampled_from("0aé "))
def test_the_size_limit(n: int, c: str) -> None:
    fuzz.total(c * n)


@pytest.mark.parametrize("name", sorted(fuzz.PROPERTIES))
@SHORT
@given(rng=randoms)
def test_each_property(name: str, rng: random.Random) -> None:
    assert fuzz.PROPERTIES[name](rng) in ("routed", "refused")


@SHORT
@given(randoms)
def test_valid_codes_route_to_their_request_every_time(rng: random.Random) -> None:
    code = fuzz.valid(rng)
    assert fuzz.same("valid", code.text, code) == "routed"


def test_the_checks_catch_what_they_look_for() -> None:
    """The properties fail on what they guard against (a fuzzer that cannot fail is no test)."""
    reservation = "0155567464130298871198969060"
    code = fuzz.Code(reservation, PayseraCashOut(reservation), (reservation,))
    with pytest.raises(fuzz.Broken, match="accepted"):
        fuzz.refused("p", reservation, code)
    with pytest.raises(fuzz.Broken, match="routed to"):
        fuzz.same("p", reservation, fuzz.Code(reservation, PayseraCashOut(reservation[::-1])))
    for message in (reservation, "a 12345 number", "héllo", "x" * 201):
        with pytest.raises(fuzz.Broken):
            fuzz._clean("p", reservation, message, (reservation,))
    fuzz._clean("p", reservation, "28 digits: a Paysera reservation code has 28", ())


def test_the_long_form_runs_for_its_time_and_reports() -> None:
    lines: list[str] = []
    assert fuzz.fuzz_router(0.5, 7, out=lines.append) == 0
    assert "0 failures" in lines[0]
    assert all(f"{name} " in lines[1] for name in fuzz.PROPERTIES)


def test_a_generated_amount_is_the_envelope_amount() -> None:
    rng = random.Random(3)
    for _ in range(200):
        text, code, money = fuzz._amount(rng)
        assert Money.from_decimal(text, code) == money
