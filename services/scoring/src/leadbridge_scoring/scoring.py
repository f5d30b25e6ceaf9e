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
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

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
    for category in CATEGORIES:
        if category in ("fit", "negative"):
            found = [h for r in getattr(model, category) if (h := _profile_hit(r, category, profile)) is not None]
        else:
            found = [h for r in getattr(model, category)
                     if (h := _activity_hit(r, category, ordered, model, now)) is not None]
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


@lru_cache(maxsize=1024)
def _word(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])")


def _matches_words(value: str, terms: list[str]) -> str | None:
    text = value.lower()
    return next((t for t in terms if _word(t).search(text)), None)


def _profile_hit(rule: ProfileRule, category: str, profile: LeadProfile) -> RuleHit | None:
    value = profile_value(profile, rule.field)
    if value is None or value == "":
        return None
    if rule.equals is not None:
        if str(value).strip().lower() not in rule.equals:
            return None
    elif rule.contains is not None:
        if _matches_words(str(value), rule.contains) is None:
            return None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if (rule.min is not None and number < rule.min) or (rule.max is not None and number > rule.max):
            return None
    return RuleHit(rule.id, category, rule.points, rule.explanation or f"{rule.field} matches {rule.id}")


# -- activity rules (engagement, intent) ---------------------------------------------------------


def _among(value: str | None, allowed: list[str] | None) -> bool:
    return allowed is None or (value is not None and value.lower() in allowed)


def _selects(rule: ActivityRule, activity: Activity) -> bool:
    if not (_among(activity.kind, rule.kind) and _among(activity.form_type, rule.form_type)
            and _among(activity.channel, rule.channel)):
        return False
    if rule.asset_contains is not None:
        return activity.asset is not None and _matches_words(activity.asset, rule.asset_contains) is not None
    return True


def decay_factor(age_days: float, model: ScoringModel) -> float:
    """The share of its points an engagement activity of this age still earns (1.0 = all)."""
    age_days = max(age_days, 0.0)
    if model.decay.max_age_days is not None and age_days > model.decay.max_age_days:
        return 0.0
    if model.decay.half_life_days is None:
        return 1.0
    return float(0.5 ** (age_days / model.decay.half_life_days))


def _activity_hit(rule: ActivityRule, category: str, ordered: list[Activity], model: ScoringModel,
                  now: datetime) -> RuleHit | None:
    matching = [a for i, a in enumerate(ordered)
                if _selects(rule, a) and (not rule.after or _after_ok(rule, ordered[:i], model))]
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


def _after_ok(rule: ActivityRule, earlier: list[Activity], model: ScoringModel) -> bool:
    if not rule.after:
        return True
    if not earlier:
        return False
    rules = {r.id: r for r in (*model.engagement, *model.intent)}
    return any(_selects(rules[rid], a) for rid in rule.after for a in earlier)
