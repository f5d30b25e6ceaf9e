"""The demo configuration `make run` loads (deploy/demo/) is valid and consistent with the demo roster."""

from __future__ import annotations

from pathlib import Path

import yaml
from leadbridge_devstack.run_all import DEMO_ENV_FILE, demo_env, read_env_file

ROOT = Path(__file__).resolve().parents[2]


def test_demo_env_points_at_existing_files():
    values = read_env_file(ROOT / DEMO_ENV_FILE, ROOT)
    for key in ("ROUTER_ROSTER_FILE", "SLA_POLICIES_FILE"):
        assert Path(values[key]).is_file(), key
    assert values["AUTH_DEV_SECRET"] and values["INTAKE_META_APP_SECRET"]
    from leadbridge_events.auth import AuthSettings

    assert AuthSettings(dev_secret=values["AUTH_DEV_SECRET"]).dev_secret  # long enough for HS256
    assert yaml.safe_load(values["INTAKE_GOOGLE_KEYS"])  # valid JSON for pydantic-settings


def test_sla_policies_define_every_policy_the_demo_roster_names():
    from leadbridge_sla_watcher.policies import SlaConfig

    values = read_env_file(ROOT / DEMO_ENV_FILE, ROOT)
    config = SlaConfig.model_validate(yaml.safe_load(Path(values["SLA_POLICIES_FILE"]).read_text()))
    roster = yaml.safe_load(Path(values["ROUTER_ROSTER_FILE"]).read_text())
    named = {team["sla_policy"] for team in roster["teams"] if team.get("sla_policy")}
    assert named and named <= set(config.policies)
    for name in named:  # short enough that a breach happens during `make demo`
        limit = config.policies[name].first_touch
        assert limit.clock == "wall" and limit.minutes <= 2


def test_the_users_own_settings_win():
    env = demo_env({"AUTH_DEV_SECRET": "mine", "SLA_POLICIES_FILE": "/etc/mine.yaml"})
    assert "AUTH_DEV_SECRET" not in env and "SLA_POLICIES_FILE" not in env
    assert env["ROUTER_ROSTER_FILE"].endswith("roster.example.yaml")
    assert env["INTAKE_META_GRAPH_BASE_URL"].startswith("http://127.0.0.1:")
