"""The Cashii sandbox at the API level, against Cashii's documents (providers.md §4, seed 003):
the Bearer key, create and retrieve, validation, the status machine through the hooks,
``payable_to``, no idempotency, faults, persistence, and one pass over a loopback server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiosk.sandbox.cashii import CashiiSandbox
from kiosk.sandbox.kit import HookError, Request, SandboxClock

KEY = "cashii-test-key-0001"
OTHER_KEY = "cashii-test-key-other"
MERCHANT = "1000000000000001"
OTHER_MERCHANT = "1000000000000002"
PAYER = "2000000000000001"
BODY: dict[str, Any] = {  # the docs' example
    "amount": 10098,
    "currency": "SYP",
    "note": "Payment for Order #ORD-12345",
    "metadata": {"orderId": "ORD-12345", "customerId": "CUST-678"},
}
T0_MS = 1_700_000_000_000


def _make(state_dir: Path) -> CashiiSandbox:
    return CashiiSandbox(state_dir, SandboxClock(state_dir, wall_ms=lambda: T0_MS))


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[CashiiSandbox]:
    sandbox = _make(tmp_path)
    hook(sandbox, "POST", "/merchants", {"api_key": KEY, "account": MERCHANT})
    hook(sandbox, "POST", "/merchants", {"api_key": OTHER_KEY, "account": OTHER_MERCHANT})
    hook(sandbox, "POST", "/accounts", {"account": PAYER, "balance": 50000, "currency": "SYP"})
    yield sandbox
    sandbox.close()


def hook(sb: CashiiSandbox, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = sb.handle_hook(Request(method, path, json.dumps(body or {}).encode()))
    assert response.status == 200, response.body
    return json.loads(response.body)


def hook_refused(sb: CashiiSandbox, path: str, body: dict[str, Any] | None, status: int) -> None:
    with pytest.raises(HookError) as caught:
        hook(sb, "POST", path, body)
    assert caught.value.status == status


def call(
    sb: CashiiSandbox,
    method: str,
    path: str,
    body: bytes | dict[str, Any] = b"",
    *,
    key: str | None = KEY,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": content_type}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    response = sb.handle(Request(method, path, raw, headers))
    return response.status, json.loads(response.body)


def create(sb: CashiiSandbox, **changes: Any) -> str:
    status, doc = call(sb, "POST", "/remote-payments", {**BODY, **changes})
    assert status == 201, doc
    assert set(doc) == {"data"} and set(doc["data"]) == {"id"}
    return str(doc["data"]["id"])


def get(sb: CashiiSandbox, payment_id: str, key: str = KEY) -> dict[str, Any]:
    status, doc = call(sb, "GET", f"/remote-payments/{payment_id}", key=key)
    assert status == 200, doc
    return dict(doc["data"])


def refused(result: tuple[int, dict[str, Any]], status: int, code: str) -> None:
    got, doc = result
    assert got == status, doc
    assert set(doc) == {"error"} and doc["error"]["code"] == code and doc["error"]["message"]


def balances(sb: CashiiSandbox, account: str) -> dict[str, int]:
    return dict(hook(sb, "GET", f"/accounts/{account}")["balances"])


# --- create and retrieve -----------------------------------------------------------------------


def test_create_answers_201_with_a_16_digit_string_id(sb: CashiiSandbox) -> None:
    ids = {create(sb) for _ in range(20)}
    assert len(ids) == 20
    for payment_id in ids:
        assert isinstance(payment_id, str) and len(payment_id) == 16 and payment_id.isdigit()


def test_get_shows_the_payment_as_created(sb: CashiiSandbox) -> None:
    payment_id = create(sb)
    data = get(sb, payment_id)
    assert data == {
        "id": payment_id,
        "amount": 10098,
        "currency": "SYP",
        "note": "Payment for Order #ORD-12345",
        "metadata": {"orderId": "ORD-12345", "customerId": "CUST-678"},
        "status": "pending",
        "to": MERCHANT,
        "created_at": "2023-11-14T22:13:20.000Z",
    }
    assert "from" not in data and "payable_to" not in data


def test_metadata_numbers_come_back_with_their_digits(sb: CashiiSandbox) -> None:
    body = b'{"amount": 5, "currency": "USD", "note": "n", "metadata": {"rate": 1.10, "n": 3}}'
    status, doc = call(sb, "POST", "/remote-payments", body)
    assert status == 201
    response = sb.handle(
        Request(
            "GET", f"/remote-payments/{doc['data']['id']}", b"", {"authorization": "Bearer " + KEY}
        )
    )
    assert b'"metadata":{"rate":1.10,"n":3}' in response.body


def test_the_bearer_key_is_required_and_checked(sb: CashiiSandbox) -> None:
    payment_id = create(sb)
    for key in (None, "wrong", ""):
        refused(call(sb, "POST", "/remote-payments", BODY, key=key), 401, "unauthenticated")
        refused(call(sb, "GET", f"/remote-payments/{payment_id}", key=key), 401, "unauthenticated")
    for header in (KEY, f"Basic {KEY}", f"Bearer {KEY} extra"):
        response = sb.handle(
            Request("GET", f"/remote-payments/{payment_id}", b"", {"authorization": header})
        )
        assert response.status == 401
        assert ("WWW-Authenticate", 'Bearer realm="cashii"') in response.headers
    assert hook(sb, "GET", "/payments")["payments"][0]["id"] == payment_id  # no second payment
    assert len(hook(sb, "GET", "/payments")["payments"]) == 1


def test_another_merchants_payment_is_not_found(sb: CashiiSandbox) -> None:
    payment_id = create(sb)
    refused(call(sb, "GET", f"/remote-payments/{payment_id}", key=OTHER_KEY), 404, "not_found")
    hook(sb, "POST", "/merchants", {"api_key": "second-key", "account": MERCHANT})
    assert get(sb, payment_id, key="second-key")["id"] == payment_id  # the account's payment


def test_unknown_payments_paths_and_methods(sb: CashiiSandbox) -> None:
    refused(call(sb, "GET", "/remote-payments/1234567890123456"), 404, "not_found")
    refused(call(sb, "GET", "/remote-payments/12345"), 404, "not_found")
    refused(call(sb, "GET", "/remote-payments/abc"), 404, "not_found")
    refused(call(sb, "GET", "/payments"), 404, "not_found")
    refused(call(sb, "GET", "/remote-payments"), 405, "method_not_allowed")
    payment_id = create(sb)
    refused(call(sb, "DELETE", f"/remote-payments/{payment_id}"), 405, "method_not_allowed")
    refused(call(sb, "POST", f"/remote-payments/{payment_id}/cancel"), 404, "not_found")
    refused(call(sb, "POST", f"/remote-payments/{payment_id}/refund"), 404, "not_found")
    assert get(sb, payment_id)["status"] == "pending"


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 100.5},
        {"amount": 100.0},
        {"amount": "10098"},
        {"amount": 0},
        {"amount": -1},
        {"amount": True},
        {"amount": 2**53},
        {"amount": None},
        {"currency": "XXX"},
        {"currency": "usd"},
        {"currency": 840},
        {"note": "x" * 256},
        {"note": ""},
        {"note": 5},
        {"metadata": "orderId=1"},
        {"metadata": ["ORD-1"]},
        {"metadata": None},
        {"metadata": {"blob": "x" * 5000}},
        {"payable_to": None},
        {"payable_to": ""},
        {"payable_to": 123},
        {"redirectUrl": "https://kiosk.example/back"},
    ],
)
def test_a_bad_body_is_refused_with_422(sb: CashiiSandbox, changes: dict[str, Any]) -> None:
    refused(call(sb, "POST", "/remote-payments", {**BODY, **changes}), 422, "validation_error")
    assert hook(sb, "GET", "/payments") == {"payments": []}


def test_missing_fields_non_json_and_the_content_type(sb: CashiiSandbox) -> None:
    for name in ("amount", "currency", "note", "metadata"):
        body = {k: v for k, v in BODY.items() if k != name}
        refused(call(sb, "POST", "/remote-payments", body), 422, "validation_error")
    for raw in (b"", b"not json", b"[1]", b'{"amount": NaN}'):
        refused(call(sb, "POST", "/remote-payments", raw), 422, "validation_error")
    refused(
        call(sb, "POST", "/remote-payments", BODY, content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    status, _ = call(
        sb, "POST", "/remote-payments", BODY, content_type="application/json; charset=utf-8"
    )
    assert status == 201
    for code in ("AED", "EUR", "GBP", "USD", "SYP", "TRY"):
        create(sb, currency=code)
    create(sb, note="x" * 255)


def test_two_identical_creates_make_two_payments(sb: CashiiSandbox) -> None:
    first, second = create(sb), create(sb)
    assert first != second
    payments = hook(sb, "GET", "/payments")["payments"]
    assert [p["id"] for p in payments] == [first, second]
    assert all(p["status"] == "pending" for p in payments)


# --- the status machine ------------------------------------------------------------------------


def test_the_customer_pays(sb: CashiiSandbox) -> None:
    payment_id = create(sb)
    paid = hook(sb, "POST", f"/payments/{payment_id}/pay", {"account": PAYER})
    assert paid["status"] == "paid" and paid["from"] == PAYER
    data = get(sb, payment_id)
    assert data["status"] == "paid" and data["from"] == PAYER and data["to"] == MERCHANT
    assert balances(sb, PAYER) == {"SYP": 50000 - 10098}
    assert balances(sb, MERCHANT) == {"SYP": 10098}
    hook_refused(sb, f"/payments/{payment_id}/pay", {"account": PAYER}, 409)  # a second pay
    for action in ("reject", "cancel"):
        hook_refused(sb, f"/payments/{payment_id}/{action}", None, 409)
    assert balances(sb, PAYER) == {"SYP": 50000 - 10098}


def test_insufficient_funds_reject_the_payment(sb: CashiiSandbox) -> None:
    payment_id = create(sb, amount=50001)
    rejected = hook(sb, "POST", f"/payments/{payment_id}/pay", {"account": PAYER})
    assert rejected["status"] == "rejected" and rejected["reason"] == "insufficient_funds"
    data = get(sb, payment_id)
    assert data["status"] == "rejected" and "from" not in data
    assert balances(sb, PAYER) == {"SYP": 50000}
    other_currency = create(sb, currency="USD", amount=1)  # the payer has no USD
    assert hook(sb, "POST", f"/payments/{other_currency}/pay", {"account": PAYER})["status"] == (
        "rejected"
    )
    hook_refused(sb, f"/payments/{payment_id}/pay", {"account": PAYER}, 409)


def test_reject_cancel_and_refund(sb: CashiiSandbox) -> None:
    rejected, canceled, refunded = create(sb), create(sb), create(sb)
    assert hook(sb, "POST", f"/payments/{rejected}/reject")["status"] == "rejected"
    assert hook(sb, "POST", f"/payments/{canceled}/cancel")["status"] == "canceled"
    for done in (rejected, canceled):
        hook_refused(sb, f"/payments/{done}/pay", {"account": PAYER}, 409)
        hook_refused(sb, f"/payments/{done}/refund", None, 409)
    assert get(sb, canceled)["status"] == "canceled"

    hook_refused(sb, f"/payments/{refunded}/refund", None, 409)  # pending: nothing to refund
    hook(sb, "POST", f"/payments/{refunded}/pay", {"account": PAYER})
    assert hook(sb, "POST", f"/payments/{refunded}/refund")["status"] == "refunded"
    data = get(sb, refunded)
    assert data["status"] == "refunded" and data["from"] == PAYER
    assert balances(sb, PAYER) == {"SYP": 50000} and balances(sb, MERCHANT) == {"SYP": 0}
    hook_refused(sb, f"/payments/{refunded}/refund", None, 409)
    assert [p["id"] for p in hook(sb, "GET", "/payments")["payments"]] == [
        rejected,
        canceled,
        refunded,
    ]


def test_payable_to_limits_who_may_pay(sb: CashiiSandbox) -> None:
    hook(
        sb,
        "POST",
        "/accounts",
        {"account": "2000000000000009", "balance": 99999, "currency": "SYP"},
    )
    payment_id = create(sb, payable_to=PAYER)
    assert get(sb, payment_id)["payable_to"] == PAYER
    hook_refused(sb, f"/payments/{payment_id}/pay", {"account": "2000000000000009"}, 409)
    assert get(sb, payment_id)["status"] == "pending"
    assert balances(sb, "2000000000000009") == {"SYP": 99999}
    assert hook(sb, "POST", f"/payments/{payment_id}/pay", {"account": PAYER})["status"] == "paid"


def test_hooks_refuse_bad_payloads(sb: CashiiSandbox) -> None:
    payment_id = create(sb)
    hook_refused(sb, f"/payments/{payment_id}/pay", {"account": "nobody"}, 404)
    hook_refused(sb, f"/payments/{payment_id}/pay", {}, 404)
    hook_refused(sb, "/payments/9999999999999999/pay", {"account": PAYER}, 404)
    hook_refused(sb, "/merchants", {"api_key": KEY, "account": OTHER_MERCHANT}, 409)
    hook_refused(sb, "/merchants", {"api_key": "", "account": MERCHANT}, 400)
    hook_refused(sb, "/accounts", {"account": PAYER, "balance": 1.5, "currency": "SYP"}, 400)
    hook_refused(sb, "/accounts", {"account": PAYER, "balance": 1, "currency": "XXX"}, 400)
    hook_refused(sb, "/accounts", {"account": "a/b", "balance": 1, "currency": "SYP"}, 400)
    with pytest.raises(HookError):
        hook(sb, "GET", "/accounts/nobody")
    with pytest.raises(HookError):
        hook(sb, "GET", "/payments/9999999999999999")
    assert hook(sb, "GET", f"/payments/{payment_id}")["status"] == "pending"
    listed = sb.handle_hook(Request("GET", "/payments", query={"status": "paid"}))
    assert json.loads(listed.body) == {"payments": []}


# --- faults and persistence --------------------------------------------------------------------


def test_faults_armed_by_hook(sb: CashiiSandbox) -> None:
    raw = json.dumps(BODY).encode()
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    assert hook(sb, "POST", "/faults", {"op": "create", "mode": "error_500"})["armed"] == 1
    response = sb.handle(Request("POST", "/remote-payments", raw, headers))
    assert response.status == 500 and hook(sb, "GET", "/payments") == {"payments": []}

    hook(sb, "POST", "/faults", {"op": "create", "mode": "drop_response"})
    response = sb.handle(Request("POST", "/remote-payments", raw, headers))
    assert response.drop  # the payment exists; the kiosk never heard its id
    (made,) = hook(sb, "GET", "/payments")["payments"]
    assert made["status"] == "pending" and made["amount"] == 10098

    hook(sb, "POST", "/faults", {"op": "get", "mode": "delay", "delay_s": 1.5})
    response = sb.handle(Request("GET", f"/remote-payments/{made['id']}", b"", headers))
    assert response.status == 200 and response.delay_ms == 1500

    hook(sb, "POST", "/faults", {"op": "get", "mode": "http_429", "count": 2})
    assert sb.handle(Request("GET", f"/remote-payments/{made['id']}", b"", headers)).status == 429
    assert hook(sb, "POST", "/faults", {"clear": True}) == {"cleared": True}
    assert get(sb, made["id"])["status"] == "pending"
    hook_refused(sb, "/faults", {"op": "pay", "mode": "error_500"}, 400)
    hook_refused(sb, "/faults", {"op": "create", "mode": "unsigned_402"}, 400)


def test_state_survives_a_new_sandbox_on_the_same_dir(sb: CashiiSandbox, tmp_path: Path) -> None:
    paid, pending = create(sb, metadata={"rate": 1}), create(sb)
    hook(sb, "POST", f"/payments/{paid}/pay", {"account": PAYER})
    sb.close()
    assert (tmp_path / "cashii.json").exists() and not (tmp_path / "cashii.tmp").exists()

    again = _make(tmp_path)
    assert get(again, paid)["status"] == "paid" and get(again, pending)["status"] == "pending"
    assert balances(again, PAYER) == {"SYP": 50000 - 10098}
    assert hook(again, "POST", f"/payments/{pending}/cancel")["status"] == "canceled"
    assert create(again) not in (paid, pending)
    again.close()


def test_over_a_loopback_http_server(tmp_path: Path) -> None:
    from kiosk.sandbox.server import SandboxApp, _Server

    clock = SandboxClock(tmp_path)
    provider = CashiiSandbox(tmp_path, clock)
    app = SandboxApp(clock, [provider])
    server = _Server(("127.0.0.1", 0), app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with httpx.Client(base_url=base, timeout=5.0) as http:
            hooks = "/_sandbox/cashii"
            merchant = {"api_key": KEY, "account": MERCHANT}
            assert http.post(f"{hooks}/merchants", json=merchant).status_code == 200
            account = {"account": PAYER, "balance": 20000, "currency": "USD"}
            assert http.post(f"{hooks}/accounts", json=account).status_code == 200
            auth = {"Authorization": f"Bearer {KEY}"}
            body = {**BODY, "currency": "USD", "metadata": {"kiosk": "K1"}}

            http.post(f"{hooks}/faults", json={"op": "create", "mode": "drop_response"})
            with pytest.raises(httpx.RemoteProtocolError):
                http.post("/api/v1/remote-payments", json=body, headers=auth)
            created = http.post("/api/v1/remote-payments", json=body, headers=auth)
            assert created.status_code == 201
            assert created.headers["content-type"] == "application/json"
            payment_id = created.json()["data"]["id"]
            assert len(http.get(f"{hooks}/payments").json()["payments"]) == 2  # no idempotency

            paid = http.post(f"{hooks}/payments/{payment_id}/pay", json={"account": PAYER})
            assert paid.status_code == 200 and paid.json()["status"] == "paid"
            read = http.get(f"/api/v1/remote-payments/{payment_id}", headers=auth)
            assert read.status_code == 200
            assert read.json()["data"]["status"] == "paid" and read.json()["data"]["from"] == PAYER
            again = http.post(f"{hooks}/payments/{payment_id}/pay", json={"account": PAYER})
            assert again.status_code == 409 and "error" in again.json()

            bad = http.get(f"/api/v1/remote-payments/{payment_id}")
            assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"
            assert bad.headers["www-authenticate"].startswith("Bearer")
            balances = http.get(f"{hooks}/accounts/{PAYER}").json()["balances"]
            assert balances == {"USD": 20000 - 10098}
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        app.close()
