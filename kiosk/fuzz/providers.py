"""The provider clients against hostile replies (``fuzz_providers``; issue 16).

The property, for each of the four clients (PayBy, Paysera, Rapyd, Cashii) and its calls:
whatever the transport answers, the call returns its documented result type or raises a
:class:`~kiosk.errors.ProviderError` subclass, never anything else (no ``KeyError``,
``TypeError``, ``ValueError``, ``AttributeError``, ``UnicodeDecodeError``, ``RecursionError``
...). For PayBy besides: a reply without a valid ``sign`` header (missing, garbage, another
key's, another body's) is never taken as a success, nor raised as a signed answer
(``ProviderError.signed``).

Each case is one reply, made from a real reply of the call (the shapes of the client tests and
the sandboxes) by one of these:

- ``valid``: the reply as is (sometimes with another status code or random headers);
- ``mutated``: fields removed, renamed, added, retyped (lists, numbers, ``null``, booleans,
  decimals like ``1E+400``, nested garbage, 10**5000, a 5 MB string), objects replaced;
- ``bytes``: the serialised reply cut short, bytes flipped or inserted, invalid UTF-8, a BOM,
  ``NaN``, nesting 100 000 deep, random bytes, nothing at all;
- ``transport``: httpx's own errors (connect, timeouts, reset, undecodable body);

with a status code that is usually the call's own and sometimes any, and random headers
(``Date``, ``Content-Encoding``, ``Content-Type``, arbitrary names and bytes). PayBy replies are
signed with PayBy's key, or carry no signature, garbage, a signature by another key or the
signature of another body.

Wiring::

    from kiosk.fuzz.providers import fuzz_providers
    status = fuzz_providers(seconds=600, seed=1)   # 0: no failure; 1: failures, printed

A failure is printed with its client, call, the exception's type, the kind of case and the
case seed (``reply(random.Random(case_seed), client, call)`` makes the same reply again); never
a key, a signature or a body. The tests (``tests/fuzz/test_provider_fuzz.py``) draw the
randomness from hypothesis and check with :meth:`Harness.check`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any, Final

import httpx

from kiosk.errors import ProviderError
from kiosk.money import Money
from kiosk.providers.cashii.client import CashiiClient
from kiosk.providers.cashii.client import Payment as CashiiPayment
from kiosk.providers.payby.client import AcquireOrder, PayByClient, RefundOrder
from kiosk.providers.payby.wire import Signer, Verifier, generate_key_pair
from kiosk.providers.paysera.client import PayseraClient, Transaction
from kiosk.providers.paysera.mac import MacSigner
from kiosk.providers.rapyd.client import RapydClient, Session
from kiosk.providers.rapyd.signing import Signer as RapydSigner

CLIENTS: Final = ("payby", "paysera", "rapyd", "cashii")
HUGE: Final = 5 * 1024 * 1024
"""A huge string: 5 MB."""
NOW_MS: Final = 1_700_000_000_000

# --- the real replies ------------------------------------------------------------------------

_PB_TOKEN: Final = "https://checkout.payby.test/pay-page/main?BIZ_TYPE=202&ft=abc&t=1"  # noqa: S105 (a URL)


def _pb_ok(body: dict[str, Any]) -> dict[str, Any]:
    return {"body": body, "head": {"applyStatus": "SUCCESS", "code": "0", "msg": "SUCCESS"}}


def _pb_order(status: str = "CREATED") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "merchantOrderNo": "K1-0001",
        "orderNo": "131658300517875854",
        "status": status,
        "totalAmount": {"currency": "AED", "amount": Decimal("150.00")},
        "revoked": "false",
    }
    if status in ("PAID_SUCCESS", "SETTLED"):
        doc["paymentInfo"] = {"paidTime": NOW_MS, "payerMid": "200000000888", "paidAmount": {}}
    return doc


def _pb_refund(status: str = "SUCCESS") -> dict[str, Any]:
    return {
        "refundMerchantOrderNo": "R1",
        "orderNo": "191405406113002297",
        "status": status,
        "amount": {"currency": "AED", "amount": Decimal("50.00")},
    }


_PB_ERRORS: Final = (
    {"head": {"applyStatus": "FAIL", "code": "62004", "msg": "ORDER_NOT_EXIST"}},
    {"head": {"applyStatus": "FAIL", "code": "500", "msg": "SYSTEM_ERROR"}},
    {"head": {"applyStatus": "FAIL", "code": "402", "msg": "RATE_LIMIT"}},
    {"head": {"applyStatus": "ERROR", "code": "400", "msg": "REQUESTTIME_TOO_EARLY"}},
    {"head": {"applyStatus": "FAIL", "code": "58001", "msg": "NOPE"}},
)


def _valid_payby(rng: random.Random, call: str) -> dict[str, Any]:
    if call in ("get_order", "cancel_order", "revoke_order", "resolve_token_url"):
        return _pb_ok({"acquireOrder": _pb_order(rng.choice(("CREATED", "PAID_SUCCESS",
                                                             "SETTLED", "FAILURE")))})  # fmt: skip
    if call == "pay_token_order":
        return _pb_ok({"acquireOrder": _pb_order("PAID_SUCCESS")})
    if call == "place_order":
        return _pb_ok({"acquireOrder": _pb_order(), "interActionParams": {"tokenUrl": _PB_TOKEN}})
    if call in ("refund", "get_refund"):
        return _pb_ok({"refundOrder": _pb_refund(rng.choice(("SUCCESS", "CREATED", "FAILURE")))})
    if call == "get_balance":
        entry = {"availableBalance": {"amount": Decimal("897993.88"), "currency": "AED"}}
        return _pb_ok({"memberId": "200000000888", "balanceList": [entry]})
    return _pb_ok({})  # verify_sign


_PS_TX: Final[dict[str, Any]] = {
    "transaction_key": "pDAlAZ3z",
    "created_at": 1343811600,
    "status": "new",
    "type": "page",
    "wallet": 14471,
    "payments": [{"id": 7, "status": "new", "price": 5000, "currency": "EUR"}],
}
_PS_ERRORS: Final = (
    (409, {"error": "invalid_state", "error_description": "Transaction is not new"}),
    (400, {"error": "not_enough_funds"}),
    (401, {"error": "unauthorized"}),
    (500, {"error": "internal_server_error"}),
)


def _valid_paysera(rng: random.Random, call: str, errors: bool = True) -> tuple[int, Any]:
    if call == "server_time":
        return 200, {"time": 1_700_000_000}
    if errors and rng.random() < 0.15:
        return rng.choice(_PS_ERRORS)
    tx = json.loads(json.dumps(_PS_TX))
    tx["status"] = rng.choice(("new", "reserved", "confirmed", "revoked"))
    if rng.random() < 0.3:
        del tx["payments"][0]["price"]
        tx["payments"][0]["price_decimal"] = "50.00"
    return 200, tx


_RP_STATUS: Final = {"error_code": "", "status": "SUCCESS", "message": "", "response_code": ""}
_RP_LOGIN: Final[dict[str, Any]] = {
    "status": _RP_STATUS,
    "data": {
        "token_id": "d9b7398f-5c2f-438c-8ac6-68e79f28c02e",
        "operation_id": "95e2c071-9513-48d6-a717-a480814f7df8",
        "accounts": [
            {
                "account_id": "64e4a964-53b5-11e9-8495-02f0df928b",
                "account_currency": "GBP",
                "account_alias": "GBP",
                "account_balance": Decimal("189.50"),
                "account_currency_symbol": "£",
            }
        ],
    },
}
_RP_ERROR: Final = {
    "status": {
        "error_code": "ERROR_INSUFFICIENT_FUNDS",
        "status": "ERROR",
        "message": "Not enough money",
        "response_code": "ERROR_INSUFFICIENT_FUNDS",
    }
}


def _valid_rapyd(rng: random.Random, call: str, errors: bool = True) -> tuple[int, Any]:
    if errors and rng.random() < 0.15:
        return rng.choice((400, 200, 500)), _RP_ERROR
    if call == "login":
        return 200, _RP_LOGIN
    if call in ("withdraw", "deposit"):
        return 200, {
            "status": {**_RP_STATUS, "error_code": "0"},
            "data": {"transaction_id": "5a2b1c3d-0000-4a4a-9e9e-abcdefabcdef"},
        }
    return 200, {"status": {**_RP_STATUS, "error_code": "0", "operation_id": "x"}}


_CASHII_ID: Final = "1234567890123456"
_CA_PAYMENT: Final[dict[str, Any]] = {
    "data": {
        "id": _CASHII_ID,
        "amount": 10098,
        "currency": "SYP",
        "note": "Payment for Order #ORD-12345",
        "metadata": {},
        "status": "paid",
        "from": "5550001112223334",
        "to": "7700000000000001",
    }
}
_CA_ERRORS: Final = (
    (401, {"error": {"code": "unauthenticated", "message": "Invalid API key"}}),
    (404, {"error": "not_found"}),
    (422, {"message": "The amount field is required."}),
)


def _valid_cashii(rng: random.Random, call: str, errors: bool = True) -> tuple[int, Any]:
    if errors and rng.random() < 0.15:
        return rng.choice(_CA_ERRORS)
    if call == "create":
        return 201, {"data": {"id": rng.choice((_CASHII_ID, int(_CASHII_ID)))}}
    doc = json.loads(json.dumps(_CA_PAYMENT))
    doc["data"]["status"] = rng.choice(("pending", "paid", "rejected", "canceled", "refunded"))
    return 200, doc


CALLS: Final[dict[str, tuple[str, ...]]] = {
    "payby": ("get_order", "place_order", "refund", "get_refund", "cancel_order",
              "revoke_order", "get_balance", "verify_sign", "resolve_token_url",
              "pay_token_order"),
    "paysera": ("get", "create", "confirm", "revoke", "reserve_with_code", "server_time"),
    "rapyd": ("login", "withdraw", "deposit", "reverse", "logout", "echo"),
    "cashii": ("create", "get"),
}  # fmt: skip
"""The calls fuzzed, per client."""

# --- JSON out, with exact decimals -----------------------------------------------------------


def dump(obj: object) -> str:
    """JSON text; a Decimal written with its digits (``1E+400`` stays a number)."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, (str, int)):
        return json.dumps(obj)
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dump(v) for v in obj) + "]"
    raise TypeError(f"cannot dump {type(obj).__name__}")


