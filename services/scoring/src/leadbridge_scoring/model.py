"""The scoring model: the rules marketing and sales agreed on, as validated plain data.

A model is read from YAML (see ``model_file.py`` and the README); every key is checked here, unknown keys
are errors, so a typo never silently changes a score. This module is pure: no I/O.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ProfileField = Literal[
    "job_title", "company_size", "industry", "country", "language", "channel", "campaign", "source",
    "form_type", "company", "email_domain",
]
NUMERIC_FIELDS = frozenset({"company_size"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _lower(values: list[str] | None) -> list[str] | None:
    return None if values is None else [v.strip().lower() for v in values]


class ProfileRule(_Strict):
    """A rule on who the lead is (fit and negative rules): one profile field and one way to match it.

    ``equals``: the field equals one of the values (case-insensitive); ``contains``: the field contains one of
    the words or phrases (case-insensitive, whole words); ``min``/``max``: a numeric field in a range.
    """

    id: str = Field(min_length=1)
    points: float
    field: ProfileField
    equals: list[str] | None = Field(default=None, min_length=1)
    contains: list[str] | None = Field(default=None, min_length=1)
    min: float | None = None
    max: float | None = None
    explanation: str = ""

    _lower_equals = field_validator("equals")(lambda cls, v: _lower(v))
    _lower_contains = field_validator("contains")(lambda cls, v: _lower(v))

    @model_validator(mode="after")
    def _one_matcher(self) -> ProfileRule:
        kinds = [k for k, v in (("equals", self.equals), ("contains", self.contains)) if v is not None]
        if self.min is not None or self.max is not None:
            kinds.append("min/max")
        if len(kinds) != 1:
            raise ValueError(f"a rule needs exactly one of equals, contains or min/max (got {kinds or 'none'})")
        if kinds == ["min/max"] and self.field not in NUMERIC_FIELDS:
            raise ValueError(f"min/max only works on numeric fields ({', '.join(sorted(NUMERIC_FIELDS))})")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class ActivityRule(_Strict):
    """A rule on what the lead did (engagement and intent rules): which activities earn points.

    Every selector given must match (``kind``, ``form_type``, ``channel``: one of the values;
    ``asset_contains``: the asset name contains one of the words). ``after`` lists rule ids one of which must
    have matched an *earlier* activity: a later call to action earns its points only after the first one.
    ``max_times`` is how many matching activities count (the most recent ones).
    """

    id: str = Field(min_length=1)
    points: float = Field(ge=0)
    kind: list[str] | None = Field(default=None, min_length=1)
    form_type: list[str] | None = Field(default=None, min_length=1)
    channel: list[str] | None = Field(default=None, min_length=1)
    asset_contains: list[str] | None = Field(default=None, min_length=1)
    after: list[str] | None = Field(default=None, min_length=1)
    max_times: int = Field(default=1, ge=1)
    explanation: str = ""

    _lower = field_validator("kind", "form_type", "channel", "asset_contains")(lambda cls, v: _lower(v))

    @model_validator(mode="after")
    def _has_selector(self) -> ActivityRule:
        if not any((self.kind, self.form_type, self.channel, self.asset_contains)):
            raise ValueError("an activity rule needs at least one of kind, form_type, channel or asset_contains")
        return self


class NegativeRule(ProfileRule):
    @field_validator("points")
    @classmethod
    def _negative(cls, v: float) -> float:
        if v >= 0:
            raise ValueError("negative rules must have points below 0")
        return v


class Decay(_Strict):
    """Engagement points fade: they halve every ``half_life_days``; older than ``max_age_days`` earn nothing."""

    half_life_days: float | None = Field(default=None, gt=0)
    max_age_days: float | None = Field(default=None, gt=0)


class Caps(_Strict):
    """The most a category can contribute (``negative``: the largest penalty, as a positive number)."""

    fit: float | None = Field(default=None, ge=0)
    engagement: float | None = Field(default=None, ge=0)
    intent: float | None = Field(default=None, ge=0)
    negative: float | None = Field(default=None, ge=0)


class GradeBand(_Strict):
    grade: str = Field(min_length=1)
    min: float | None = Field(default=None, description="Lowest score of the band; the last band has none.")


class Grades(_Strict):
    on: Literal["total", "fit"] = "total"
    bands: list[GradeBand] = Field(min_length=1)

    @field_validator("bands")
    @classmethod
    def _ordered(cls, bands: list[GradeBand]) -> list[GradeBand]:
        *upper, last = bands
        if last.min is not None:
            raise ValueError("the last band is the catch-all: give it no min")
        mins = [b.min for b in upper if b.min is not None]
        if len(mins) < len(upper):
            raise ValueError("every band but the last needs a min")
        if any(a <= b for a, b in pairwise(mins)):
            raise ValueError("bands must be listed from the highest min to the lowest")
        return bands


class ScoringModel(_Strict):
    version: str = Field(min_length=1, description="Stamped on every lead-scored event.")
    description: str = ""
    mql_threshold: float
    sql_min_bant: int = Field(default=3, ge=0, le=4, description="BANT criteria a 'qualified' follow-up needs.")
    fit: list[ProfileRule] = Field(default_factory=list)
    engagement: list[ActivityRule] = Field(default_factory=list)
    intent: list[ActivityRule] = Field(default_factory=list)
    negative: list[NegativeRule] = Field(default_factory=list)
    decay: Decay = Field(default_factory=Decay)
    caps: Caps = Field(default_factory=Caps)
    grades: Grades

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: object) -> object:
        return str(v) if isinstance(v, (int, float)) else v

    @model_validator(mode="after")
    def _references(self) -> ScoringModel:
        seen: set[str] = set()
        for category in ("fit", "engagement", "intent", "negative"):
            for rule in getattr(self, category):
                if rule.id in seen:
                    raise ValueError(f"rule id {rule.id!r} is used twice")
                seen.add(rule.id)
        activity_ids = {r.id for r in (*self.engagement, *self.intent)}
        for rule in (*self.engagement, *self.intent):
            unknown = [a for a in rule.after or () if a not in activity_ids]
            if unknown:
                raise ValueError(f"rule {rule.id!r}: 'after' names unknown engagement/intent rule(s) {unknown}")
        return self

    def grade_for(self, total: float, fit: float) -> str:
        value = fit if self.grades.on == "fit" else total
        for band in self.grades.bands:
            if band.min is None or value >= band.min:
                return band.grade
        return self.grades.bands[-1].grade  # pragma: no cover - the last band has no min
