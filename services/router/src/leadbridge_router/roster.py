"""The roster: teams (routing pools), reps, and the ordered routing rules. Plain validated data.

A team is a routing pool: its reps share one weighted round robin, one off-hours policy, one overflow
policy and one SLA policy. Rules send a lead to a team, optionally narrowing which reps may take it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class Tier(StrEnum):
    JUNIOR = "junior"
    MID = "mid"
    SENIOR = "senior"

    @property
    def rank(self) -> int:
        return {"junior": 0, "mid": 1, "senior": 2}[self.value]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutOfOffice(_Model):
    """An absence. Dates are whole days in the rep's time zone (end inclusive); datetimes are exact."""

    start: datetime | date
    end: datetime | date
    reason: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_or_datetime(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value.strip()) == 10:  # YYYY-MM-DD: a whole day
            return date.fromisoformat(value.strip())
        return value

    @model_validator(mode="after")
    def _ordered(self) -> OutOfOffice:
        if isinstance(self.start, datetime) != isinstance(self.end, datetime):
            raise ValueError("start and end must both be dates or both be datetimes")
        if (isinstance(self.start, datetime) and isinstance(self.end, datetime)
                and (self.start.tzinfo is None or self.end.tzinfo is None)):
            raise ValueError("out-of-office datetimes need a UTC offset")
        if self.end < self.start:
            raise ValueError("out-of-office end is before its start")
        return self


@lru_cache(maxsize=1024)
def parse_span(span: str) -> tuple[time, time]:
    m = _SPAN.match(span.strip())
    if not m:
        raise ValueError(f"working-hours span {span!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start = time(h1, m1)
    end = time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2)
    if end <= start:
        raise ValueError(f"working-hours span {span!r} ends before it starts (split overnight shifts per day)")
    return start, end


class Rep(_Model):
    id: str = Field(min_length=1, max_length=100)
    name: str | None = None
    team: str = Field(description="Team (pool) id.")
    active: bool = True
    languages: list[str] = Field(default_factory=list, description="ISO 639-1 codes.")
    territories: list[str] = Field(default_factory=list, description="ISO country codes; empty = anywhere.")
    segments: list[str] = Field(default_factory=list, description="smb, mid, enterprise; empty = any.")
    tier: Tier = Tier.MID
    weight: float = Field(default=1.0, ge=0, description="Share of the pool's leads; 0 = takes none.")
    daily_cap: int | None = Field(default=None, ge=0, description="New leads per local day (closed ones count).")
    weekly_cap: int | None = Field(default=None, ge=0,
                                   description="New leads per local week, Mon-Sun (closed ones count).")
    max_open: int | None = Field(default=None, ge=0, description="Routed leads open at once (won/lost frees one).")
    timezone: str = "UTC"
    working_hours: dict[str, list[str]] | None = Field(
        default=None, description="Per weekday (mon..sun) spans like '09:00-17:30' in the rep's zone; null = always."
    )
    out_of_office: list[OutOfOffice] = Field(default_factory=list)
    crm_owner_ids: dict[str, str] = Field(
        default_factory=dict,
        description="The rep's user in each CRM, e.g. {hubspot: '1234567', salesforce: '005...'}; carried on "
                    "lead-routed so a CRM forwarder (crm-sync) can set the owner.",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is None:
            return None
        for day, spans in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
            for span in spans:
                parse_span(span)
        return value

    @field_validator("languages", "segments")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value]

    @field_validator("territories")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.strip().upper() for v in value]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Overflow(_Model):
    """What happens when nobody in the pool can take a lead."""

    kind: Literal["next_pool", "fallback_owner", "nurture"] = "nurture"
    pool: str | None = None
    owner: str | None = None

    @model_validator(mode="after")
    def _target(self) -> Overflow:
        if self.kind == "next_pool" and not self.pool:
            raise ValueError("overflow next_pool needs 'pool'")
        if self.kind == "fallback_owner" and not self.owner:
            raise ValueError("overflow fallback_owner needs 'owner'")
        return self


