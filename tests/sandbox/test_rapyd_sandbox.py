"""The Rapyd POS sandbox at the API level, against Rapyd's documents (providers.md §3, seed
002): the session rules, money, the envelope, signatures computed independently here,
idempotent replays, faults, persistence, and one pass over a loopback HTTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiosk.sandbox.kit import HookError, Request, Response, SandboxClock
from kiosk.sandbox.rapyd import RapydSandbox

POS_ID = "z128ffb-11a5-11l9-93p5-1231a8maf28"  # the seed's sample values
ACCESS = "8C6223151345345D"
SECRET = "rapyd-secret-key-for-tests-0001"
PHONE = "+14155559992"
T0_MS = 1_700_000_000_000


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.ms = T0_MS

    def __call__(self) -> int:
        return self.ms


def _make(state_dir: Path, wall: Wall) -> RapydSandbox:
    return RapydSandbox(state_dir, SandboxClock(state_dir, wall_ms=wall))


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def sb(tmp_path: Path, wall: Wall) -> Iterator[RapydSandbox]:
    sandbox = _make(tmp_path, wall)
    hook(sandbox, "POST", "/pos", {"pos_id": POS_ID, "access_key": ACCESS, "secret_key": SECRET})
    gbp = [{"currency": "GBP", "balance": 18900}]
    hook(sandbox, "POST", "/wallets", {"phone_number": PHONE, "accounts": gbp})
    yield sandbox
    sandbox.close()


def hook(sb: RapydSandbox, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = sb.handle_hook(Request(method, path, json.dumps(body or {}).encode()))
    assert response.status == 200, response.body
    return json.loads(response.body)


def call(
    sb: RapydSandbox,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    access_key: str | None = ACCESS,
) -> tuple[int, dict[str, Any]]:
    sent = {"content-type": "application/json"}
    if access_key is not None:
        sent["access_key"] = access_key
    sent.update({k.lower(): v for k, v in (headers or {}).items()})
    response = sb.handle(Request(method, path, body, sent))
    return response.status, json.loads(response.body)


def raw(sb: RapydSandbox, method: str, path: str, headers: dict[str, str]) -> Response:
    """The reply as it is (bytes, fault marks), for a call with the POS's usual headers."""
    sent = {"access_key": ACCESS, "content-type": "application/json", **headers}
    return sb.handle(Request(method, path, b"", sent))


def login(sb: RapydSandbox, phone: str = PHONE) -> dict[str, Any]:
    otp = hook(sb, "POST", "/otps", {"phone_number": phone})["otp"]
    status, doc = call(sb, "POST", f"/login/{POS_ID}/{otp}", {"phone_number": phone})
    assert status == 200, doc
    return doc["data"]


def session_headers(s: dict[str, Any], phone: str = PHONE) -> dict[str, str]:
    return {"token_id": s["token_id"], "operation_id": s["operation_id"], "phone_number": phone}


def balance(sb: RapydSandbox, currency: str = "GBP") -> int:
    accounts = hook(sb, "GET", "/wallets/%2B14155559992")["accounts"]
    return next(a["balance"] for a in accounts if a["currency"] == currency)


def refused(result: tuple[int, dict[str, Any]], code: str, http: int = 400) -> None:
    status, doc = result
    assert status == http, doc
    assert set(doc) == {"status"}  # an error carries only status
    assert doc["status"]["error_code"] == doc["status"]["response_code"] == code
    assert doc["status"]["status"] == "ERROR" and doc["status"]["message"]


# --- the journeys ------------------------------------------------------------------------------


