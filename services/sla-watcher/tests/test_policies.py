"""SLA policies from config: defaults, named policies, overrides per team / tier / grade."""

import pytest
from leadbridge_sla_watcher.policies import Clock, SlaConfig
from pydantic import ValidationError

CONFIG = {
    "default_policy": "standard",
    "policies": {
        "standard": {"first_touch": {"minutes": 60}, "cadence": {"touches": 4, "days": 10},
                     "disposition": {"minutes": 960}, "at_risk_fraction": 0.75},
        "hot": {"first_touch": {"minutes": 5, "clock": "wall"}, "cadence": None},
    },
    "overrides": [
        {"match": {"team": "enterprise"}, "set": {"first_touch": {"minutes": 30}}},
        {"match": {"grade": "A"}, "set": {"at_risk_fraction": 0.5}},
        {"match": {"tier": "vip", "policy": "standard"}, "set": {"escalate": False}},
    ],
    "calendars": {"default": {"timezone": "UTC"}, "emea": {"timezone": "Europe/Berlin", "holidays": ["2026-12-25"]}},
    "team_calendars": {"enterprise": "emea"},
}


def test_defaults_follow_the_seeds():
    policy = SlaConfig().resolve(None)
    assert policy.name == "standard"
    assert policy.config.cadence.touches == 4
    assert policy.config.at_risk_fraction == 0.75
    assert policy.config.first_touch.clock == Clock.BUSINESS


def test_named_policy_and_unknown_name_falls_back_to_default():
    cfg = SlaConfig.model_validate(CONFIG)
    assert cfg.resolve("hot").config.first_touch.minutes == 5
    assert cfg.resolve("hot").config.first_touch.clock == Clock.WALL
    assert cfg.resolve("hot").config.cadence is None
    assert cfg.resolve("no-such-policy").name == "standard"


def test_team_override_merges_nested_fields():
    p = SlaConfig.model_validate(CONFIG).resolve("standard", team="enterprise")
    assert p.config.first_touch.minutes == 30
    assert p.config.first_touch.clock == Clock.BUSINESS  # kept from the base policy
    assert p.config.cadence.touches == 4


def test_overrides_stack_in_order_and_match_all_keys():
    cfg = SlaConfig.model_validate(CONFIG)
    p = cfg.resolve("standard", team="enterprise", grade="A", tier="vip")
    assert (p.config.first_touch.minutes, p.config.at_risk_fraction, p.config.escalate) == (30, 0.5, False)
    assert cfg.resolve("hot", tier="vip").config.escalate is True  # that override is for "standard" only
    assert cfg.resolve("standard", grade="B").config.at_risk_fraction == 0.75


def test_team_calendar_and_assignee_zone():
    cfg = SlaConfig.model_validate(CONFIG)
    assert str(cfg.calendar_for("enterprise").tz) == "Europe/Berlin"
    assert str(cfg.calendar_for("smb").tz) == "UTC"
    assert str(cfg.calendar_for("enterprise", "Asia/Tokyo").tz) == "Asia/Tokyo"
    assert str(cfg.calendar_for("enterprise", "Mars/Olympus_Mons").tz) == "Europe/Berlin"  # bad zone: team's


@pytest.mark.parametrize("bad", [
    {"default_policy": "missing"},
    {"policies": {"standard": {"at_risk_fraction": 1.5}}},
    {"policies": {"standard": {"first_touch": {"minutes": -1}}}},
    {"calendars": {"default": {"hours": ["17:00-09:00"]}}},
    {"calendars": {"default": {"working_days": ["funday"]}}},
    {"calendars": {"default": {"working_days": []}}},
    {"calendars": {"default": {"timezone": "Nowhere/City"}}},
    {"team_calendars": {"x": "nope"}},
    {"overrides": [{"match": {"team": "x"}, "set": {"at_risk_fraction": 7}}]},
    {"policies": {"standard": {"typo_field": 1}}},
])
def test_bad_config_fails_at_load(bad):
    with pytest.raises(ValidationError):
        SlaConfig.model_validate(bad)


def test_calendars_are_built_once_and_a_changed_config_gets_its_own():
    cfg = SlaConfig.model_validate(CONFIG)
    assert cfg.calendar_for("enterprise") is cfg.calendar_for("enterprise")  # cached: one per distinct calendar
    assert cfg.calendar_for("enterprise", "Asia/Tokyo") is cfg.calendar_for("enterprise", "Asia/Tokyo")
    changed = SlaConfig.model_validate({**CONFIG, "calendars": {
        **CONFIG["calendars"], "emea": {**CONFIG["calendars"]["emea"], "hours": ["10:00-12:00"]}}})
    assert changed.calendar_for("enterprise").windows == ((600, 720),)
    assert cfg.calendar_for("enterprise").windows != ((600, 720),)
