"""SLA policies from configuration: what each deadline is, and the calendars business hours use.

A policy is chosen by name (the router puts ``sla_policy`` on lead-routed; unknown or missing names get
the default policy), then overrides whose ``match`` fits the lead's team, tier or grade are applied in
the order they are listed (later ones win). Pure: plain data in, plain data out.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .business_hours import WEEKDAYS, Calendar, parse_window


class Clock(StrEnum):
    BUSINESS = "business"  # only working minutes of the assignee's/team's calendar count
    WALL = "wall"  # every minute counts


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeLimit(_Model):
    minutes: float = Field(gt=0)
    clock: Clock = Clock.BUSINESS


class Cadence(_Model):
    touches: int = Field(default=4, ge=1, description="At least this many touches ...")
    days: float = Field(default=10, gt=0, description="... within this many (wall-clock) days of routing.")


class PolicyConfig(_Model):
    first_touch: TimeLimit | None = TimeLimit(minutes=60)
    cadence: Cadence | None = Cadence()
    disposition: TimeLimit | None = TimeLimit(minutes=2 * 8 * 60)  # two working days
    at_risk_fraction: float | None = Field(default=0.75, gt=0, lt=1)
    escalate: bool = Field(default=True, description="Ask the router to re-assign on a breach.")


class CalendarConfig(_Model):
    timezone: str = "UTC"
    working_days: list[str] = Field(default_factory=lambda: list(WEEKDAYS[:5]), min_length=1)
    hours: list[str] = Field(default_factory=lambda: ["09:00-17:00"], min_length=1)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not _known_zone(value):
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: list[str]) -> list[str]:
        for window in value:
            parse_window(window)
        return value

    @field_validator("working_days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if d.lower()[:3] not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown working day(s) {bad}; use mon..sun")
        return value

    def calendar(self) -> Calendar:
        return _calendar(self.timezone, tuple(self.working_days), tuple(self.hours), tuple(self.holidays))


class Match(_Model):
    policy: str | None = None
    team: str | None = None
    tier: str | None = None
    grade: str | None = None

    def fits(self, policy: str, team: str | None, tier: str | None, grade: str | None) -> bool:
        wanted = {"policy": policy, "team": team, "tier": tier, "grade": grade}
        return all(getattr(self, k) is None or getattr(self, k) == v for k, v in wanted.items())


class Override(_Model):
    match: Match
    set: dict[str, Any] = Field(description="Fields of PolicyConfig to replace (nested dicts merge).")


class ResolvedPolicy(_Model):
    name: str
    config: PolicyConfig


class SlaConfig(_Model):
    default_policy: str = "standard"
    policies: dict[str, PolicyConfig] = Field(default_factory=lambda: {"standard": PolicyConfig()})
    overrides: list[Override] = Field(default_factory=list)
    calendars: dict[str, CalendarConfig] = Field(default_factory=lambda: {"default": CalendarConfig()})
    team_calendars: dict[str, str] = Field(default_factory=dict, description="team -> calendar name")

    @model_validator(mode="after")
    def _consistent(self) -> SlaConfig:
        if self.default_policy not in self.policies:
            raise ValueError(f"default_policy {self.default_policy!r} is not among the policies")
        if "default" not in self.calendars:
            raise ValueError("a calendar named 'default' is required")
        unknown = {c for c in self.team_calendars.values() if c not in self.calendars}
        if unknown:
            raise ValueError(f"team_calendars refer to unknown calendars {sorted(unknown)}")
        for override in self.overrides:  # fail at start, not on the first matching lead
            _apply(PolicyConfig(), override.set)
        return self

    def resolve(self, policy: str | None, *, team: str | None = None, tier: str | None = None,
                grade: str | None = None) -> ResolvedPolicy:
        name = policy if policy in self.policies else self.default_policy
        config = self.policies[name]
        for override in self.overrides:
            if override.match.fits(name, team, tier, grade):
                config = _apply(config, override.set)
        return ResolvedPolicy(name=name, config=config)

    def calendar_for(self, team: str | None, timezone: str | None = None) -> Calendar:
        """The team's calendar (or the default one), in the assignee's time zone when it is a valid one."""
        name = self.team_calendars.get(team or "", "default")
        calendar = self.calendars[name].calendar()
        return _with_tz(calendar, timezone) if timezone and _known_zone(timezone) else calendar


# Built once per distinct calendar (and zone), not once per routed lead: equal calendars are then one object,
# whose working windows per date are cached too (``business_hours``).
@lru_cache(maxsize=256)
def _calendar(tz: str, days: tuple[str, ...], hours: tuple[str, ...], holidays: tuple[date, ...]) -> Calendar:
    return Calendar.of(tz, days, hours, holidays)


@lru_cache(maxsize=1024)
def _with_tz(calendar: Calendar, tz: str) -> Calendar:
    return calendar.with_tz(tz)


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _apply(config: PolicyConfig, changes: dict[str, Any]) -> PolicyConfig:
    merged = _deep_merge(config.model_dump(mode="json"), changes)
    return PolicyConfig.model_validate(merged)


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