def test_a_withdraw_session_as_the_seed_walks_it(sb: RapydSandbox) -> None:
    otp = hook(sb, "POST", "/otps", {"phone_number": PHONE})
    assert len(otp["otp"]) == 6 and otp["otp"].isdigit()
    assert otp["expires_at_ms"] == T0_MS + 30_000
    raw = sb.handle(
        Request(
            "POST",
            f"/login/{POS_ID}/{otp['otp']}",
            headers={
                "access_key": ACCESS,
                "phone_number": PHONE,
                "content-type": "application/json",
            },
        )
    )
    assert b'"account_balance":189,' in raw.body  # a JSON number in major units, exact
    doc = json.loads(raw.body)
    assert doc["status"]["error_code"] == "0" and doc["status"]["status"] == "SUCCESS"
    assert doc["status"]["message"] == "" and doc["status"]["operation_id"]
    s = doc["data"]
    assert set(s) == {"token_id", "operation_id", "accounts"}
    [account] = s["accounts"]
    assert account["account_currency"] == "GBP" and account["account_alias"] == "GBP"
    assert account["account_balance"] == 189 and account["account_currency_symbol"] == "£"

    status, w = call(sb, "POST", f"/withdraw/{account['account_id']}/10", session_headers(s))
    assert status == 200 and set(w["data"]) == {"transaction_id"}
    assert balance(sb) == 17900
    tx = hook(sb, "GET", f"/transactions/{w['data']['transaction_id']}")
    assert (tx["kind"], tx["amount"], tx["currency"], tx["reversed"]) == (
        "withdraw",
        1000,
        "GBP",
        0,
    )
    assert (tx["account_id"], tx["phone_number"], tx["session"]) == (
        account["account_id"],
        PHONE,
        s["token_id"],
    )
    assert [u["token_id"] for u in hook(sb, "GET", "/sessions")["unclosed"]] == [s["token_id"]]

    status, out = call(sb, "POST", "/logout", session_headers(s))
    assert status == 200 and set(out) == {"status"}
    assert hook(sb, "GET", "/sessions") == {"unclosed": [], "closed": 1}
    refused(call(sb, "POST", "/logout", session_headers(s)), "ERROR_SESSION_CLOSED")
    again = call(sb, "POST", f"/withdraw/{account['account_id']}/1", session_headers(s))
    refused(again, "ERROR_SESSION_CLOSED")


def test_deposit_creates_the_missing_account_and_echoes_metadata(sb: RapydSandbox) -> None:
    s = login(sb)
    body = b'{"metadata":{"kiosk":"k-01","rate":1.10}}'
    response = sb.handle(
        Request(
            "POST",
            "/deposit/25.5/EUR",
            body,
            {"access_key": ACCESS, "content-type": "application/json", **session_headers(s)},
        )
    )
    assert response.status == 200 and b'"rate":1.10' in response.body  # no float rounding
    data = json.loads(response.body)["data"]
    assert data["metadata"] == {"kiosk": "k-01", "rate": 1.1} and data["transaction_id"]
    assert balance(sb, "EUR") == 2550 and balance(sb, "GBP") == 18900
    tx = hook(sb, "GET", f"/transactions/{data['transaction_id']}")
    assert (tx["kind"], tx["amount"], tx["currency"]) == ("deposit", 2550, "EUR")
    call(sb, "POST", "/logout", session_headers(s))
    s2 = login(sb)
    eur = next(a for a in s2["accounts"] if a["account_currency"] == "EUR")
    assert eur["account_balance"] == 25.5 and eur["account_currency_symbol"] == "€"
    status, _ = call(sb, "POST", "/deposit/1/GBP", session_headers(s2))  # no body at all
    assert status == 200 and balance(sb, "GBP") == 19000


def test_deposit_refuses_a_bad_currency_or_body(sb: RapydSandbox) -> None:
    s = login(sb)
    refused(call(sb, "POST", "/deposit/5/XYZ", session_headers(s)), "ERROR_INVALID_CURRENCY")
    bad = call(sb, "POST", "/deposit/5/GBP", session_headers(s), b'{"metadata":[1]}')
    refused(bad, "ERROR_INVALID_BODY")
    refused(call(sb, "POST", "/deposit/5/GBP", session_headers(s), b"{"), "ERROR_INVALID_BODY")
    assert call(sb, "POST", "/deposit/5/GBP", session_headers(s))[0] == 200  # one action left


# --- OTPs and sessions -------------------------------------------------------------------------


