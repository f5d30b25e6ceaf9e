"""Trends: the cohort's numbers per day or week over a range, gaps filled with zeros. Pure.

A bucket is the leads captured in it (the funnel's cohort), so every line answers "of the leads that came
in that day, how many ...". Weeks start on Monday (UTC); days are UTC days.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

MEASURES = ("captured", "mql", "routed", "within_sla", "breached", "accepted", "rejected", "won", "lost")
UNITS = ("day", "week")
MAX_BUCKETS = 400


def bucket_start(at: datetime, unit: str) -> datetime:
    at = at.astimezone(UTC)
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    raise ValueError(f"unit must be one of {', '.join(UNITS)}")


def buckets(since: datetime, until: datetime, unit: str) -> list[datetime]:
    """The bucket starts covering [since, until)."""
    step = timedelta(days=1 if unit == "day" else 7)
    out, at = [], bucket_start(since, unit)
    while at < until:
        out.append(at)
        if len(out) > MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} {unit}s: choose a shorter range or weeks")
        at += step
    return out


def series(counts: Mapping[datetime, Mapping[str, int]], *, since: datetime, until: datetime,
           unit: str) -> dict[str, Any]:
    """One list per measure, aligned with ``x`` (bucket starts), plus SLA compliance % (within SLA / routed)."""
    xs = buckets(since, until, unit)
    by_start = {bucket_start(k, unit): v for k, v in counts.items()}
    out: dict[str, Any] = {"unit": unit, "x": [x.isoformat() for x in xs]}
    for m in MEASURES:
        out[m] = [int(by_start.get(x, {}).get(m, 0)) for x in xs]
    out["compliance_pct"] = [round(100 * w / r, 1) if r else None for w, r in zip(out["within_sla"], out["routed"], strict=False)]
    return out