# --- random values and mutations ---------------------------------------------------------------

_NAMES: Final = ("status", "code", "head", "body", "data", "amount", "currency", "id", "error",
                 "applyStatus", "acquireOrder", "refundOrder", "transaction_key", "payments",
                 "price", "price_decimal", "token_id", "operation_id", "accounts",
                 "transaction_id", "paymentInfo", "paidTime", "revoked", "totalAmount",
                 "balanceList", "availableBalance", "error_code", "message", "time")  # fmt: skip


def text(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(
            (
                "",
                "0",
                "SUCCESS",
                "ERROR",
                "FAIL",
                "paid",
                "new",
                "NaN",
                "-1",
                "1e400",
                "AED",
                "EUR",
                "GBP",
                "SYP",
                "BUSD",
                "XXX",
                "true",
                "null",
                "50.00",
                "0.123456789",
                "١٢٣",
                " 1 ",
                "ERROR_X",
                "62004",
                "500",
            )
        )
    if pick < 0.6:
        return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(0, 24)))
    if pick < 0.9:
        return "".join(chr(rng.randrange(0, 0x10FFFF)) for _ in range(rng.randrange(0, 12)))
    return "0123456789"[rng.randrange(10)] * rng.randrange(1, 40)


def scalar(rng: random.Random) -> object:
    pick = rng.randrange(12)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.randrange(-(2**70), 2**70)
    if pick == 3:
        return rng.choice((0, -1, 1, 2**63, -(2**63), 10**30, NOW_MS, 1_700_000_000))
    if pick == 4:
        return Decimal(
            rng.choice(
                (
                    "0.5",
                    "-0",
                    "1E+400",
                    "1e-400",
                    "150.001",
                    "99999999999999999999999999.99",
                    "0.00000001",
                    "-150.00",
                    "1.5",
                    "12345678901234567890.12345678",
                )
            )
        )
    if pick == 5:
        return Decimal(10**5000) if rng.random() < 0.5 else Decimal(-(10**4400))  # JSON integers
    return text(rng)


