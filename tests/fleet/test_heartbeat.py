"""The heartbeat document: every variant of the kiosk's state validates against the schema."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from kiosk.fleet import heartbeat
from kiosk.fleet.view import ApprovalView, DeviceView, KioskView, ProviderView

NOW = 1_738_324_800.25  # 2025-01-31T12:00:00.250Z


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(heartbeat.SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


DEVICES = (
    DeviceView("validator", True, "ok", {"model": "NV200", "fault": None}),
    DeviceView(
        "recycler",
        True,
        "ok",
        {"levels": {"5000": 3, "10000": 1}, "value": 25000, "currency": "AED"},
    ),
    DeviceView("printer", True, "ok", {"paper": "near_end"}),
    DeviceView("camera", True, "ok"),
    DeviceView("door", True, "closed"),
)
PROVIDERS = (
    ProviderView("payby", True, 120.04, 0.31, "2025-01-31T11:58:00.123Z"),
    ProviderView("rapyd", True, 3600.0, None, None),
)


def make_view(**over: Any) -> KioskView:
    base = KioskView(
        kiosk_id="KSK-0001",
        device_id="rpi-10000000a1b2c3d4",
        version="0.1.0",
        started_at=NOW - 3725.9,
        now=NOW,
        state="in_service",
        reasons=(),
        devices=DEVICES,
        providers=PROVIDERS,
        currency="AED",
        cashbox_notes=120,
        cashbox_value=650000,
        cashbox_capacity=600,
        pending=0,
        pending_oldest_s=0.0,
        outbox_depth=0,
        outbox_oldest_s=0.0,
        liabilities={},
        liabilities_count=0,
        disk_free_bytes=12_000_000_000,
        cpu_temperature_c=48.312,
    )
    return dataclasses.replace(base, **over)


VARIANTS = {
    "in service": make_view(),
    "busy": make_view(state="busy", pending=1, pending_oldest_s=12.345),
    "out of service": make_view(
        state="out_of_service",
        reasons=("printer: paper out", "cashbox full"),
        devices=(
            DEVICES[0],
            DeviceView("printer", False, "paper out", {"paper": "out"}),
            DeviceView("door", False, "open"),
        ),
        cashbox_notes=600,
    ),
    "offline": make_view(
        state="offline",
        reasons=("no provider answers",),
        providers=(
            ProviderView("payby", False, 900.0, None, None),
            ProviderView("paysera", False, 12.0, -4.2, "2025-01-30T08:00:00+04:00"),
        ),
        outbox_depth=4,
        outbox_oldest_s=861.77,
    ),
    "no recycler": make_view(devices=tuple(d for d in DEVICES if d.name != "recycler")),
    "no temperature": make_view(cpu_temperature_c=None),
    "several currencies": make_view(
        liabilities={"EUR": 2050, "AED": 15000, "BUSD": 123456789, "XXX": 7, "USD": 0},
        liabilities_count=4,
    ),
    "capacity unknown": make_view(cashbox_capacity=0),
    "odd details": make_view(
        devices=(
            DeviceView("validator", False, "", {"model": 42, "fault": "jam"}),
            DeviceView("recycler", False, "not answering", {"levels": {"x": 1, "500": -1}}),
            DeviceView("printer", True, "ok", {"paper": "plenty"}),
            DeviceView("buttons", True, "ok", {"whatever": [1, 2]}),
        ),
        providers=(ProviderView("cashii", True, float("nan"), float("inf"), "yesterday"),),
        pending_oldest_s=-3.0,
    ),
    "no devices, no providers": make_view(devices=(), providers=()),
    "approvals waiting": make_view(
        state="busy",
        approvals=(
            ApprovalView("KSK-0001-000041", "paysera", 25000, "AED", NOW - 30.5, NOW + 89.5),
            ApprovalView("KSK-0001-000042", "rapyd", 123456789, "BUSD", NOW - 1, NOW + 119),
        ),
    ),
}


def test_a_waiting_approval_is_in_the_heartbeat_with_its_amount_and_times_and_no_code(
    validator: Draft202012Validator,
) -> None:
    doc = heartbeat.build(VARIANTS["approvals waiting"], seq=3, missed=0)
    assert validator.is_valid(doc)
    first, second = doc["approvals"]
    assert first == {
        "reference": "KSK-0001-000041",
        "provider": "paysera",
        "amount": {"currency": "AED", "minor": 25000, "amount": "250.00"},
        "waiting_since": "2025-01-31T11:59:29.750Z",
        "expires_at": "2025-01-31T12:01:29.750Z",
    }
    assert second["amount"]["amount"] == "1.23456789"
    assert heartbeat.build(make_view(), seq=1, missed=0)["approvals"] == []
    with_code = copy.deepcopy(doc)
    with_code["approvals"][0]["code"] = "7305918264401937265518302746"
    assert not validator.is_valid(with_code)  # additionalProperties: false
    bad_ref = copy.deepcopy(doc)
    bad_ref["approvals"][0]["reference"] = "KSK 1"
    assert not validator.is_valid(bad_ref)
    float_amount = copy.deepcopy(doc)
    float_amount["approvals"][0]["amount"]["minor"] = 250.5
    assert not validator.is_valid(float_amount)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_validates(name: str, validator: Draft202012Validator) -> None:
    doc = heartbeat.build(VARIANTS[name], seq=7, missed=2)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert json.loads(heartbeat.canonical(doc)) == doc  # JSON all the way, nothing lost


def test_the_in_service_document() -> None:
    doc = heartbeat.build(make_view(), seq=41, missed=0)
    assert doc["schema"] == "kiosk.heartbeat/1"
    assert (doc["device_id"], doc["kiosk_id"], doc["version"]) == (
        "rpi-10000000a1b2c3d4",
        "KSK-0001",
        "0.1.0",
    )
    assert (doc["uptime_s"], doc["sent_at"], doc["seq"]) == (3725, "2025-01-31T12:00:00.250Z", 41)
    assert (doc["state"], doc["reasons"], doc["missed"]) == ("in_service", [], 0)
    assert doc["cashbox"] == {
        "notes": 120,
        "value": {"currency": "AED", "minor": 650000, "amount": "6500.00"},
        "capacity": 600,
        "fill": 0.2,
    }
    assert doc["devices"]["validator"] == {
        "ok": True,
        "status": "ok",
        "model": "NV200",
        "fault": None,
    }
    assert doc["devices"]["recycler"]["levels"] == {"5000": 3, "10000": 1}
    assert doc["devices"]["recycler"]["value"]["amount"] == "250.00"
    assert doc["devices"]["printer"]["paper"] == "near_end"
    assert doc["devices"]["door"] == {"ok": True, "status": "closed"}
    assert doc["providers"]["payby"] == {
        "reachable": True,
        "for_s": 120.0,
        "clock_offset_s": 0.3,
        "last_success_at": "2025-01-31T11:58:00.123Z",
        "auth_refused": False,
    }
    assert doc["cpu_temperature_c"] == 48.3


def test_liabilities_are_exact_objects_sorted_by_currency() -> None:
    doc = heartbeat.build(VARIANTS["several currencies"], seq=1, missed=0)
    assert doc["liabilities"] == {
        "count": 4,
        "open": [
            {"currency": "AED", "minor": 15000, "amount": "150.00"},
            {"currency": "BUSD", "minor": 123456789, "amount": "1.23456789"},
            {"currency": "EUR", "minor": 2050, "amount": "20.50"},
            {"currency": "XXX", "minor": 7, "amount": None},  # unknown: no decimal invented
        ],
    }


def test_odd_details_become_unknowns_not_errors() -> None:
    doc = heartbeat.build(VARIANTS["odd details"], seq=1, missed=0)
    assert doc["devices"]["validator"] == {
        "ok": False,
        "status": "unknown",
        "model": None,
        "fault": "jam",
    }
    assert doc["devices"]["recycler"]["levels"] == {}
    assert doc["devices"]["recycler"]["value"] == {"currency": "AED", "minor": 0, "amount": "0.00"}
    assert doc["devices"]["printer"]["paper"] == "unknown"
    assert doc["devices"]["buttons"] == {"ok": True, "status": "ok"}
    assert doc["providers"]["cashii"] == {
        "reachable": True,
        "for_s": 0.0,
        "clock_offset_s": None,
        "last_success_at": None,
        "auth_refused": False,
    }
    assert doc["pending"] == {"count": 0, "oldest_s": 0.0}


def test_times_in_other_offsets_are_given_in_utc() -> None:
    doc = heartbeat.build(VARIANTS["offline"], seq=1, missed=0)
    assert doc["providers"]["paysera"]["last_success_at"] == "2025-01-30T04:00:00.000Z"


def _invalid(validator: Draft202012Validator, doc: dict[str, Any]) -> bool:
    return not validator.is_valid(doc)


def test_the_schema_refuses_what_it_must(validator: Draft202012Validator) -> None:
    good = heartbeat.build(VARIANTS["several currencies"], seq=1, missed=0)
    assert validator.is_valid(good)

    def changed(edit: Any) -> dict[str, Any]:
        doc = copy.deepcopy(good)
        edit(doc)
        return doc

    assert _invalid(validator, changed(lambda d: d.update(extra=1)))
    assert _invalid(validator, changed(lambda d: d["liabilities"]["open"][0].update(minor=150.5)))
    assert _invalid(validator, changed(lambda d: d["liabilities"]["open"][0].update(amount=150.0)))
    assert _invalid(validator, changed(lambda d: d["cashbox"]["value"].update(minor="650000")))
    assert _invalid(validator, changed(lambda d: d.pop("seq")))
    assert _invalid(validator, changed(lambda d: d.update(seq=-1)))
    assert _invalid(validator, changed(lambda d: d.update(state="sleeping")))
    assert _invalid(validator, changed(lambda d: d.update(device_id="rpi 1")))
    assert _invalid(validator, changed(lambda d: d.update(kiosk_id="")))
    assert _invalid(validator, changed(lambda d: d.update(sent_at="2025-01-31T12:00:00+04:00")))
    assert _invalid(validator, changed(lambda d: d.update(sent_at="yesterday")))
    assert _invalid(validator, changed(lambda d: d["cashbox"].update(colour="grey")))
    assert _invalid(validator, changed(lambda d: d["devices"]["printer"].update(paper="lots")))
    assert _invalid(
        validator, changed(lambda d: d["devices"].update(Door={"ok": True, "status": "x"}))
    )


def test_canonical_is_sorted_compact_ascii_and_refuses_nan() -> None:
    doc = heartbeat.build(make_view(reasons=("porte ouverte, côté client",)), seq=1, missed=0)
    body = heartbeat.canonical(doc)
    assert (
        body == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    )
    assert body.isascii() and b": " not in body and body.startswith(b'{"approvals":[],"cashbox":')
    with pytest.raises(ValueError):
        heartbeat.canonical({"x": float("nan")})


def test_the_schema_ships_beside_the_module() -> None:
    assert heartbeat.SCHEMA_PATH.parent.name == "fleet"
    assert heartbeat.SCHEMA_PATH.is_file()
