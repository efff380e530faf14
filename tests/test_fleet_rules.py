"""provisioning/fleet (issue 15): the Prometheus and Alertmanager files.

- With promtool on PATH (Debian: ``apt-get install prometheus``; .ci/run installs it): the
  Prometheus config and the rules are valid and the rules' unit tests
  (rules/kiosk.rules.test.yml) pass; with amtool (``prometheus-alertmanager``): the
  Alertmanager config is valid and routes pages and tickets apart. Skipped without them.
- Always: every metric the rules, their annotations and their tests name is one the kiosk
  exports (the list below, from issue 15, checked against kiosk.fleet.metrics), with its
  labels and their known values; every alert
  has a severity (page or ticket), a summary and a description, and a test that fires it and
  one that does not.

YAML is read with PyYAML, which the dev group brings (python-escpos depends on it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

FLEET = Path(__file__).resolve().parents[1] / "provisioning" / "fleet"
PROMETHEUS_YML = FLEET / "prometheus.yml"
ALERTMANAGER_YML = FLEET / "alertmanager.yml"
RULES = FLEET / "rules" / "kiosk.rules.yml"
RULES_TEST = FLEET / "rules" / "kiosk.rules.test.yml"

ANY = None  # a label whose values are open (a provider, a currency...)
REASONS = frozenset(
    {
        "door_open",
        "service_mode",
        "validator_down",
        "validator_fault",
        "printer",
        "providers_down",
        "tamper",
        "other",
    }
)
OUTCOMES = frozenset({"completed", "refused", "cancelled", "void", "owed", "unknown"})
DEVICES = frozenset({"validator", "recycler", "printer", "camera", "door"})
FAULTS = frozenset({"jam", "fraud", "cashbox_full", "cashbox_removed", "failure"})

# The metrics a kiosk exports (issue 15), each with its own labels and, where they are a fixed
# set, their values. Every series also has job, instance and kiosk (the scrape target's or the
# Pushgateway's grouping key).
Labels = dict[str, frozenset[str] | None]
METRICS: dict[str, Labels] = {
    "kiosk_info": {"device_id": ANY, "version": ANY},
    "kiosk_uptime_seconds": {},
    "kiosk_in_service": {},
    "kiosk_out_of_service": {"reason": REASONS},
    "kiosk_journeys_total": {"provider": ANY, "journey": ANY, "outcome": OUTCOMES},
    "kiosk_notes_in_total": {"currency": ANY, "denomination": ANY},
    "kiosk_cash_in_minor_total": {"currency": ANY},
    "kiosk_cash_out_minor_total": {"currency": ANY},
    "kiosk_codes_total": {"result": frozenset({"started", "refused"})},
    "kiosk_device_up": {"device": DEVICES},
    "kiosk_validator_fault": {"kind": FAULTS},
    "kiosk_tamper": {"kind": frozenset({"fraud", "cashbox_removed"})},
    "kiosk_printer_paper": {},
    "kiosk_cashbox_notes": {},
    "kiosk_cashbox_capacity_notes": {},
    "kiosk_cashbox_value_minor": {"currency": ANY},
    "kiosk_recycler_notes": {"denomination": ANY},
    "kiosk_recycler_value_minor": {"currency": ANY},
    "kiosk_pending_transactions": {},
    "kiosk_pending_oldest_seconds": {},
    "kiosk_approvals_waiting": {},
    "kiosk_approval_oldest_wait_seconds": {},
    "kiosk_outbox_depth": {},
    "kiosk_outbox_oldest_seconds": {},
    "kiosk_liabilities_open": {},
    "kiosk_liabilities_open_minor": {"currency": ANY},
    "kiosk_provider_up": {"provider": ANY},
    "kiosk_provider_auth_refused": {"provider": ANY},
    "kiosk_provider_clock_offset_seconds": {"provider": ANY},
    "kiosk_heartbeats_missed": {},
    "kiosk_heartbeat_last_sent_timestamp_seconds": {},
    "kiosk_disk_free_bytes": {},
    "kiosk_cpu_temperature_celsius": {},
}
# A histogram: its series are NAME_bucket (with le), NAME_sum and NAME_count.
for _name, _labels in {"kiosk_provider_request_seconds": {"provider": ANY}}.items():
    METRICS[f"{_name}_bucket"] = {**_labels, "le": ANY}
    METRICS[f"{_name}_sum"] = dict(_labels)
    METRICS[f"{_name}_count"] = dict(_labels)
COMMON_LABELS = frozenset({"job", "instance", "kiosk"})

NAME = re.compile(r"\bkiosk_[a-z0-9_]+")  # a kiosk_ metric name (recorded names use ':')
SELECTOR = re.compile(r"\b(kiosk_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_:]+\b")


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(RULES)["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _texts() -> list[tuple[str, str]]:
    """(where, text) of every expression, every annotation and every test input series."""
    out: list[tuple[str, str]] = []
    for rule in _rules():
        name = rule.get("alert") or rule["record"]
        out.append((f"{name}: expr", rule["expr"]))
        for key, text in rule.get("annotations", {}).items():
            out.append((f"{name}: {key}", text))
    for test in _load(RULES_TEST)["tests"]:
        for series in test.get("input_series", []):
            out.append((f"test {test.get('name')!r}: input", series["series"]))
    return out


def _problems_with(text: str) -> list[str]:
    problems = [
        f"{name} is not a metric the kiosk exports"
        for name in NAME.findall(text)
        if name not in METRICS
    ]
    for name, body in SELECTOR.findall(text):
        known = METRICS.get(name)
        if known is None:
            continue
        for label, op, value in MATCHER.findall(body):
            if label in COMMON_LABELS:
                continue
            if label not in known:
                problems.append(f"{name} has no label {label}")
                continue
            allowed = known[label]
            if allowed is None:
                continue
            # = and != name one value; =~ and !~ here are plain alternations (a|b).
            values = value.split("|") if op in ("=~", "!~") else [value]
            problems += [
                f"{name}{{{label}}} has no value {v!r}" for v in values if v not in allowed
            ]
    return problems


# --------------------------------------------------------------------------- pure Python


def test_the_rules_name_only_the_kiosks_metrics_and_labels() -> None:
    texts = _texts()
    problems = [f"{where}: {p}" for where, text in texts for p in _problems_with(text)]
    assert problems == []
    # Not vacuous: the scan sees the metrics the alerts are about, and their matchers.
    seen = {name for _, text in texts for name in NAME.findall(text)}
    assert len(seen) >= 20
    assert {"kiosk_in_service", "kiosk_out_of_service", "kiosk_validator_fault"} <= seen
    assert any(SELECTOR.search(text) for _, text in texts)


def test_the_name_check_catches_a_wrong_name_a_wrong_label_and_a_wrong_value() -> None:
    assert _problems_with("max by (kiosk) (kiosk_cashbox_note) > 1") == [
        "kiosk_cashbox_note is not a metric the kiosk exports"
    ]
    assert _problems_with('kiosk_device_up{devices="printer"}') == [
        "kiosk_device_up has no label devices"
    ]
    assert _problems_with('kiosk_validator_fault{kind=~"jam|frauds"} == 1') == [
        "kiosk_validator_fault{kind} has no value 'frauds'"
    ]
    assert _problems_with('kiosk_out_of_service{job="kiosk", reason="service_mode"}') == []


def test_the_list_is_what_kiosk_fleet_metrics_exports() -> None:
    from kiosk.fleet import metrics
    from kiosk.journeys import TERMINAL

    exported: dict[str, set[str]] = {
        name: set(labels) - COMMON_LABELS for name, (_, labels) in metrics.GAUGES.items()
    }
    for family in metrics.Metrics("KSK-TEST", "device", "0").registry.collect():
        if family.type == "counter":
            exported.setdefault(f"{family.name}_total", set(METRICS[f"{family.name}_total"]))
        elif family.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                exported[family.name + suffix] = set(METRICS[family.name + suffix])
    assert {name: set(labels) for name, labels in METRICS.items()} == exported
    assert {slug for _, slug in metrics.REASON_SLUGS} | {"other"} == REASONS
    assert set(metrics.VALIDATOR_FAULTS) == FAULTS
    assert set(TERMINAL) == OUTCOMES
    assert metrics.PAPER == {"ok": 0, "near_end": 1, "out": 2}  # the paper alerts' 1 and 2


def test_recorded_names_used_are_recorded_here() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    used = {
        (rule.get("alert") or rule["record"], name)
        for rule in _rules()
        for text in [rule["expr"], *rule.get("annotations", {}).values()]
        for name in RECORDED.findall(text)
    }
    assert {(where, name) for where, name in used if name not in recorded} == set()


def test_every_alert_has_a_severity_a_summary_a_description_and_a_duration() -> None:
    alerts = _alerts()
    assert len(alerts) >= 20
    for alert in alerts:
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in ("page", "ticket"), name
        annotations = alert.get("annotations", {})
        assert annotations.get("summary"), name
        assert len(annotations.get("description", "")) > 60, name
        # A fraud attempt pages at once; everything else must last before it alerts.
        assert ("for" in alert) == (name not in ("KioskValidatorFraud", "KioskTamperLatched")), name
    names = [alert["alert"] for alert in alerts]
    assert len(names) == len(set(names))


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in _load(RULES_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {alert["alert"] for alert in _alerts()}
    assert names - fired == set(), "alerts no test fires"
    assert names - quiet == set(), "alerts with no test where they stay quiet"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def test_the_alertmanager_routes_by_severity_and_inhibits_by_kiosk() -> None:
    config = _load(ALERTMANAGER_YML)
    assert config["route"]["group_by"] == ["kiosk"]
    receivers = {r["name"] for r in config["receivers"]}
    assert receivers == {"page", "ticket"}
    alerts = {alert["alert"] for alert in _alerts()}
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            names = re.fullmatch(r'alertname(=~|!~|=)"([^"]+)"', matcher)
            assert names, matcher
            assert set(names.group(2).split("|")) <= alerts, matcher


def test_prometheus_yml_loads_the_rules_and_scrapes_kiosks_and_the_pushgateway() -> None:
    config = _load(PROMETHEUS_YML)
    assert config["rule_files"] == ["rules/kiosk.rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    kiosk = jobs["kiosk"]  # the rules read up{job="kiosk"}
    for static in kiosk["static_configs"]:
        assert static["labels"]["kiosk"]
        assert all(target.endswith(":9464") for target in static["targets"])
    assert kiosk["file_sd_configs"][0]["files"] == ["kiosks/*.json"]


# ----------------------------------------------------------------------- promtool, amtool


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not on PATH (Debian: apt-get install prometheus; .ci/run installs it)",
)
needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool not on PATH (Debian: apt-get install prometheus-alertmanager)",
)


@needs_promtool
def test_promtool_check_config() -> None:
    result = _run("promtool", "check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _run("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    result = _run("promtool", "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
def test_amtool_check_config() -> None:
    result = _run("amtool", "check-config", str(ALERTMANAGER_YML))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "kiosk=KSK-0001", "alertname=KioskDown"], "page"),
        (["severity=ticket", "kiosk=KSK-0001", "alertname=KioskPaperNearEnd"], "ticket"),
        (["alertname=SomethingElse"], "ticket"),
    ],
)
def test_amtool_routes(labels: list[str], receiver: str) -> None:
    result = _run(
        "amtool",
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YML}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