def test_otps_are_single_use_for_30_seconds_and_one_phone(sb: RapydSandbox, wall: Wall) -> None:
    hook(sb, "POST", "/wallets", {"phone_number": "+447700900123"})
    refused(
        call(sb, "POST", f"/login/{POS_ID}/123456", {"phone_number": PHONE}), "ERROR_INVALID_OTP"
    )

    otp = hook(sb, "POST", "/otps", {"phone_number": PHONE})["otp"]
    wrong = call(sb, "POST", f"/login/{POS_ID}/{otp}", {"phone_number": "+447700900123"})
    refused(wrong, "ERROR_INVALID_OTP")
    wall.ms += 29_999
    assert call(sb, "POST", f"/login/{POS_ID}/{otp}", {"phone_number": PHONE})[0] == 200
    reused = call(sb, "POST", f"/login/{POS_ID}/{otp}", {"phone_number": PHONE})
    refused(reused, "ERROR_INVALID_OTP")

    late = hook(sb, "POST", "/otps", {"phone_number": PHONE})["otp"]
    wall.ms += 30_000
    refused(
        call(sb, "POST", f"/login/{POS_ID}/{late}", {"phone_number": PHONE}), "ERROR_OTP_EXPIRED"
    )

    expired = hook(sb, "POST", "/otps", {"phone_number": PHONE})["otp"]
    assert hook(sb, "POST", "/otps/expire", {"otp": expired}) == {"expired": True}
    result = call(sb, "POST", f"/login/{POS_ID}/{expired}", {"phone_number": PHONE})
    refused(result, "ERROR_OTP_EXPIRED")


def test_login_needs_an_e164_phone_number(sb: RapydSandbox) -> None:
    otp = hook(sb, "POST", "/otps", {"phone_number": PHONE})["otp"]
    refused(call(sb, "POST", f"/login/{POS_ID}/{otp}"), "ERROR_INVALID_PHONE_NUMBER")
    result = call(sb, "POST", f"/login/{POS_ID}/{otp}", {"phone_number": "14155559992"})
    refused(result, "ERROR_INVALID_PHONE_NUMBER")
    assert call(sb, "POST", f"/login/{POS_ID}/{otp}", {"phone_number": PHONE})[0] == 200


def test_session_headers_must_name_one_open_session(sb: RapydSandbox) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    path = f"/withdraw/{account}/1"
    for headers in (
        {**session_headers(s), "operation_id": "95e2c071-9513-48d6-a717-a480814f7df8"},
        {**session_headers(s), "token_id": "d9b7398f-5c2f-438c-8ac6-68e79f28c02e"},
        {**session_headers(s), "phone_number": "+447700900123"},
        {"token_id": s["token_id"], "operation_id": s["operation_id"]},  # no phone_number
    ):
        refused(call(sb, "POST", path, headers), "ERROR_INVALID_SESSION")
    assert balance(sb) == 18900


def test_insufficient_funds_bad_amounts_and_unknown_accounts(sb: RapydSandbox) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    h = session_headers(s)
    refused(call(sb, "POST", f"/withdraw/{account}/189.01", h), "ERROR_INSUFFICIENT_FUNDS")
    for amount in ("10.001", "10.000", "0", "0.00", "-1", "1e3", "010", "abc", "10."):
        refused(call(sb, "POST", f"/withdraw/{account}/{amount}", h), "ERROR_INVALID_AMOUNT")
    refused(call(sb, "POST", "/withdraw/no-such-account/1", h), "ERROR_ACCOUNT_NOT_FOUND")
    assert balance(sb) == 18900
    assert call(sb, "POST", f"/withdraw/{account}/189.00", h)[0] == 200  # all of it, then
    assert balance(sb) == 0


def test_a_second_action_in_a_session_is_refused(sb: RapydSandbox) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    assert call(sb, "POST", f"/withdraw/{account}/5", session_headers(s))[0] == 200
    refused(call(sb, "POST", f"/withdraw/{account}/5", session_headers(s)), "ERROR_SESSION_CLOSED")
    refused(call(sb, "POST", "/deposit/5/GBP", session_headers(s)), "ERROR_SESSION_CLOSED")
    assert balance(sb) == 18400
    assert len(hook(sb, "GET", "/sessions")["unclosed"]) == 1  # still to be closed
    assert call(sb, "POST", "/logout", session_headers(s))[0] == 200


