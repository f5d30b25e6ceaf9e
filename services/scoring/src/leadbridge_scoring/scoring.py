"""The score of one lead: a pure function of (profile, activities, model, now).

fit        who the lead is (title, company size, industry, country) - profile rules
engagement what the lead did (forms, downloads, webinars), fading with time - activity rules with decay
intent     buying signals (demo or pricing request) - activity rules, no decay
negative   reasons not to call (free mail, competitor, student) - profile rules with negative points

Each category is capped; the total is their sum. Every rule that matched is listed with its points, and a cap
that cut points is listed too, so the listed points always add up to the total.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadbridge_contracts.events import LeadProfile, Stage

from .model import ActivityRule, ProfileRule, ScoringModel

CATEGORIES = ("fit", "engagement", "intent", "negative")


@dataclass(frozen=True)
class Activity:
    """One thing the lead did: the capture form itself, or later repeat activity."""

    activity_id: str
    occurred_at: datetime
    kind: str = "form_submission"
    form_type: str | None = None
    channel: str | None = None
    campaign: str | None = None
    asset: str | None = None


@dataclass(frozen=True)
class RuleHit:
    rule: str
    category: str
    points: float
    explanation: str


@dataclass(frozen=True)
class Breakdown:
    total: float
    fit: float
    engagement: float
    intent: float
    negative: float
    grade: str
    stage: Stage  # readiness by score alone: MQL at or above the threshold, else nurture
    matched: tuple[RuleHit, ...]
    model_version: str

    def signature(self) -> tuple[float, float, float, float, float, str, str]:
        return (self.total, self.fit, self.engagement, self.intent, self.negative, self.grade, self.model_version)


def score(profile: LeadProfile, activities: list[Activity], model: ScoringModel, now: datetime) -> Breakdown:
    hits: list[RuleHit] = []
    totals: dict[str, float] = {}
    ordered = sorted(activities, key=lambda a: (a.occurred_at, a.activity_id)) if len(activities) > 1 else activities
    plan = _plan(model)
    for category in CATEGORIES:
        if category in ("fit", "negative"):
            found = [hit for field, test, hit in plan.profile[category]
                     if (value := profile_value(profile, field)) is not None and value != "" and test(value)]
        else:
            found = [h for rule, selects in plan.activity[category]
                     if (h := _activity_hit(rule, selects, category, ordered, plan, model, now)) is not None]
        raw = round(sum(h.points for h in found), 2)
        capped = _cap(category, raw, model)
        if capped != raw:
            found.append(RuleHit(f"cap:{category}", category, round(capped - raw, 2),
                                 f"{category} capped at {capped:g} (rules gave {raw:g})"))
        hits.extend(found)
        totals[category] = capped
    total = round(sum(totals.values()), 2)
    stage = Stage.MQL if total >= model.mql_threshold and not profile.is_test else Stage.NURTURE
    return Breakdown(
        total=total, fit=totals["fit"], engagement=totals["engagement"], intent=totals["intent"],
        negative=totals["negative"], grade=model.grade_for(total, totals["fit"]), stage=stage,
        matched=tuple(hits), model_version=model.version,
    )


def _cap(category: str, raw: float, model: ScoringModel) -> float:
    cap: float | None = getattr(model.caps, category)
    if cap is None:
        return raw
    return round(max(raw, -cap), 2) if category == "negative" else round(min(raw, cap), 2)


# -- profile rules (fit, negative) ---------------------------------------------------------------


def profile_value(profile: LeadProfile, field: str) -> str | int | None:
    if field == "email_domain":
        email = profile.contact.email
        return email.rsplit("@", 1)[1].lower() if email and "@" in email else None
    return getattr(profile, field, None)


def _words(terms: list[str]) -> re.Pattern[str]:
    """Any of ``terms`` as a whole word or phrase (lower case; not inside a longer word)."""
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, terms)) + r")(?![a-z0-9])")


_Test = Callable[[Any], bool]


def _value_test(rule: ProfileRule) -> _Test:
    """The rule's test of a (non-empty) profile value, built once per rule (``_plan``)."""
    if rule.equals is not None:
        allowed = frozenset(rule.equals)
        return lambda value: str(value).strip().lower() in allowed
    if rule.contains is not None:
        search = _words(rule.contains).search
        return lambda value: search(str(value).lower()) is not None

    def in_range(value: Any) -> bool:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return not ((rule.min is not None and number < rule.min) or (rule.max is not None and number > rule.max))
    return in_range


