"""Settings load the policy file; the HTTP app serves /healthz, /readyz and /metrics."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from leadbridge_sla_watcher.app import create_app
from leadbridge_sla_watcher.settings import WatcherSettings
from pydantic import ValidationError


def test_policies_file_yaml_and_json(tmp_path):
    yml = tmp_path / "sla.yaml"
    yml.write_text("policies:\n  standard:\n    first_touch: {minutes: 15, clock: wall}\n")
    cfg = WatcherSettings(SLA_POLICIES_FILE=str(yml)).sla_config()
    assert cfg.resolve(None).config.first_touch.minutes == 15
    js = tmp_path / "sla.json"
    js.write_text(json.dumps({"policies": {"standard": {"cadence": {"touches": 6, "days": 14}}}}))
    assert WatcherSettings(SLA_POLICIES_FILE=str(js)).sla_config().resolve("x").config.cadence.touches == 6


def test_bad_policies_file_fails_at_start(tmp_path):
    bad = tmp_path / "sla.yaml"
    bad.write_text("policies:\n  standard:\n    at_risk_fraction: 2\n")
    with pytest.raises(ValidationError):
        WatcherSettings(SLA_POLICIES_FILE=str(bad)).sla_config()


def test_defaults(monkeypatch):
    for var in ("SLA_WATCHER_PORT", "SLA_TIMER_POLL_SECONDS"):
        monkeypatch.delenv(var, raising=False)
    s = WatcherSettings()
    assert s.port == 8004 and s.timer_poll_seconds <= 1


@pytest.mark.integration
def test_http_endpoints(fresh_database_url, kafka_bootstrap, unique_name):
    settings = WatcherSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url)
    app = create_app(settings, group_id=unique_name, auto_offset_reset="latest")
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["database"] == "ok"
        body = client.get("/metrics").text
        assert "leadbridge_sla_fire_lag_seconds" in body and "leadbridge_sla_breaches_total" in body