def test_reversal_is_partial_bounded_and_needs_the_open_session(sb: RapydSandbox) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    tx = call(sb, "POST", f"/withdraw/{account}/50", session_headers(s))[1]["data"][
        "transaction_id"
    ]
    rev = {"token_id": s["token_id"], "operation_id": s["operation_id"], "transaction_id": tx}

    status, doc = call(sb, "POST", f"/reversal/{account}/20.50", rev)
    assert status == 200 and doc["data"]["transaction_id"] == ""
    assert doc["data"]["operation_id"] == doc["status"]["operation_id"]
    assert balance(sb) == 18900 - 5000 + 2050
    assert hook(sb, "GET", f"/transactions/{tx}")["reversed"] == 2050
    reversal = hook(sb, "GET", f"/transactions/{doc['data']['operation_id']}")
    assert (reversal["kind"], reversal["amount"], reversal["of"]) == ("reversal", 2050, tx)

    refused(call(sb, "POST", f"/reversal/{account}/29.51", rev), "ERROR_REVERSAL_EXCEEDS")
    refused(call(sb, "POST", "/reversal/other/1", rev), "ERROR_ACCOUNT_NOT_FOUND")
    wrong_tx = {**rev, "transaction_id": "4e61e815-b68f-11e9-9ffc-12c4c8fed768"}
    refused(call(sb, "POST", f"/reversal/{account}/1", wrong_tx), "ERROR_TRANSACTION_NOT_FOUND")
    assert call(sb, "POST", f"/reversal/{account}/29.50", rev)[0] == 200
    refused(call(sb, "POST", f"/reversal/{account}/0.01", rev), "ERROR_REVERSAL_EXCEEDS")
    assert balance(sb) == 18900

    call(sb, "POST", "/logout", session_headers(s))
    refused(call(sb, "POST", f"/reversal/{account}/1", rev), "ERROR_SESSION_CLOSED")


def test_a_deposit_cannot_be_reversed(sb: RapydSandbox) -> None:
    s = login(sb)
    tx = call(sb, "POST", "/deposit/5/GBP", session_headers(s))[1]["data"]["transaction_id"]
    account = s["accounts"][0]["account_id"]
    rev = {"token_id": s["token_id"], "operation_id": s["operation_id"], "transaction_id": tx}
    refused(call(sb, "POST", f"/reversal/{account}/5", rev), "ERROR_TRANSACTION_NOT_FOUND")


# --- idempotency -------------------------------------------------------------------------------


def test_an_idempotent_replay_after_logout_returns_the_first_answer(sb: RapydSandbox) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    headers = {**session_headers(s), "idempotency": "withdraw-0001"}
    first = raw(sb, "POST", f"/withdraw/{account}/10", headers)
    assert first.status == 200
    assert call(sb, "POST", "/logout", session_headers(s))[0] == 200
    replay = raw(sb, "POST", f"/withdraw/{account}/10", headers)
    assert (replay.status, replay.body) == (first.status, first.body)
    assert balance(sb) == 17900  # debited once
    other_path = call(sb, "POST", f"/withdraw/{account}/11", headers)  # same key, other path
    refused(other_path, "ERROR_SESSION_CLOSED")
    stranger = call(sb, "POST", f"/withdraw/{account}/10", headers, access_key="nope")
    refused(stranger, "ERROR_UNAUTHORIZED", 401)


def test_refusals_are_not_stored_for_replay(sb: RapydSandbox) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    headers = {**session_headers(s), "idempotency": "k-2"}
    refused(call(sb, "POST", f"/withdraw/{account}/1000", headers), "ERROR_INSUFFICIENT_FUNDS")
    richer = [{"currency": "GBP", "balance": 200000}]
    hook(sb, "POST", "/wallets", {"phone_number": PHONE, "accounts": richer})
    assert call(sb, "POST", f"/withdraw/{account}/1000", headers)[0] == 200
    assert balance(sb) == 100000


# --- authentication ----------------------------------------------------------------------------


def _signature(method: str, url_path: str, salt: str, ts: str, body: str) -> str:
    """Rapyd's request-signatures page, computed here on its own."""
    to_sign = f"{method.lower()}{url_path}{salt}{ts}{ACCESS}{SECRET}{body}".encode()
    hex_digest = hmac.new(SECRET.encode(), to_sign, hashlib.sha256).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode()