@dataclass(frozen=True)
class _Plan:
    """A model's rules as ready-made tests, built once per model object (``_plan``), not on every score: the
    profile rules' (field, test, the hit it gives), the activity rules with their selectors (also by id, for
    ``after``)."""

    profile: dict[str, list[tuple[str, _Test, RuleHit]]]
    activity: dict[str, list[tuple[ActivityRule, Callable[[Activity], bool]]]]
    selectors: dict[str, Callable[[Activity], bool]]


_PLANS: dict[int, tuple[ScoringModel, _Plan]] = {}


def _plan(model: ScoringModel) -> _Plan:
    found = _PLANS.get(id(model))
    if found is None or found[0] is not model:  # an id reused by a newer model object: build again
        if len(_PLANS) > 64:  # models live for the process; what-if runs build a few more
            _PLANS.clear()
        selectors = {r.id: _selector(r) for r in (*model.engagement, *model.intent)}
        found = _PLANS[id(model)] = (model, _Plan(
            profile={c: [(r.field, _value_test(r), RuleHit(r.id, c, r.points,
                                                            r.explanation or f"{r.field} matches {r.id}"))
                         for r in getattr(model, c)] for c in ("fit", "negative")},
            activity={c: [(r, selectors[r.id]) for r in getattr(model, c)] for c in ("engagement", "intent")},
            selectors=selectors))
    return found[1]


# -- activity rules (engagement, intent) ---------------------------------------------------------


def _selector(rule: ActivityRule) -> Callable[[Activity], bool]:
    """``rule``'s test of an activity: every selector given matches (one of the values; a word of the asset)."""
    kinds, forms, channels = (None if v is None else frozenset(v) for v in (rule.kind, rule.form_type, rule.channel))
    asset = None if rule.asset_contains is None else _words(rule.asset_contains).search

    def among(value: str | None, allowed: frozenset[str] | None) -> bool:
        return allowed is None or (value is not None and value.lower() in allowed)

    def selects(a: Activity) -> bool:
        if not (among(a.kind, kinds) and among(a.form_type, forms) and among(a.channel, channels)):
            return False
        return asset is None or (a.asset is not None and asset(a.asset.lower()) is not None)
    return selects


def decay_factor(age_days: float, model: ScoringModel) -> float:
    """The share of its points an engagement activity of this age still earns (1.0 = all)."""
    age_days = max(age_days, 0.0)
    if model.decay.max_age_days is not None and age_days > model.decay.max_age_days:
        return 0.0
    if model.decay.half_life_days is None:
        return 1.0
    return float(0.5 ** (age_days / model.decay.half_life_days))


def _activity_hit(rule: ActivityRule, selects: Callable[[Activity], bool], category: str, ordered: list[Activity],
                  plan: _Plan, model: ScoringModel, now: datetime) -> RuleHit | None:
    matching = [a for i, a in enumerate(ordered) if selects(a) and (not rule.after or _after_ok(rule, ordered[:i], plan))]
    if not matching:
        return None
    counted = matching[-rule.max_times:]  # the most recent ones
    if category == "engagement":
        factors = [decay_factor((now - a.occurred_at).total_seconds() / 86400, model) for a in counted]
    else:
        factors = [1.0 for _ in counted]
    points = round(sum(rule.points * f for f in factors), 2)
    if points == 0 and rule.points != 0:
        return None  # everything it matched has decayed away
    text = rule.explanation or rule.id
    if len(counted) > 1:
        text += f" (x{len(counted)})"
    full = rule.points * len(counted)
    if category == "engagement" and full and points < full:
        text += f", faded to {round(100 * points / full)}% with time"
    return RuleHit(rule.id, category, points, text)


def _after_ok(rule: ActivityRule, earlier: list[Activity], plan: _Plan) -> bool:
    if not rule.after:
        return True
    if not earlier:
        return False
    return any(plan.selectors[rid](a) for rid in rule.after for a in earlier)