class Team(_Model):
    id: str = Field(min_length=1, max_length=100)
    name: str | None = None
    off_hours: Literal["route_now", "hold"] = Field(
        default="route_now", description="route_now: someone on shift now; hold: wait for the first shift start."
    )
    overflow: Overflow = Field(default_factory=Overflow)
    sla_policy: str = "standard"


class RuleWhen(_Model):
    """Conditions on the lead; all given ones must hold (an empty list or null means 'any')."""

    languages: list[str] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    company_size_min: int | None = None
    company_size_max: int | None = None
    grades: list[str] = Field(default_factory=list)
    score_min: float | None = None
    stages: list[str] = Field(default_factory=list)


class RuleRequire(_Model):
    """Which reps of the target pool may take the lead."""

    min_tier: Tier | None = None
    speaks_language: bool = False
    covers_territory: bool = False
    covers_segment: bool = False


class Rule(_Model):
    id: str = Field(min_length=1, max_length=100)
    pool: str
    description: str | None = None
    when: RuleWhen = Field(default_factory=RuleWhen)
    require: RuleRequire = Field(default_factory=RuleRequire)
    sla_policy: str | None = Field(default=None, description="Overrides the pool's SLA policy.")


class Roster(_Model):
    teams: list[Team] = Field(default_factory=list)
    reps: list[Rep] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list, description="Ordered; the first match wins.")
    fallback_pool: str | None = None

    @model_validator(mode="after")
    def _references(self) -> Roster:
        teams = {t.id for t in self.teams}
        reps = {r.id for r in self.reps}
        if len(teams) != len(self.teams) or len(reps) != len(self.reps):
            raise ValueError("duplicate team or rep id")
        for r in self.reps:
            if r.team not in teams:
                raise ValueError(f"rep {r.id!r} is in unknown team {r.team!r}")
        for rule in self.rules:
            if rule.pool not in teams:
                raise ValueError(f"rule {rule.id!r} targets unknown pool {rule.pool!r}")
        for t in self.teams:
            if t.overflow.kind == "next_pool" and t.overflow.pool not in teams:
                raise ValueError(f"team {t.id!r} overflows to unknown pool {t.overflow.pool!r}")
            if t.overflow.kind == "fallback_owner" and t.overflow.owner not in reps:
                raise ValueError(f"team {t.id!r} overflows to unknown owner {t.overflow.owner!r}")
        if self.fallback_pool is not None and self.fallback_pool not in teams:
            raise ValueError(f"unknown fallback pool {self.fallback_pool!r}")
        return self

    def team(self, team_id: str) -> Team | None:
        return _index(self).teams.get(team_id)

    def rep(self, rep_id: str) -> Rep | None:
        return _index(self).reps.get(rep_id)

    def members(self, team_id: str) -> list[Rep]:
        return list(_index(self).members.get(team_id, ()))


@dataclass(frozen=True)
class _Index:
    """A roster's teams and reps by id, and each team's members (in roster order), for lookups in O(1)."""

    teams_list: list[Team]
    reps_list: list[Rep]
    teams: dict[str, Team]
    reps: dict[str, Rep]
    members: dict[str, list[Rep]]


_INDEXES: dict[tuple[int, int], _Index] = {}  # by the ids of a roster's lists, which the entry keeps alive


def _index(roster: Roster) -> _Index:
    """The lookups of ``roster``'s current lists (a roster is frozen, but ``model_copy(update=...)`` makes one
    with new lists: those get an index of their own). The first of duplicate ids wins, as a scan would."""
    key = (id(roster.teams), id(roster.reps))
    found = _INDEXES.get(key)
    if found is not None and found.teams_list is roster.teams and found.reps_list is roster.reps:
        return found
    teams: dict[str, Team] = {}
    for t in roster.teams:
        teams.setdefault(t.id, t)
    reps: dict[str, Rep] = {}
    members: dict[str, list[Rep]] = {}
    for r in roster.reps:
        reps.setdefault(r.id, r)
        members.setdefault(r.team, []).append(r)
    if len(_INDEXES) >= 32:
        _INDEXES.clear()
    _INDEXES[key] = index = _Index(roster.teams, roster.reps, teams, reps, members)
    return index


def load_roster(data: dict[str, Any]) -> Roster:
    return Roster.model_validate(data)
