"""What-if: how many leads would change stage under a proposed model. Pure; emits nothing.

Both models score the same stored leads as of the same moment, so the only difference is the model. The
stage compared is readiness: MQL at or above the model's threshold, else nurture; SQL leads belong to sales
and do not move. Results are grouped by channel and campaign so both teams see whose leads move.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from leadbridge_contracts.events import LeadProfile, Stage

from .lifecycle import LeadState, counted_activities
from .model import ScoringModel
from .scoring import Activity, score


@dataclass(frozen=True)
class LeadFacts:
    lead_id: str
    profile: LeadProfile
    state: LeadState
    activities: list[Activity]
    channel: str | None = None
    campaign: str | None = None


@dataclass
class GroupChange:
    channel: str
    campaign: str
    leads: int = 0
    to_mql: int = 0
    to_nurture: int = 0
    score_delta_sum: float = 0.0

    @property
    def changed(self) -> int:
        return self.to_mql + self.to_nurture

    @property
    def mean_score_delta(self) -> float:
        return round(self.score_delta_sum / self.leads, 2) if self.leads else 0.0


@dataclass
class WhatIfReport:
    baseline_version: str
    proposed_version: str
    as_of: datetime
    leads: int = 0
    to_mql: int = 0
    to_nurture: int = 0
    sql_unchanged: int = 0
    groups: list[GroupChange] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.to_mql + self.to_nurture

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat()
        out["changed"] = self.changed
        for g, d in zip(self.groups, out["groups"], strict=False):
            d.pop("score_delta_sum")
            d["changed"], d["mean_score_delta"] = g.changed, g.mean_score_delta
        return out


def readiness(lead: LeadFacts, model: ScoringModel, now: datetime) -> tuple[Stage, float]:
    b = score(lead.profile, counted_activities(lead.activities, lead.state), model, now)
    return (Stage.SQL if lead.state.stage is Stage.SQL else b.stage), b.total


def compare(leads: list[LeadFacts], baseline: ScoringModel, proposed: ScoringModel, now: datetime) -> WhatIfReport:
    report = WhatIfReport(baseline.version, proposed.version, now)
    groups: dict[tuple[str, str], GroupChange] = {}
    for lead in leads:
        if lead.profile.is_test:
            continue
        key = (lead.channel or "(none)", lead.campaign or "(none)")
        group = groups.setdefault(key, GroupChange(*key))
        before, old_score = readiness(lead, baseline, now)
        after, new_score = readiness(lead, proposed, now)
        report.leads += 1
        group.leads += 1
        group.score_delta_sum += new_score - old_score
        if before is Stage.SQL:
            report.sql_unchanged += 1
        elif before is not after:
            moved = "to_mql" if after is Stage.MQL else "to_nurture"
            setattr(report, moved, getattr(report, moved) + 1)
            setattr(group, moved, getattr(group, moved) + 1)
    report.groups = sorted(groups.values(), key=lambda g: (-g.changed, g.channel, g.campaign))
    return report


def render(report: WhatIfReport) -> str:
    lines = [
        f"what-if: {report.baseline_version} -> {report.proposed_version} (as of {report.as_of.isoformat()})",
        (f"{report.leads} leads; {report.changed} would change stage: {report.to_mql} nurture->MQL, "
         f"{report.to_nurture} MQL->nurture; {report.sql_unchanged} SQL leads stay with sales"),
        "",
        f"{'channel':<16} {'campaign':<28} {'leads':>6} {'->MQL':>6} {'->nurt':>6} {'avg dscore':>10}",
    ]
    by_channel: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for g in report.groups:
        lines.append(f"{g.channel[:16]:<16} {g.campaign[:28]:<28} {g.leads:>6} {g.to_mql:>6} {g.to_nurture:>6} "
                     f"{g.mean_score_delta:>+10.2f}")
        totals = by_channel[g.channel]
        totals[0] += g.leads
        totals[1] += g.to_mql
        totals[2] += g.to_nurture
    if by_channel:
        lines += ["", f"{'channel':<16} {'leads':>6} {'->MQL':>6} {'->nurt':>6}"]
        lines += [f"{ch[:16]:<16} {t[0]:>6} {t[1]:>6} {t[2]:>6}" for ch, t in sorted(by_channel.items())]
    return "\n".join(lines)
