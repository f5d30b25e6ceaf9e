"""deploy/prometheus/: the alert rules pass their promtool unit tests, and are complete and consistent.

promtool comes from Debian's ``prometheus`` package (``apt-get install prometheus``); without it this test
FAILS (it is part of the suite, not optional).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import leadbridge_crm_sync.metrics  # noqa: F401 - registers crm-sync's metrics
import leadbridge_events.metrics  # noqa: F401 - registers the backbone metrics
import leadbridge_sla_watcher.metrics  # noqa: F401 - registers the watcher's metrics
import pytest
import yaml
from prometheus_client import REGISTRY

PROM_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
REQUIRED_ALERTS = {  # what issue 6 asks for
    "LeadBridgeSlaBreachRateHigh", "LeadBridgeLeadsWaitingPastSla", "LeadBridgeConsumerLagHigh",
    "LeadBridgeDeadLetters", "LeadBridgeOutboxBacklogOld", "LeadBridgeServiceDown",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (apt-get install -y prometheus)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120)


def _rules() -> list[dict]:
    doc = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_rule_unit_tests_pass():
    result = _run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_accepts_rules_and_example_config():
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        result = _run(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_summary_runbook_severity_and_a_unit_test():
    rules = _rules()
    names = {r["alert"] for r in rules}
    assert REQUIRED_ALERTS <= names
    tested = {case["alertname"] for t in yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"]
              for case in t.get("alert_rule_test", []) if case["exp_alerts"]}
    assert names <= tested, f"alerts without a firing test: {names - tested}"
    for rule in rules:
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["labels"]["owner"] in {"platform", "sales-ops"}, rule["alert"]


def test_rules_only_use_metrics_the_services_export():
    exported = {"up"}
    for family in REGISTRY.collect():
        exported |= {family.name + suffix for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    used = {m for r in _rules() for m in re.findall(r"\b(leadbridge_\w+|up)\b", r["expr"])}
    assert used <= exported, f"unknown metrics in alert rules: {used - exported}"


def test_no_per_lead_labels_in_watcher_metrics():
    for family in REGISTRY.collect():
        if family.name.startswith("leadbridge_sla"):
            for sample in family.samples:
                assert not {"lead", "lead_id", "deadline_id"} & set(sample.labels), family.name


def test_alertmanager_example_routes_to_defined_receivers():
    doc = yaml.safe_load((PROM_DIR / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in doc["receivers"]}
    routes = [doc["route"], *doc["route"].get("routes", [])]
    assert {r["receiver"] for r in routes} <= receivers
    owners = {m.split("=")[1].strip('"') for r in doc["route"]["routes"] for m in r["matchers"] if m.startswith("owner")}
    assert owners == {r["labels"]["owner"] for r in _rules()}  # every owner an alert names is routed