def value(rng: random.Random, depth: int = 0) -> object:
    """Any JSON value, nested a few levels."""
    pick = rng.random()
    if depth >= 4 or pick < 0.6:
        return scalar(rng)
    if pick < 0.8:
        return [value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {
        rng.choice(_NAMES) if rng.random() < 0.6 else text(rng): value(rng, depth + 1)
        for _ in range(rng.randrange(0, 4))
    }


def _containers(doc: object, path: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    if isinstance(doc, dict):
        yield path
        for k, v in doc.items():
            yield from _containers(v, (*path, k))
    elif isinstance(doc, list):
        yield path
        for i, v in enumerate(doc):
            yield from _containers(v, (*path, i))


def _at(doc: Any, path: tuple[object, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def mutate(rng: random.Random, doc: object, n: int, *, huge: bool = False) -> tuple[object, str]:
    """``doc`` (a deep copy) with ``n`` edits: a key removed, renamed or added, a value retyped,
    a container replaced; ``huge``: one string of :data:`HUGE` characters put in somewhere."""
    doc = json.loads(dump(doc), parse_float=Decimal)
    done: list[str] = []
    for _ in range(n):
        places = list(_containers(doc))
        if not places or rng.random() < 0.04:
            doc = value(rng)
            done.append("replaced")
            continue
        path = rng.choice(places)
        box = _at(doc, path)
        op = rng.randrange(6)
        if isinstance(box, dict) and box:
            k = rng.choice(list(box))
            if op == 0:
                del box[k]
                done.append("removed")
            elif op == 1:
                box[text(rng)] = box.pop(k)
                done.append("renamed")
            elif op == 2:
                box[rng.choice(_NAMES)] = value(rng)
                done.append("added")
            elif op == 3:
                box[k] = rng.choice(([box[k]], {"value": box[k]}, str(box[k])[:64], []))
                done.append("wrapped")
            else:
                box[k] = value(rng)
                done.append("retyped")
        elif isinstance(box, list) and box:
            i = rng.randrange(len(box))
            if op < 2:
                del box[i]
            elif op < 4:
                box.append(rng.choice((box[i], value(rng))))
            else:
                box[i] = value(rng)
            done.append("list")
        elif isinstance(box, dict):
            box[rng.choice(_NAMES)] = value(rng)
            done.append("added")
        else:
            box.append(value(rng))
            done.append("list")
    if huge:
        places = [p for p in _containers(doc) if isinstance(_at(doc, p), dict) and _at(doc, p)]
        if places:
            box = _at(doc, rng.choice(places))
            box[rng.choice(list(box))] = rng.choice(("7", "A", "\u00e9")) * HUGE
        else:
            doc = "9" * HUGE
        done.append("huge")
    return doc, "+".join(done) or "as-is"


def mangle(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    """The serialised reply damaged, or replaced by bytes that are no JSON reply at all."""
    pick = rng.randrange(11)
    if pick == 0:
        return raw[: rng.randrange(len(raw) + 1)], "truncated"
    if pick == 1:
        data = bytearray(raw)
        for _ in range(rng.randrange(1, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), "flipped"
    if pick == 2:
        at = rng.randrange(len(raw) + 1)
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        return raw[:at] + junk + raw[at:], "inserted"
    if pick == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 512))), "random"
    if pick == 4:
        return rng.choice((b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", raw + b"\x80")), "utf8"
    if pick == 5:
        return b"\xef\xbb\xbf" + raw, "bom"
    if pick == 6:
        return rng.choice((b"NaN", b"Infinity", b"-Infinity", b'{"a": NaN}', b"null", b"[]",
                           b"0", b'""', b"true", b"1e400")), "constant"  # fmt: skip
    if pick == 7:
        deep = rng.choice((b"[", b'{"a":'))
        return deep * rng.choice((1000, 100_000)), "deep"
    if pick == 8:
        return b"", "empty"
    if pick == 9:
        return raw.decode("utf-8", "replace").encode("utf-16"), "utf16"
    return b"<html><body><h1>502 Bad Gateway</h1></body></html>", "html"


_HEADER_NAMES: Final = (
    "date",
    "content-type",
    "content-encoding",
    "x-request-id",
    "server",
    "retry-after",
    "set-cookie",
    "partner-id",
    "x-\u00e9",
    "content-language",
)


def headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    """Random headers (never ``sign``, which :func:`reply` sets for PayBy)."""
    out: list[tuple[bytes, bytes]] = []
    for _ in range(rng.randrange(0, 5)):
        name = rng.choice(_HEADER_NAMES).encode("utf-8")
        pick = rng.randrange(6)
        if name == b"date" and pick < 3:
            val = rng.choice(
                (
                    b"Tue, 14 Nov 2023 22:13:20 GMT",
                    b"Mon, 01 Jan 0001 00:00:00 GMT",
                    b"Fri, 31 Dec 9999 23:59:59 GMT",
                    b"yesterday",
                    b"",
                    b"0",
                    b"Thu, 99 Foo 2023 99:99:99 GMT",
                    b"Tue, 14 Nov 2023 22:13:20 +9999",
                )
            )
        elif name == b"content-encoding" and pick < 3:
            val = rng.choice((b"gzip", b"br", b"deflate", b"identity", b"zstd", b"x-nope"))
        elif name == b"content-type" and pick < 3:
            val = rng.choice((b"application/json; charset=utf-16", b"text/html",
                              b"application/json; charset=nope"))  # fmt: skip
        else:
            val = bytes(rng.choice(range(32, 256)) for _ in range(rng.randrange(0, 40)))
        out.append((name, val))
    return out


_STATUSES: Final = (200, 201, 202, 204, 301, 302, 304, 400, 401, 402, 403, 404, 409, 422,
                    429, 500, 502, 503, 504)  # fmt: skip
_TRANSPORT_ERRORS: Final[tuple[type[httpx.RequestError], ...]] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout,
    httpx.PoolTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.DecodingError,
    httpx.LocalProtocolError, httpx.ProxyError,
)  # fmt: skip

# --- keys (made once: a 2048-bit key takes a while) ---------------------------------------------


@dataclass(frozen=True)
class Keys:
    store: Signer
    payby: Signer
    impostor: Signer
    payby_public: bytes = field(repr=False)


@cache
def keys() -> Keys:
    """Fresh RSA keys for this process: the store's, PayBy's and an impostor's."""
    store, (payby_private, payby_public), impostor = (generate_key_pair() for _ in range(3))
    return Keys(Signer(store[0]), Signer(payby_private), Signer(impostor[0]), payby_public)


# --- one case ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the transport does: answer ``status``/``headers``/``content``, or raise ``error``.
    ``kind`` describes how it was made (no content); ``authentic``: a PayBy reply whose
    ``sign`` header is PayBy's signature of exactly ``content``."""

    status: int
    headers: list[tuple[bytes, bytes]]
    content: bytes
    kind: str
    authentic: bool = False
    error: type[httpx.RequestError] | None = None


def _sign(rng: random.Random, raw: bytes) -> tuple[bytes | None, bool, str]:
    """A PayBy ``sign`` header for ``raw`` (mostly the real one), whether it is authentic."""
    k = keys()
    pick = rng.random()
    if pick < 0.7:
        return k.payby.sign(raw).encode(), True, "signed"
    if pick < 0.78:
        return None, False, "unsigned"
    if pick < 0.84:
        return k.impostor.sign(raw).encode(), False, "impostor"
    if pick < 0.9:
        return k.payby.sign(raw + b" ").encode(), False, "other-body"
    if pick < 0.93:
        return k.store.sign(raw).encode(), False, "store-key"
    return (
        rng.choice((b"", b"====", b"not base64!", b"\xff\xfe", b"AAAA", b"a" * 10_000)),
        False,
        "garbage-sign",
    )


def valid(client: str, call: str, seed: int = 0) -> tuple[int, Any]:
    """A real success reply of ``client``'s ``call``: its HTTP status and document."""
    rng = random.Random(seed)
    if client == "payby":
        return 200, _valid_payby(rng, call)
    pick = {"paysera": _valid_paysera, "rapyd": _valid_rapyd, "cashii": _valid_cashii}[client]
    return pick(rng, call, errors=False)


def signed_reply(status: int, raw: bytes, kind: str = "made") -> Reply:
    """``raw`` as PayBy would send it, signed with PayBy's key."""
    sign = keys().payby.sign(raw).encode()
    return Reply(status, [(b"sign", sign)], raw, kind, authentic=True)


def reply(rng: random.Random, client: str, call: str, *, huge: bool | None = None) -> Reply:
    """One hostile reply to ``client``'s ``call``; ``huge``: force (or forbid) a 5 MB string."""
    if client == "payby":
        status, doc = rng.choice((200, 200, 201)), _valid_payby(rng, call)
        if rng.random() < 0.1:
            doc = rng.choice(_PB_ERRORS)
    else:
        status, doc = {"paysera": _valid_paysera, "rapyd": _valid_rapyd, "cashii": _valid_cashii}[
            client
        ](rng, call)
    if rng.random() < 0.03:
        return Reply(0, [], b"", "transport", error=rng.choice(_TRANSPORT_ERRORS))
    source = rng.random()
    if huge is None:
        huge = rng.random() < 0.01
    if source < 0.15 and not huge:
        kind, raw = "valid", dump(doc).encode()
    elif source < 0.8 or huge:
        mutated, what = mutate(rng, doc, rng.randrange(0 if huge else 1, 5), huge=huge)
        kind, raw = f"mutated:{what}", dump(mutated).encode()
    else:
        raw, what = mangle(rng, dump(doc).encode())
        kind = f"bytes:{what}"
    if rng.random() < 0.2:
        status = rng.choice(_STATUSES) if rng.random() < 0.8 else rng.randrange(100, 600)
        kind += f":http{status}"
    hdrs = headers(rng) if rng.random() < 0.3 else []
    authentic = False
    if client == "payby":
        sign, authentic, how = _sign(rng, raw)
        if sign is not None:
            hdrs.append((b"sign", sign))
        kind += f":{how}"  # a Content-Encoding that changes the body makes it fail to verify
    return Reply(status, hdrs, raw, kind, authentic)


# --- the clients against the current reply -----------------------------------------------------

Call = Callable[[Any], Coroutine[Any, Any, object]]
_PB_MONEY: Final = Money.of(15000, "AED")
_RP_SESSION: Final = Session("d9b7398f-5c2f", "95e2c071-9513", "+14155559992")
_RP_ACCOUNT: Final = "64e4a964-53b5-11e9-8495-02f0df928b"

_CALLS: Final[dict[tuple[str, str], tuple[Call, Callable[[object], bool]]]] = {
    ("payby", "get_order"): (
        lambda c: c.get_order(merchant_order_no="K1-0001"),
        lambda r: isinstance(r, AcquireOrder),
    ),
    ("payby", "cancel_order"): (
        lambda c: c.cancel_order(order_no="131658300517875854"),
        lambda r: isinstance(r, AcquireOrder),
    ),
    ("payby", "revoke_order"): (
        lambda c: c.revoke_order(merchant_order_no="K1-0001"),
        lambda r: isinstance(r, AcquireOrder),
    ),
    ("payby", "place_order"): (
        lambda c: c.place_order("K1-0001", "Top up", _PB_MONEY, expired_time_ms=NOW_MS + 60_000),
        lambda r: (
            isinstance(r, tuple)
            and len(r) == 2
            and isinstance(r[0], AcquireOrder)
            and (r[1] is None or isinstance(r[1], str))
        ),
    ),
    ("payby", "refund"): (
        lambda c: c.refund("R1", Money.of(5000, "AED"), origin_order_no="131658300517875854"),
        lambda r: isinstance(r, RefundOrder),
    ),
    ("payby", "get_refund"): (
        lambda c: c.get_refund(refund_merchant_order_no="R1"),
        lambda r: isinstance(r, RefundOrder),
    ),
    ("payby", "get_balance"): (
        lambda c: c.get_balance("AED"),
        lambda r: isinstance(r, Money) and r.code == "AED",
    ),
    ("payby", "verify_sign"): (lambda c: c.verify_sign(), lambda r: r is None),
    ("payby", "resolve_token_url"): (
        lambda c: c.resolve_token_url(_PB_TOKEN),
        lambda r: isinstance(r, AcquireOrder),
    ),
    ("payby", "pay_token_order"): (
        lambda c: c.pay_token_order(
            _PB_TOKEN,
            order_no="131658300517875854",
            amount=_PB_MONEY,
            payment_no="K1-0001-pay",
            device_id="K1",
        ),
        lambda r: isinstance(r, AcquireOrder),
    ),
    ("paysera", "get"): (lambda c: c.get("pDAlAZ3z"), lambda r: isinstance(r, Transaction)),
    ("paysera", "create"): (
        lambda c: c.create(Money.of(5000, "EUR"), "Cash withdrawal", reserve_for_s=300),
        lambda r: isinstance(r, Transaction),
    ),
    ("paysera", "confirm"): (
        lambda c: c.confirm("pDAlAZ3z"),
        lambda r: isinstance(r, Transaction),
    ),
    ("paysera", "revoke"): (lambda c: c.revoke("pDAlAZ3z"), lambda r: isinstance(r, Transaction)),
    ("paysera", "reserve_with_code"): (
        lambda c: c.reserve_with_code("pDAlAZ3z", "0155567464130298871198969060"),
        lambda r: isinstance(r, Transaction),
    ),
    ("paysera", "server_time"): (
        lambda c: c.server_time(),
        lambda r: type(r) is int,
    ),
    ("rapyd", "login"): (
        lambda c: c.login("z128ffb-11a5-11l9-93p5-1231a8maf28", "876680", "+14155559992"),
        lambda r: isinstance(r, Session),
    ),
    ("rapyd", "withdraw"): (
        lambda c: c.withdraw(_RP_SESSION, _RP_ACCOUNT, Money.of(1000, "GBP"), idempotency="K-1"),
        lambda r: isinstance(r, str),
    ),
    ("rapyd", "deposit"): (
        lambda c: c.deposit(_RP_SESSION, Money.of(1000, "GBP"), idempotency="K-2"),
        lambda r: isinstance(r, str),
    ),
    ("rapyd", "reverse"): (
        lambda c: c.reverse(
            _RP_SESSION, _RP_ACCOUNT, Money.of(1000, "GBP"), "5a2b1c3d", idempotency="K-3"
        ),
        lambda r: r is None,
    ),
    ("rapyd", "logout"): (lambda c: c.logout(_RP_SESSION), lambda r: r is None),
    ("rapyd", "echo"): (lambda c: c.echo(), lambda r: r is None),
    ("cashii", "create"): (
        lambda c: c.create(
            Money.of(10098, "SYP"), "Cash withdrawal K-1", metadata={"reference": "K-1"}
        ),
        lambda r: isinstance(r, str),
    ),
    ("cashii", "get"): (lambda c: c.get(_CASHII_ID), lambda r: isinstance(r, CashiiPayment)),
}


@dataclass(frozen=True)
class Outcome:
    """``label``: what the call did (``returned`` or the ProviderError's type); ``failure``:
    the broken property (None when it held)."""

    label: str
    failure: str | None = None
    where: str = ""
    """For an exception other than a ProviderError: the innermost kiosk frame raising it."""


class Harness:
    """The four clients on one event loop, over a transport that answers :attr:`reply`."""

    def __init__(self) -> None:
        self.reply = Reply(200, [], b"{}", "init")
        self._runner = asyncio.Runner()
        from kiosk.httpclient import client as http_client

        self._http = http_client(httpx.Timeout(5.0))  # as the kiosk builds it (no cookie jar)
        self._http._transport = httpx.MockTransport(self._answer)
        k = keys()
        timeout = httpx.Timeout(2.0, connect=1.0)
        self.clients: dict[str, object] = {
            "payby": PayByClient(
                self._http,
                base_url="https://api.payby.test/sgs/api",
                partner_id="200000000888",
                signer=k.store,
                verifier=Verifier(k.payby_public),
                timeout=timeout,
                clock=lambda: NOW_MS,
            ),
            "paysera": PayseraClient(
                self._http,
                base_url="https://wallet.paysera.com/rest/v1",
                signer=MacSigner("wkVd93h2uS", "fuzz-mac-key-not-a-secret"),
                timeout=timeout,
            ),
            "rapyd": RapydClient(
                self._http,
                base_url="https://sandboxpos.rapyd.net",
                signer=RapydSigner("FUZZACCESS", "fuzz-secret-not-a-secret"),
                timeout=timeout,
            ),
            "cashii": CashiiClient(
                self._http,
                base_url="https://api.cashii.app",
                api_key="ck_fuzz_not_a_secret",
                timeout=timeout,
            ),
        }

    def _answer(self, request: httpx.Request) -> httpx.Response:
        r = self.reply
        if r.error is not None:
            raise r.error("fuzzed transport error", request=request)
        return httpx.Response(r.status, headers=r.headers, content=r.content)

    def check(self, client: str, call: str, reply: Reply) -> Outcome:
        """Run ``client``'s ``call`` against ``reply``: the property held or not."""
        self.reply = reply
        # each case alone: a cookie an earlier reply set is not sent (see cookie_poisoning)
        self._http.cookies.clear()
        run, expected = _CALLS[(client, call)]
        try:
            result = self._runner.run(run(self.clients[client]))
        except ProviderError as exc:
            if client == "payby" and exc.signed and not reply.authentic:
                return Outcome(type(exc).__name__, "an unsigned or forged reply taken as signed")
            return Outcome(type(exc).__name__)
        except Exception as exc:  # the property: nothing but ProviderError
            where = _where(exc)
            return Outcome(type(exc).__name__, f"raised {type(exc).__name__} at {where}", where)
        if not expected(result):
            return Outcome("returned", f"returned a {type(result).__name__}")
        if client == "payby" and not reply.authentic:
            return Outcome("returned", "an unsigned or forged reply taken as a success")
        return Outcome("returned")

    def close(self) -> None:
        self._runner.run(self._http.aclose())
        self._runner.close()


@contextmanager
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


# --- the long form ----------------------------------------------------------------------------


def fuzz_providers(
    seconds: float, seed: int, *, out: Callable[[str], None] = print, max_cases: int | None = None
) -> int:
    """Hostile replies to every client's calls for ``seconds`` from ``seed``; prints a line per
    client (cases, outcomes) and one per failure. 0 if the property held throughout, else 1."""
    rng = random.Random(seed)
    cases: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = {c: Counter() for c in CLIENTS}
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    n = 0
    with harness() as h:
        while time.monotonic() < deadline and (max_cases is None or n < max_cases):
            client = CLIENTS[n % len(CLIENTS)]
            call = rng.choice(CALLS[client])
            case_seed = rng.getrandbits(64)
            r = reply(random.Random(case_seed), client, call)
            got = h.check(client, call, r)
            n += 1
            cases[client] += 1
            outcomes[client][got.label] += 1
            if got.failure is not None:
                outcomes[client]["FAILED"] += 1
                line = f"FAIL {client}.{call}: {got.failure} (case {r.kind}, case seed {case_seed})"
                failures.append(line)
                out(line)
    for client in CLIENTS:
        said = ", ".join(f"{k} {v}" for k, v in sorted(outcomes[client].items()))
        out(f"fuzz providers: {client}: {cases[client]} cases ({said})")
    out(f"fuzz providers: {n} cases in {seconds:g} s, seed {seed}, {len(failures)} failures")
    return 1 if failures else 0


def _where(exc: BaseException) -> str:
    """The innermost kiosk frame of ``exc``'s traceback (``path:line``), or its last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/kiosk/" in f.filename and "/kiosk/fuzz/" not in f.filename]
    frame = (ours or frames)[-1] if frames else None
    if frame is None:
        return "?"
    name = frame.filename.split("/kiosk/", 1)[-1]
    return f"kiosk/{name}:{frame.lineno} ({frame.name})"
