"""The provider clients against hostile replies (issue 16): every call returns its documented
result or raises a ProviderError, never anything else; an unsigned or forged PayBy reply is
never a success. Replies are made by :mod:`kiosk.fuzz.providers` from the randomness
hypothesis hands over; the known bugs are pinned below as strict xfails."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.errors import ProviderProtocolError
from kiosk.fuzz import providers as fuzz
from kiosk.fuzz.providers import CALLS, HUGE, Harness, Outcome, Reply

SHORT = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN: dict[str, tuple[str, ...]] = {}
"""Bugs found by this fuzzer and not fixed yet, tolerated in the random tests (none now: the
four it found — a Paysera or Cashii status of another type, Paysera's payments a number, a
non-ASCII cookie poisoning the next call — are fixed and tested below)."""


@pytest.fixture(scope="module")
def h() -> Iterator[Harness]:
    logging.disable(logging.CRITICAL)  # millions of warnings otherwise; nothing else to see
    try:
        with fuzz.harness() as harness:
            yield harness
    finally:
        logging.disable(logging.NOTSET)


def holds(client: str, got: Outcome) -> bool:
    if got.failure is None:
        return True
    known = KNOWN.get(client)
    return known is not None and all(part in got.failure for part in known)


def _property(h: Harness, client: str, call: str, rng: random.Random) -> None:
    r = fuzz.reply(rng, client, call)
    got = h.check(client, call, r)
    assert holds(client, got), f"{client}.{call}: {got.failure} ({r.kind})"


# --- the short form: 100 replies per client ----------------------------------------------------


@SHORT
@given(call=st.sampled_from(CALLS["payby"]), rng=st.randoms(use_true_random=False))
def test_payby_any_reply(h: Harness, call: str, rng: random.Random) -> None:
    _property(h, "payby", call, rng)


@SHORT
@given(call=st.sampled_from(CALLS["paysera"]), rng=st.randoms(use_true_random=False))
def test_paysera_any_reply(h: Harness, call: str, rng: random.Random) -> None:
    _property(h, "paysera", call, rng)


@SHORT
@given(call=st.sampled_from(CALLS["rapyd"]), rng=st.randoms(use_true_random=False))
def test_rapyd_any_reply(h: Harness, call: str, rng: random.Random) -> None:
    _property(h, "rapyd", call, rng)


@SHORT
@given(call=st.sampled_from(CALLS["cashii"]), rng=st.randoms(use_true_random=False))
def test_cashii_any_reply(h: Harness, call: str, rng: random.Random) -> None:
    _property(h, "cashii", call, rng)


# --- the shapes are the real ones: unmutated, every call succeeds -------------------------------

ALL_CALLS = [(client, call) for client in fuzz.CLIENTS for call in CALLS[client]]


def _made(client: str, status: int, doc: object) -> Reply:
    raw = fuzz.dump(doc).encode()
    if client == "payby":
        return fuzz.signed_reply(status, raw)
    return Reply(status, [], raw, "made")


@pytest.mark.parametrize(("client", "call"), ALL_CALLS)
def test_the_real_reply_is_taken(h: Harness, client: str, call: str) -> None:
    status, doc = fuzz.valid(client, call)
    assert h.check(client, call, _made(client, status, doc)) == Outcome("returned")


# --- huge, deep, broken ---------------------------------------------------------------------------


def _fields(doc: object, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*path, k)
            yield from _fields(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*path, i)
            yield from _fields(v, (*path, i))


_HUGE_CALLS = [("payby", "get_order"), ("payby", "place_order"), ("payby", "get_refund"),
               ("paysera", "get"), ("rapyd", "login"), ("rapyd", "withdraw"),
               ("cashii", "get"), ("cashii", "create")]  # fmt: skip


@pytest.mark.parametrize(("client", "call"), _HUGE_CALLS)
def test_a_5_mb_string_in_any_field(h: Harness, client: str, call: str) -> None:
    status, doc = fuzz.valid(client, call)
    for path in _fields(doc):
        copy = fuzz.mutate(random.Random(0), doc, 0)[0]
        box = copy
        for step in path[:-1]:
            box = box[step]  # type: ignore[index]
        box[path[-1]] = "7" * HUGE  # type: ignore[index]
        got = h.check(client, call, _made(client, status, copy))
        assert got.failure is None, (path, got.failure)


BROKEN = [
    b"",
    b"{",
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b"\xff\xfe\x00",
    b"NaN",
    b"1" * 5000,
    b"\xef\xbb\xbf{}",
    b"<html>502</html>",
    b"[]",
    b"null",
    b'"x"',
    b"12",
    b"9" * HUGE,
]


@pytest.mark.parametrize(("client", "call"), ALL_CALLS)
def test_invalid_json_and_deep_nesting(h: Harness, client: str, call: str) -> None:
    status, _ = fuzz.valid(client, call)
    for raw in BROKEN:
        for code in (status, 400, 500):
            r = fuzz.signed_reply(code, raw) if client == "payby" else Reply(code, [], raw, "b")
            got = h.check(client, call, r)
            assert got.failure is None and got.label != "returned", (raw[:20], code, got)


# --- PayBy: no success without PayBy's signature ------------------------------------------------


@pytest.mark.parametrize("call", CALLS["payby"])
@pytest.mark.parametrize("sign", ["missing", "impostor", "other-body", "store", "garbage", "empty"])
def test_payby_success_without_its_signature_is_refused(h: Harness, call: str, sign: str) -> None:
    _, doc = fuzz.valid("payby", call)
    raw = fuzz.dump(doc).encode()
    k = fuzz.keys()
    header = {
        "missing": None,
        "impostor": k.impostor.sign(raw),
        "other-body": k.payby.sign(raw + b" "),
        "store": k.store.sign(raw),
        "garbage": "not base64 at all!",
        "empty": "",
    }[sign]
    hdrs = [] if header is None else [(b"sign", header.encode())]
    r = Reply(200, hdrs, raw, sign)
    got = h.check("payby", call, r)
    assert got == Outcome("ProviderProtocolError"), got
    with pytest.raises(ProviderProtocolError) as info:
        h.reply = r
        h._runner.run(fuzz._CALLS[("payby", call)][0](h.clients["payby"]))
    assert not info.value.signed


def test_payby_signature_of_the_valid_body_on_a_tampered_one(h: Harness) -> None:
    _, doc = fuzz.valid("payby", "get_order")
    raw = fuzz.dump(doc).encode()
    tampered = raw.replace(b"150.00", b"1500.00")
    assert tampered != raw
    sign = fuzz.keys().payby.sign(raw).encode()
    got = h.check("payby", "get_order", Reply(200, [(b"sign", sign)], tampered, "tampered"))
    assert got == Outcome("ProviderProtocolError")


# --- the bugs found (not fixed here: the clients are other people's files) -----------------------

_PAYSERA_TX = fuzz.valid("paysera", "get")[1]
_CASHII_PAYMENT = fuzz.valid("cashii", "get")[1]


@pytest.mark.parametrize("status", [[], {}, ["new"]])
def test_a_paysera_status_of_another_type_is_a_broken_reply(h: Harness, status: object) -> None:
    got = h.check("paysera", "get", _made("paysera", 200, {**_PAYSERA_TX, "status": status}))
    assert got.failure is None, got.failure


@pytest.mark.parametrize("payments", [5, True, 1.5])
def test_paysera_payments_that_are_not_a_list_are_a_broken_reply(
    h: Harness, payments: object
) -> None:
    doc = {**_PAYSERA_TX, "payments": payments}
    got = h.check("paysera", "get", Reply(200, [], fuzz.json.dumps(doc).encode(), "b"))
    assert got.failure is None, got.failure


@pytest.mark.parametrize("status", [[], {}, ["paid"]])
def test_a_cashii_status_of_another_type_is_a_broken_reply(h: Harness, status: object) -> None:
    doc = {"data": {**_CASHII_PAYMENT["data"], "status": status}}
    got = h.check("cashii", "get", _made("cashii", 200, doc))
    assert got.failure is None, got.failure


_FIRST_CALL = {"payby": "get_order", "paysera": "get", "rapyd": "logout", "cashii": "get"}


@pytest.mark.parametrize("client", fuzz.CLIENTS)
def test_a_cookie_a_reply_sets_never_rides_on_the_next_call(h: Harness, client: str) -> None:
    call = _FIRST_CALL[client]
    status, doc = fuzz.valid(client, call)
    first = Reply(404, [(b"set-cookie", b"sid=caf\xe9")], b"<html>404</html>", "cookie")
    assert h.check(client, call, first).failure is None
    h.reply = _made(client, status, doc)  # the very next call, the jar kept (check clears it)
    try:
        h._runner.run(fuzz._CALLS[(client, call)][0](h.clients[client]))
    finally:
        h._http.cookies.clear()


# --- the long form --------------------------------------------------------------------------------


def test_the_long_form_runs_and_says_what_it_did() -> None:
    said: list[str] = []
    logging.disable(logging.CRITICAL)
    try:
        status = fuzz.fuzz_providers(2.0, 7, out=said.append)
    finally:
        logging.disable(logging.NOTSET)
    assert said[-1].startswith("fuzz providers: ") and " failures" in said[-1]
    for client in fuzz.CLIENTS:
        assert any(line.startswith(f"fuzz providers: {client}: ") for line in said)
    fails = [line for line in said if line.startswith("FAIL ")]
    assert status == (1 if fails else 0)
    for line in fails:  # only the known bugs
        client = line.split()[1].split(".")[0]
        assert client in KNOWN and all(part in line for part in KNOWN[client]), line
    assert fuzz.reply(random.Random(3), "payby", "refund") == fuzz.reply(
        random.Random(3), "payby", "refund"
    )
