"""Prometheus metrics: gauges from views, counters from a real journal, request timing through
httpx hooks, the Pushgateway push to a loopback fake."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from kiosk.daemon import FAULT_WORDS
from kiosk.fleet.metrics import GAUGES, REASON_SLUGS, Metrics, reason_slug, scrape_cpu_ms
from kiosk.fleet.view import DeviceView, KioskView, ProviderView, TamperView
from kiosk.journal import Journal

NOW = 1_738_324_800.25
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

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


def make_view(**over: Any) -> KioskView:
    base = KioskView(
        kiosk_id="KSK-0001",
        device_id="rpi-10000000a1b2c3d4",
        version="0.1.0",
        started_at=NOW - 3725.5,
        now=NOW,
        state="in_service",
        reasons=(),
        devices=DEVICES,
        providers=(
            ProviderView("payby", True, 120.0, 0.31, None),
            ProviderView("rapyd", False, 30.0, None, None),
        ),
        currency="AED",
        cashbox_notes=120,
        cashbox_value=650000,
        cashbox_capacity=600,
        pending=2,
        pending_oldest_s=42.5,
        outbox_depth=3,
        outbox_oldest_s=7.25,
        liabilities={"AED": 15000, "USD": 500},
        liabilities_count=2,
        disk_free_bytes=12_000_000_000,
        cpu_temperature_c=48.5,
    )
    return dataclasses.replace(base, **over)


OUT_OF_SERVICE = make_view(
    state="out_of_service",
    reasons=(
        "door open (service mode)",
        FAULT_WORDS["jam"],
        "printer: paper out",
        "no payment provider answers (payby, rapyd)",
    ),
    devices=(
        DeviceView("validator", False, "jam", {"model": "NV200", "fault": "jam"}),
        DeviceView("printer", False, "paper out", {"paper": "out"}),
        DeviceView("door", False, "open"),
    ),
    providers=(ProviderView("payby", False, 5.0, None, None),),
    liabilities={},
    liabilities_count=0,
    cpu_temperature_c=None,
)


def samples(metrics: Metrics) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def series(found: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


def one(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def by(found: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in series(found, name).items()}


def test_an_in_service_view_sets_every_gauge() -> None:
    m = Metrics("KSK-0001", "rpi-1", "0.1.0")
    m.update(make_view(), missed=1, last_sent=NOW - 60)
    got = samples(m)
    assert one(got, "kiosk_info", kiosk="KSK-0001", device_id="rpi-1", version="0.1.0") == 1
    assert one(got, "kiosk_in_service") == 1
    assert series(got, "kiosk_out_of_service") == {}
    assert by(got, "kiosk_device_up", "device") == {
        "validator": 1,
        "recycler": 1,
        "printer": 1,
        "camera": 1,
        "door": 1,
    }
    assert series(got, "kiosk_validator_fault") == {}
    assert one(got, "kiosk_printer_paper") == 1  # near end
    assert one(got, "kiosk_cashbox_notes") == 120
    assert one(got, "kiosk_cashbox_capacity_notes") == 600
    assert one(got, "kiosk_cashbox_value_minor", currency="AED") == 650000
    assert by(got, "kiosk_recycler_notes", "denomination") == {"5000": 3, "10000": 1}
    assert one(got, "kiosk_recycler_value_minor", currency="AED") == 25000
    assert one(got, "kiosk_pending_transactions") == 2
    assert one(got, "kiosk_pending_oldest_seconds") == 42.5
    assert one(got, "kiosk_outbox_depth") == 3
    assert one(got, "kiosk_outbox_oldest_seconds") == 7.25
    assert one(got, "kiosk_liabilities_open") == 2
    assert by(got, "kiosk_liabilities_open_minor", "currency") == {"AED": 15000, "USD": 500}
    assert by(got, "kiosk_provider_up", "provider") == {"payby": 1, "rapyd": 0}
    assert by(got, "kiosk_provider_clock_offset_seconds", "provider") == {"payby": 0.31}
    assert one(got, "kiosk_heartbeats_missed") == 1
    assert one(got, "kiosk_heartbeat_last_sent_timestamp_seconds") == NOW - 60
    assert one(got, "kiosk_disk_free_bytes") == 12_000_000_000
    assert one(got, "kiosk_cpu_temperature_celsius") == 48.5
    assert one(got, "kiosk_uptime_seconds") == 3725.5


def test_reasons_faults_and_absent_values_come_and_go_with_the_view() -> None:
    m = Metrics("KSK-0001", "rpi-1", "0.1.0")
    m.update(make_view())
    m.update(OUT_OF_SERVICE)
    got = samples(m)
    assert one(got, "kiosk_in_service") == 0
    assert by(got, "kiosk_out_of_service", "reason") == {
        "door_open": 1,
        "validator_fault": 1,
        "printer": 1,
        "providers_down": 1,
    }
    assert by(got, "kiosk_validator_fault", "kind") == {"jam": 1}
    assert by(got, "kiosk_device_up", "device") == {"validator": 0, "printer": 0, "door": 0}
    assert one(got, "kiosk_printer_paper") == 2
    assert series(got, "kiosk_recycler_notes") == {}  # no recycler in this view
    assert series(got, "kiosk_liabilities_open_minor") == {}
    assert by(got, "kiosk_provider_up", "provider") == {"payby": 0}
    assert series(got, "kiosk_provider_clock_offset_seconds") == {}
    assert series(got, "kiosk_cpu_temperature_celsius") == {}
    assert series(got, "kiosk_heartbeat_last_sent_timestamp_seconds") == {}

    m.update(make_view(state="busy"))  # back in service: every reason and fault is gone
    got = samples(m)
    assert one(got, "kiosk_in_service") == 1
    assert series(got, "kiosk_out_of_service") == {}
    assert series(got, "kiosk_validator_fault") == {}
    assert one(got, "kiosk_printer_paper") == 1


def test_an_open_door_is_down_even_when_the_view_calls_it_ok() -> None:
    m = Metrics("K", "d", "v")
    m.update(make_view(devices=(DeviceView("door", True, "open"),)))
    assert by(samples(m), "kiosk_device_up", "device") == {"door": 0}


@pytest.mark.parametrize(
    ("words", "slug"),
    [
        ("door open (service mode)", "door_open"),
        ("service mode: the door is closed, press the green button to end it", "service_mode"),
        ("the bill validator does not answer", "validator_down"),
        *[(FAULT_WORDS[k], "validator_fault") for k in FAULT_WORDS if k != "disconnected"],
        (FAULT_WORDS["disconnected"], "validator_down"),
        ("the bill validator reports weird", "validator_fault"),
        ("cashbox full", "validator_fault"),
        ("printer: paper out", "printer"),
        ("printer: offline", "printer"),
        ("no payment provider answers (payby)", "providers_down"),
        ("a device failed during a journey (see the last errors)", "other"),
        ("tamper: the bill validator detected a fraud attempt at 2026-01-01", "tamper"),
        ("tamper: the cashbox was removed outside service mode at 2026-01-01", "tamper"),
        ("the bill validator does not answer: its line sends garbage (9 bad", "validator_down"),
    ],
)
def test_reasons_in_words_map_to_slugs(words: str, slug: str) -> None:
    assert reason_slug(words) == slug


def test_the_slugs_are_the_agreed_ones() -> None:
    assert {s for _, s in REASON_SLUGS} | {"other"} == {
        "door_open",
        "service_mode",
        "validator_down",
        "validator_fault",
        "printer",
        "providers_down",
        "tamper",
        "other",
    }


def test_metrics_live_in_their_own_registry() -> None:
    a, b = Metrics("A", "d", "v"), Metrics("B", "d", "v")  # no duplicate-name clash
    assert b.registry is not a.registry
    names: set[str] = set()
    latched = make_view(tamper=(TamperView("fraud", "2026-12-03T15:00:00.000Z"),))
    for view in (make_view(), OUT_OF_SERVICE, latched):
        a.update(view, last_sent=NOW)
        names |= {f.name for f in text_string_to_metric_families(a.exposition().decode())}
    assert REGISTRY.get_sample_value("kiosk_in_service") is None
    assert set(GAUGES) <= names
    assert {"kiosk_journeys", "kiosk_codes", "kiosk_provider_request_seconds"} <= names


def test_scrape_cpu_ms_is_a_mean_per_exposition() -> None:
    m = Metrics("K", "d", "v")
    m.update(make_view())
    assert scrape_cpu_ms(m, 20) > 0
    with pytest.raises(ValueError):
        scrape_cpu_ms(m, 0)


# --- counters from the journal -------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "journal.db", kiosk_id="KT1", code_key=b"k" * 32)
    yield j
    j.close()


def journal_path(j: Journal) -> Path:
    return Path(j.db.conn.execute("PRAGMA database_list").fetchone()[2])


def payby_cash_in(j: Journal, notes: tuple[int, ...] = (10000, 5000)) -> int:
    tx = j.begin("payby_cashin", currency="AED")
    j.transition(tx.id, "accepting", amount_due=sum(notes), provider_ref="ORD-1")
    for i, value in enumerate(notes, start=1):
        eff = j.intent(tx.id, "stack", f"{tx.ref}-note{i}", amount=value)
        j.outcome(eff.id, "done", credit=value, outcome={"channel": i})
    j.transition(tx.id, "paying")
    j.decide(tx.id, "paid", then="completed")
    return tx.id


def short_local_payout(j: Journal) -> None:
    """A test dispense (no code) of 70.00 that paid 20.00, as ``flows.cashout`` writes it."""
    tx = j.begin("local_cashout", currency="AED", amount_due=7000)
    j.transition(tx.id, "dispensing")
    eff = j.intent(tx.id, "payout", f"{tx.ref}-payout", amount=7000)
    j.outcome(eff.id, "failed", dispensed=2000, outcome={"dispensed": 2000, "detail": "jam"})
    j.owe(tx.id, 5000, "incomplete_payout")
    j.transition(tx.id, "owed")


def cashii_cash_out(j: Journal) -> None:
    """A Cashii cash-out of 100.00 paid out; its payout outcome carries no ``dispensed``."""
    tx = j.begin("cashii_cashout", currency="AED")
    j.transition(tx.id, "creating", amount_due=10000)
    j.outcome(j.intent(tx.id, "create", f"{tx.ref}-create", amount=10000).id, "done")
    j.transition(tx.id, "waiting", provider_ref="P-1")
    j.transition(tx.id, "paid")
    j.transition(tx.id, "dispensing")
    eff = j.intent(tx.id, "payout", f"{tx.ref}-payout", amount=10000)
    j.outcome(eff.id, "done", dispensed=10000)
    j.transition(tx.id, "completed")


def counters(m: Metrics) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    got = samples(m)
    names = (
        "kiosk_journeys_total",
        "kiosk_notes_in_total",
        "kiosk_cash_in_minor_total",
        "kiosk_cash_out_minor_total",
        "kiosk_codes_total",
    )
    return {n: series(got, n) for n in names}


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def test_follow_counts_only_the_events_after_its_first_call(journal: Journal) -> None:
    path = journal_path(journal)
    payby_cash_in(journal)  # before the daemon's start: not counted
    m = Metrics("KT1", "d", "v")
    assert m.follow(path) == 0
    assert all(v == {} for v in counters(m).values())

    payby_cash_in(journal)
    short_local_payout(journal)
    cashii_cash_out(journal)
    journal.log("code.refused", {"reason": "unknown code"})
    refused = journal.begin("payby_cashin", currency="AED")
    journal.transition(refused.id, "refused", reason="provider_down")
    journal.log("door.open", {"how": "key"})  # not counted by anything
    assert m.follow(path) > 0

    got = counters(m)
    assert got["kiosk_journeys_total"] == {
        labels(provider="payby", journey="payby_cashin", outcome="completed"): 1,
        labels(provider="payby", journey="payby_cashin", outcome="refused"): 1,
        labels(provider="none", journey="local_cashout", outcome="owed"): 1,
        labels(provider="cashii", journey="cashii_cashout", outcome="completed"): 1,
    }
    assert got["kiosk_notes_in_total"] == {
        labels(currency="AED", denomination="10000"): 1,
        labels(currency="AED", denomination="5000"): 1,
    }
    assert got["kiosk_cash_in_minor_total"] == {labels(currency="AED"): 15000}
    assert got["kiosk_cash_out_minor_total"] == {labels(currency="AED"): 12000}
    assert got["kiosk_codes_total"] == {
        labels(result="started"): 3,  # two PayBy cash-ins and a Cashii cash-out
        labels(result="refused"): 1,
    }

    assert m.follow(path) == 0  # nothing new: nothing counted twice
    assert counters(m) == got
    payby_cash_in(journal, notes=(5000,))
    m.follow(path)
    after = counters(m)
    assert after["kiosk_notes_in_total"][labels(currency="AED", denomination="5000")] == 2
    assert after["kiosk_cash_in_minor_total"] == {labels(currency="AED"): 20000}
    key = labels(provider="payby", journey="payby_cashin", outcome="completed")
    assert after["kiosk_journeys_total"][key] == 2
    assert after["kiosk_codes_total"][labels(result="started")] == 4


def test_follow_never_writes_to_the_journal(journal: Journal) -> None:
    path = journal_path(journal)
    m = Metrics("KT1", "d", "v")
    m.follow(path)
    payby_cash_in(journal)
    m.follow(path)
    (head,) = journal.db.execute("SELECT seq FROM journal_head").fetchall()
    assert head[0] == journal.events(limit=1)[0]["seq"]  # the chain's end is the journal's own


def test_a_journal_created_after_the_first_call_is_counted_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "later" / "journal.db"
    m = Metrics("KT1", "d", "v")
    assert m.follow(path) == 0
    j = Journal.open(path, kiosk_id="KT1", code_key=b"k" * 32)
    try:
        payby_cash_in(j)
        m.follow(path)
    finally:
        j.close()
    assert counters(m)["kiosk_cash_in_minor_total"] == {labels(currency="AED"): 15000}


# --- provider request times ----------------------------------------------------------------------


def test_httpx_hooks_time_each_request_of_a_provider() -> None:
    m = Metrics("K", "d", "v")

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.03)
        return httpx.Response(200, json={"ok": True})

    async def main() -> None:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(handler),
            event_hooks=m.httpx_hooks("payby"),
            base_url="http://payby.test",
        ) as http:
            await http.get("/a")
            await http.post("/b", json={})

    asyncio.run(main())
    m.observe_request("rapyd", 0.004)
    got = samples(m)
    assert one(got, "kiosk_provider_request_seconds_count", provider="payby") == 2
    assert one(got, "kiosk_provider_request_seconds_sum", provider="payby") >= 0.06
    assert one(got, "kiosk_provider_request_seconds_bucket", provider="payby", le="0.025") == 0
    assert one(got, "kiosk_provider_request_seconds_bucket", provider="payby", le="30.0") == 2
    assert one(got, "kiosk_provider_request_seconds_bucket", provider="rapyd", le="0.005") == 1


# --- the Pushgateway -----------------------------------------------------------------------------


class FakeGateway:
    """A loopback Pushgateway that records each request and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ")
        headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if h)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.seen.append({"method": method, "path": path, "headers": headers, "body": body})
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


