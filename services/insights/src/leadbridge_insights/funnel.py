"""The closed-loop funnel: lead facts grouped by channel, campaign, source, team or rep. Pure.

A function of plain ``LeadFacts`` rows and ``now`` (the clock is passed in), so every number can be
checked by hand in a unit test. Test leads (``is_test``) are excluded. Touch buckets and SLA compliance
are over the routed leads (the leads sales owed a follow-up).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .facts import LeadFacts

DIMENSIONS = ("channel", "campaign", "source", "team", "rep")
NONE_KEY = "(none)"
TOUCH_BUCKETS = ("0", "1-3", "4+")


def touch_bucket(touches: int) -> str:
    return "0" if touches == 0 else "1-3" if touches <= 3 else "4+"


def in_limbo(f: LeadFacts, now: datetime, limbo_after: timedelta) -> bool:
    """Captured at least ``limbo_after`` ago, and neither routed nor nurtured: nobody owns it."""
    since = f.captured_at or f.first_seen_at
    return since is not None and now - since >= limbo_after and not f.routed and not f.nurtured


@dataclass
class FunnelRow:
    key: str
    captured: int = 0
    mql: int = 0
    nurtured: int = 0
    routed: int = 0
    first_touch_within_sla: int = 0
    sla_at_risk: int = 0
    sla_breached: int = 0
    touches: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejected: int = 0
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    qualified: int = 0
    won: int = 0
    won_amount: float = 0.0
    lost: int = 0
    lost_reasons: Counter[str] = field(default_factory=Counter)
    limbo: int = 0

    def add(self, f: LeadFacts, *, limbo: bool) -> None:
        self.captured += 1
        self.mql += f.mql
        self.nurtured += f.nurtured
        self.limbo += limbo
        if f.routed:
            self.routed += 1
            self.first_touch_within_sla += f.first_touch_within_sla
            self.touches[touch_bucket(f.touches)] += 1
        self.sla_at_risk += f.sla_at_risk
        self.sla_breached += f.sla_breached
        self.accepted += f.accepted
        self.qualified += f.qualified
        if f.rejected:
            self.rejected += 1
            self.rejected_reasons[f.rejected_reason or "unspecified"] += 1
        if f.won:
            self.won += 1
            self.won_amount += f.won_amount or 0.0
        if f.lost:
            self.lost += 1
            self.lost_reasons[f.lost_reason or "unspecified"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "captured": self.captured, "mql": self.mql, "nurtured": self.nurtured,
            "routed": self.routed, "first_touch_within_sla": self.first_touch_within_sla,
            "sla_compliance": round(self.first_touch_within_sla / self.routed, 4) if self.routed else None,
            "sla_at_risk": self.sla_at_risk, "sla_breached": self.sla_breached,
            "touches": {b: self.touches[b] for b in TOUCH_BUCKETS},
            "accepted": self.accepted, "rejected": self.rejected,
            "rejected_reasons": dict(self.rejected_reasons.most_common()),
            "qualified": self.qualified, "won": self.won, "won_amount": self.won_amount, "lost": self.lost,
            "lost_reasons": dict(self.lost_reasons.most_common()), "limbo": self.limbo,
        }


def dimension_value(f: LeadFacts, by: str) -> str:
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    return getattr(f, by) or NONE_KEY


def in_window(f: LeadFacts, since: datetime | None, until: datetime | None) -> bool:
    """Cohort by capture time: since <= captured_at < until."""
    at = f.captured_at or f.first_seen_at
    if at is None:
        return since is None and until is None
    return (since is None or at >= since) and (until is None or at < until)


def funnel(leads: Iterable[LeadFacts], *, by: str, now: datetime, limbo_after: timedelta,
           since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """The funnel report: one row per value of ``by`` (largest first) and a total row."""
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    rows: dict[str, FunnelRow] = {}
    total = FunnelRow(key="total")
    for f in leads:
        if f.is_test or not in_window(f, since, until):
            continue
        limbo = in_limbo(f, now, limbo_after)
        key = dimension_value(f, by)
        rows.setdefault(key, FunnelRow(key=key)).add(f, limbo=limbo)
        total.add(f, limbo=limbo)
    ordered = sorted(rows.values(), key=lambda r: (-r.captured, r.key))
    return {
        "by": by, "now": now.isoformat(), "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limbo_after_minutes": limbo_after.total_seconds() / 60,
        "rows": [r.as_dict() for r in ordered], "total": total.as_dict(),
    }


def _row_from(a: dict[str, Any], key: str, reasons: dict[str, Counter[str]]) -> FunnelRow:
    counts = {name: int(a[name]) for name in ("captured", "mql", "nurtured", "routed", "first_touch_within_sla",
                                              "sla_at_risk", "sla_breached", "accepted", "rejected", "qualified",
                                              "won", "lost", "limbo")}
    touches = Counter({"0": int(a["touches_0"]), "1-3": int(a["touches_1_3"]), "4+": int(a["touches_4"])})
    return FunnelRow(key=key, **counts, touches=touches, won_amount=float(a["won_amount"]),
                     rejected_reasons=reasons.get("rejected", Counter()), lost_reasons=reasons.get("lost", Counter()))


def report_from_aggregates(counts: Iterable[dict[str, Any]], reasons: Iterable[tuple[str, str, str, int]], *,
                           by: str, now: datetime, limbo_after: timedelta, since: datetime | None = None,
                           until: datetime | None = None) -> dict[str, Any]:
    """``funnel``'s report from counts made in SQL (``funnel_store.funnel_aggregates``): per ``by`` value and
    total (``is_total``) rows of counts, and (key, "rejected"|"lost", reason, count) tuples."""
    by_key: dict[str, dict[str, Counter[str]]] = {}
    everything: dict[str, Counter[str]] = {"rejected": Counter(), "lost": Counter()}
    for key, kind, reason, n in sorted(reasons, key=lambda r: (r[0], r[1], r[2])):  # ties: by reason name
        by_key.setdefault(key, {}).setdefault(kind, Counter())[reason] += n
        everything[kind][reason] += n
    rows, total = [], FunnelRow(key="total")
    for a in counts:
        if a["is_total"]:
            total = _row_from(a, "total", everything)
        else:
            rows.append(_row_from(a, a["key"], by_key.get(a["key"], {})))
    rows.sort(key=lambda r: (-r.captured, r.key))
    return {
        "by": by, "now": now.isoformat(), "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limbo_after_minutes": limbo_after.total_seconds() / 60,
        "rows": [r.as_dict() for r in rows], "total": total.as_dict(),
    }