def test_signatures_are_optional_but_verified_when_present(sb: RapydSandbox, wall: Wall) -> None:
    now = str(T0_MS // 1000)
    salt = "a1b2c3d4e5f6"
    good = {"salt": salt, "timestamp": now}
    good["signature"] = _signature("GET", "/v1/pos/echo", salt, now, "")
    status, doc = call(sb, "GET", "/echo", good)
    assert status == 200 and set(doc) == {"status"} and doc["status"]["error_code"] == "0"
    assert call(sb, "GET", "/echo")[0] == 200  # absent: accepted

    wrong = {**good, "signature": good["signature"][:-4] + "AAAA"}
    refused(call(sb, "GET", "/echo", wrong), "ERROR_UNAUTHORIZED", 401)
    refused(call(sb, "GET", "/echo", {"salt": salt, "timestamp": now}), "ERROR_UNAUTHORIZED", 401)
    short = {"salt": "abc", "timestamp": now}
    short["signature"] = _signature("GET", "/v1/pos/echo", "abc", now, "")
    refused(call(sb, "GET", "/echo", short), "ERROR_UNAUTHORIZED", 401)
    wall.ms += 61_000
    refused(call(sb, "GET", "/echo", good), "ERROR_UNAUTHORIZED", 401)  # stale

    s = login(sb)
    now = str(wall.ms // 1000)
    body = '{"metadata":{"ref":"r1"}}'
    url = "/v1/pos/deposit/3/GBP"
    signed = {**session_headers(s), "salt": "saltsalt", "timestamp": now}
    signed["signature"] = _signature("post", url, "saltsalt", now, body)
    pretty = json.dumps(json.loads(body), indent=1)
    loose = {**signed, "signature": _signature("post", url, "saltsalt", now, pretty)}
    refused(call(sb, "POST", "/deposit/3/GBP", loose, pretty.encode()), "ERROR_UNAUTHORIZED", 401)
    status, doc = call(sb, "POST", "/deposit/3/GBP", signed, body.encode())
    assert status == 200 and doc["data"]["metadata"] == {"ref": "r1"}


def test_an_unknown_access_key_or_another_pos_is_refused(sb: RapydSandbox) -> None:
    refused(call(sb, "GET", "/echo", access_key="0000000000000000"), "ERROR_UNAUTHORIZED", 401)
    refused(call(sb, "GET", "/echo", access_key=None), "ERROR_UNAUTHORIZED", 401)
    hook(sb, "POST", "/pos", {"pos_id": "pos-2", "access_key": "K2", "secret_key": "S2"})
    otp = hook(sb, "POST", "/otps", {"phone_number": PHONE})["otp"]
    other = call(sb, "POST", f"/login/pos-2/{otp}", {"phone_number": PHONE})
    refused(other, "ERROR_UNAUTHORIZED", 401)
    s = call(sb, "POST", f"/login/{POS_ID}/{otp}", {"phone_number": PHONE})[1]["data"]
    theirs = call(sb, "POST", "/logout", session_headers(s), access_key="K2")
    refused(theirs, "ERROR_INVALID_SESSION")  # a session is its POS's
    with pytest.raises(HookError):
        hook(sb, "POST", "/pos", {"pos_id": "pos-3", "access_key": "K2", "secret_key": "S3"})


def test_content_type_and_unknown_methods(sb: RapydSandbox) -> None:
    otp = hook(sb, "POST", "/otps", {"phone_number": PHONE})["otp"]
    response = sb.handle(
        Request(
            "POST", f"/login/{POS_ID}/{otp}", headers={"access_key": ACCESS, "phone_number": PHONE}
        )
    )
    assert response.status == 400
    assert json.loads(response.body)["status"]["error_code"] == "ERROR_INVALID_CONTENT_TYPE"
    refused(call(sb, "POST", "/pay/1/GBP"), "ERROR_NOT_FOUND", 404)
    refused(call(sb, "POST", "/echo"), "ERROR_NOT_FOUND", 404)


# --- faults, hooks, persistence ----------------------------------------------------------------


def test_faults_armed_by_hook(sb: RapydSandbox) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    path = f"/withdraw/{account}/1"
    assert hook(sb, "POST", "/faults", {"op": "withdraw", "mode": "error_500"})["armed"] == 1
    response = raw(sb, "POST", path, session_headers(s))
    assert response.status == 500 and balance(sb) == 18900  # no effect

    hook(sb, "POST", "/faults", {"op": "withdraw", "mode": "drop_response"})
    response = raw(sb, "POST", path, session_headers(s))
    assert response.drop and balance(sb) == 18800  # the effect happened, unheard

    hook(sb, "POST", "/faults", {"op": "logout", "mode": "delay", "delay_s": 1.5})
    response = raw(sb, "POST", "/logout", session_headers(s))
    assert response.status == 200 and response.delay_ms == 1500
    assert hook(sb, "GET", "/sessions")["closed"] == 1

    hook(sb, "POST", "/faults", {"op": "echo", "mode": "http_429", "count": 2})
    assert sb.handle(Request("GET", "/echo", headers={"access_key": ACCESS})).status == 429
    assert hook(sb, "POST", "/faults", {"clear": True}) == {"cleared": True}
    assert call(sb, "GET", "/echo")[0] == 200
    with pytest.raises(HookError):
        hook(sb, "POST", "/faults", {"op": "pay", "mode": "error_500"})


def test_hooks_refuse_bad_payloads(sb: RapydSandbox) -> None:
    for path, body in (
        ("/wallets", {"phone_number": "12345"}),
        ("/wallets", {"phone_number": PHONE, "accounts": [{"currency": "GBP", "balance": 1.5}]}),
        ("/wallets", {"phone_number": PHONE, "accounts": [{"currency": "XXX", "balance": 1}]}),
        ("/otps", {"phone_number": "+447700900999"}),  # no wallet
        ("/otps/expire", {"otp": "000000"}),
        ("/pos", {"pos_id": "p"}),
    ):
        with pytest.raises(HookError):
            hook(sb, "POST", path, body)
    with pytest.raises(HookError):
        hook(sb, "GET", "/transactions/nope")
    view = hook(sb, "GET", f"/wallets/{PHONE}")  # "+" left as it is works too
    assert view["phone_number"] == PHONE and view["accounts"][0]["balance"] == 18900


def test_state_survives_a_new_sandbox_on_the_same_dir(
    sb: RapydSandbox, tmp_path: Path, wall: Wall
) -> None:
    s = login(sb)
    account = s["accounts"][0]["account_id"]
    headers = {**session_headers(s), "idempotency": "persist-1"}
    first = call(sb, "POST", f"/withdraw/{account}/7.25", headers)
    sb.close()
    assert (tmp_path / "rapyd.json").exists()

    again = _make(tmp_path, wall)
    assert call(again, "POST", f"/withdraw/{account}/7.25", headers) == first  # the replay
    assert balance(again) == 18900 - 725
    assert [u["token_id"] for u in hook(again, "GET", "/sessions")["unclosed"]] == [s["token_id"]]
    assert call(again, "POST", "/logout", session_headers(s))[0] == 200
    assert hook(again, "GET", "/sessions") == {"unclosed": [], "closed": 1}
    again.close()


def test_over_a_loopback_http_server(tmp_path: Path) -> None:
    from kiosk.sandbox.server import SandboxApp, _Server

    clock = SandboxClock(tmp_path)
    provider = RapydSandbox(tmp_path, clock)
    app = SandboxApp(clock, [provider])
    server = _Server(("127.0.0.1", 0), app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with httpx.Client(base_url=base, timeout=5.0) as http:
            keys = {"pos_id": POS_ID, "access_key": ACCESS, "secret_key": SECRET}
            assert http.post("/_sandbox/rapyd/pos", json=keys).status_code == 200
            wallet = {"phone_number": PHONE, "accounts": [{"currency": "USD", "balance": 5000}]}
            assert http.post("/_sandbox/rapyd/wallets", json=wallet).status_code == 200
            otp = http.post("/_sandbox/rapyd/otps", json={"phone_number": PHONE}).json()["otp"]
            auth = {"access_key": ACCESS, "Content-Type": "application/json"}
            s = http.post(f"/v1/pos/login/{POS_ID}/{otp}", headers={**auth, "phone_number": PHONE})
            data = s.json()["data"]
            h = {**auth, "token_id": data["token_id"], "operation_id": data["operation_id"]}
            h.update(phone_number=PHONE, idempotency="http-1")
            http.post("/_sandbox/rapyd/faults", json={"op": "withdraw", "mode": "drop_response"})
            url = f"/v1/pos/withdraw/{data['accounts'][0]['account_id']}/12.34"
            with pytest.raises(httpx.RemoteProtocolError):
                http.post(url, headers=h)
            retry = http.post(url, headers=h)  # the same idempotency: the first answer
            assert retry.status_code == 200 and retry.json()["data"]["transaction_id"]
            assert (
                http.get("/_sandbox/rapyd/wallets/%2B14155559992").json()["accounts"][0]["balance"]
                == 5000 - 1234
            )
            assert http.post("/v1/pos/logout", headers=h).status_code == 200
            bad = http.get("/v1/pos/echo", headers={"access_key": "wrong"})
            assert bad.status_code == 401
            assert bad.json()["status"]["error_code"] == "ERROR_UNAUTHORIZED"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        app.close()
