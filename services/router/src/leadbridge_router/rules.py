"""Ordered routing rules: the first rule whose conditions all hold picks the pool. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .roster import Rep, Rule, Tier

SEGMENT_BOUNDS = ((50, "smb"), (1000, "mid"))  # company size below the bound -> segment; else enterprise


@dataclass(frozen=True)
class LeadFacts:
    """What routing looks at; built from a lead-scored event (no personal data needed)."""

    lead_id: str
    score: float = 0.0
    grade: str | None = None
    stage: str | None = None
    language: str | None = None
    country: str | None = None
    company_size: int | None = None
    segment: str | None = None

    @property
    def effective_segment(self) -> str | None:
        if self.segment:
            return self.segment.lower()
        if self.company_size is None:
            return None
        for bound, name in SEGMENT_BOUNDS:
            if self.company_size < bound:
                return name
        return "enterprise"


def _in(value: str | None, allowed: list[str]) -> bool:
    return not allowed or (value is not None and value.lower() in {a.lower() for a in allowed})


def rule_matches(rule: Rule, lead: LeadFacts) -> bool:
    w = rule.when
    if not (_in(lead.language, w.languages) and _in(lead.country, w.countries)
            and _in(lead.effective_segment, w.segments) and _in(lead.grade, w.grades) and _in(lead.stage, w.stages)):
        return False
    if w.company_size_min is not None and (lead.company_size is None or lead.company_size < w.company_size_min):
        return False
    if w.company_size_max is not None and (lead.company_size is None or lead.company_size > w.company_size_max):
        return False
    if w.score_min is not None and lead.score < w.score_min:
        return False
    return True


def first_match(rules: list[Rule], lead: LeadFacts) -> Rule | None:
    return next((r for r in rules if rule_matches(r, lead)), None)


def rep_fits(rule: Rule | None, rep: Rep, lead: LeadFacts) -> str | None:
    """Why the rule's requirements exclude this rep for this lead (None: the rep fits)."""
    if rule is None:
        return None
    req = rule.require
    if req.min_tier is not None and rep.tier.rank < Tier(req.min_tier).rank:
        return f"tier {rep.tier} below {req.min_tier}"
    if req.speaks_language and lead.language and rep.languages and lead.language.lower() not in rep.languages:
        return f"does not speak {lead.language}"
    if req.covers_territory and lead.country and rep.territories and lead.country.upper() not in rep.territories:
        return f"does not cover {lead.country}"
    seg = lead.effective_segment
    if req.covers_segment and seg and rep.segments and seg not in rep.segments:
        return f"does not cover segment {seg}"
    return None
