"""One settings style: each service's prefix, the shared backbone names, and every variable name the
deployments use (compose, Helm, Makefile, docs) still setting its field. Pure: no broker, no database."""

from __future__ import annotations

from pathlib import Path

import pytest
from leadbridge_crm_sync.settings import CrmSyncSettings
from leadbridge_insights.settings import InsightsSettings
from leadbridge_intake.settings import IntakeSettings
from leadbridge_router.settings import RouterSettings
from leadbridge_scoring.settings import ScoringSettings
from leadbridge_sla_watcher.settings import WatcherSettings

# (settings class, environment variable, value, field, expected)
NAMES = [
    (IntakeSettings, "INTAKE_PORT", "9101", "port", 9101),
    (IntakeSettings, "INTAKE_WORKERS", "2", "workers", 2),
    (IntakeSettings, "INTAKE_GROUP_ID", "intake-b", "group_id", "intake-b"),
    (ScoringSettings, "SCORING_PORT", "9102", "port", 9102),
    (ScoringSettings, "SCORING_MODEL_PATH", "/m.yaml", "model_path", Path("/m.yaml")),
    (ScoringSettings, "SCORING_GROUP_ID", "scoring-b", "group_id", "scoring-b"),
    (RouterSettings, "ROUTER_PORT", "9103", "port", 9103),
    (RouterSettings, "ROUTER_ROSTER_FILE", "/r.yaml", "roster_file", "/r.yaml"),
    (RouterSettings, "ROUTER_HOLD_POLL_SECONDS", "5", "hold_poll_seconds", 5.0),
    (WatcherSettings, "SLA_WATCHER_PORT", "9104", "port", 9104),
    (WatcherSettings, "SLA_WATCHER_HOST", "127.0.0.2", "host", "127.0.0.2"),
    (WatcherSettings, "SLA_POLICIES_FILE", "/p.yaml", "policies_file", Path("/p.yaml")),
    (WatcherSettings, "SLA_TIMER_BATCH_SIZE", "7", "timer_batch_size", 7),
    (WatcherSettings, "SLA_GROUP_ID", "sla-b", "group_id", "sla-b"),
    (InsightsSettings, "INSIGHTS_PORT", "9105", "port", 9105),
    (InsightsSettings, "INSIGHTS_LIMBO_AFTER_MINUTES", "30", "limbo_after_minutes", 30.0),
    (InsightsSettings, "INSIGHTS_GROUP_ID", "insights-b", "group_id", "insights-b"),
    (CrmSyncSettings, "CRM_SYNC_PORT", "9106", "port", 9106),
    (CrmSyncSettings, "CRM_SYNC_RETRY_SCHEDULE_SECONDS", "5,60", "retry_schedule_seconds", (5.0, 60.0)),
    (CrmSyncSettings, "CRM_SYNC_GROUP_ID", "crm-b", "group_id", "crm-b"),
]


@pytest.mark.parametrize(("cls", "variable", "value", "field", "expected"), NAMES,
                         ids=[n[1] for n in NAMES])
def test_every_variable_name_sets_its_field(monkeypatch, cls, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(cls(), field) == expected
    monkeypatch.delenv(variable)
    assert getattr(cls(**{variable: value}), field) == expected, "a keyword by the variable's name"
    assert getattr(cls(**{field: expected}), field) == expected, "a keyword by the field's name"


@pytest.mark.parametrize("cls", [IntakeSettings, ScoringSettings, RouterSettings, WatcherSettings,
                                 InsightsSettings, CrmSyncSettings])
def test_the_backbone_names_are_shared_and_unprefixed(monkeypatch, cls):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/x")
    monkeypatch.setenv("CONSUMER_BATCH_SIZE", "7")
    settings = cls()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.database_url == "postgresql+asyncpg://u@db/x"
    assert settings.consumer_batch_size == 7
    assert settings.group_id is None, "unset: the consumer group is the service's name"


def test_a_bad_setting_stops_main_with_one_line_and_exit_code_2(monkeypatch, capsys):
    from leadbridge_router.app import SERVICE

    monkeypatch.setenv("ROUTER_PORT", "0")
    assert SERVICE.main() == 2
    err = capsys.readouterr().err
    assert err.startswith("router cannot start:") and "port" in err