async def with_gateway(gateway: FakeGateway, kiosk_id: str, m: Metrics) -> None:
    server = await asyncio.start_server(gateway, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            await m.push(f"http://127.0.0.1:{port}/", kiosk_id, http)
    finally:
        server.close()
        await server.wait_closed()


def test_push_puts_the_exposition_grouped_by_kiosk() -> None:
    m = Metrics("KSK-0001", "rpi-1", "0.1.0")
    m.update(OUT_OF_SERVICE)
    gateway = FakeGateway()
    asyncio.run(with_gateway(gateway, "KSK-0001", m))
    (req,) = gateway.seen
    assert (req["method"], req["path"]) == ("PUT", "/metrics/job/kiosk/kiosk/KSK-0001")
    assert req["headers"]["content-type"].startswith("text/plain; version=0.0.4")
    pushed = {f.name for f in text_string_to_metric_families(req["body"].decode())}
    assert {"kiosk_info", "kiosk_out_of_service", "kiosk_journeys"} <= pushed


def test_push_encodes_an_unusual_kiosk_id_and_reports_a_refusal() -> None:
    m = Metrics("a/b", "d", "v")
    gateway = FakeGateway(status=400)
    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(with_gateway(gateway, "a/b", m))
    assert gateway.seen[0]["path"] == "/metrics/job/kiosk/kiosk@base64/YS9i"


def test_a_malformed_device_detail_is_skipped_not_fatal() -> None:
    m = Metrics("K", "d", "v")
    recycler = DeviceView("recycler", True, "ok", {"levels": {"x": 1, "500": "2", "1000": 4}})
    printer = DeviceView("printer", True, "ok", {"paper": "unknown"})
    validator = DeviceView("validator", False, "not answering", {"fault": "disconnected"})
    m.update(make_view(devices=(recycler, printer, validator)))
    got = samples(m)
    assert by(got, "kiosk_recycler_notes", "denomination") == {"1000": 4}
    assert series(got, "kiosk_recycler_value_minor") == {}
    assert series(got, "kiosk_printer_paper") == {}
    assert series(got, "kiosk_validator_fault") == {}  # not a fault kind: the device is down
    assert by(got, "kiosk_device_up", "device")["validator"] == 0
