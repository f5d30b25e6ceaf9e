"""Speed to lead: how long from capture to the first touch (and to routing). Pure: plain numbers in and out.

The lead-response studies' thresholds are 5 minutes, 1 hour and 24 hours. At scale the counts, median
and p90 come from SQL (percentile_cont, the same interpolation as ``percentile``) and ``from_aggregates``
shapes them; ``summarize`` is the reference over plain values, and the tests hold the two to the same
numbers. A share is over the whole population that was owed the step (routed leads for the first touch,
sales-ready leads for routing), so a lead never touched counts as missing every threshold; the median and
p90 are over the leads that got there.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

THRESHOLDS: tuple[tuple[str, float], ...] = (("5m", 300.0), ("1h", 3600.0), ("24h", 86400.0))
# histogram edges in seconds; a bucket holds edge[i-1] <= t < edge[i]
EDGES: tuple[float, ...] = (60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400)
BUCKETS: tuple[str, ...] = ("<1m", "1-5m", "5-15m", "15-60m", "1-4h", "4-24h", "1-3d", "3d+")


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-th quantile (0..1) of sorted values with linear interpolation (as PostgreSQL's percentile_cont)."""
    if not 0 <= q <= 1:
        raise ValueError("q must be between 0 and 1")
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def bucket_of(seconds: float) -> int:
    return bisect_right(EDGES, seconds)


def histogram(values: Iterable[float]) -> list[int]:
    counts = [0] * len(BUCKETS)
    for v in values:
        counts[bucket_of(v)] += 1
    return counts


@dataclass(frozen=True)
class Group:
    """One group's durations (seconds, any order) and how many leads were owed the step."""

    key: str
    durations: Sequence[float]
    population: int


def summarize(key: str, durations: Sequence[float], population: int) -> dict[str, Any]:
    ordered = sorted(durations)
    population = max(population, len(ordered))
    within = {name: (bisect_right(ordered, limit) / population if population else None)
              for name, limit in THRESHOLDS}
    return {"key": key, "population": population, "reached": len(ordered),
            "median_seconds": percentile(ordered, 0.5), "p90_seconds": percentile(ordered, 0.9),
            "within": {k: (round(v, 4) if v is not None else None) for k, v in within.items()},
            "histogram": histogram(ordered)}


def from_aggregates(key: str, a: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The same summary as ``summarize``, from aggregates computed in SQL (``speed_store.speed_groups``:
    population, reached, median, p90, within_<threshold> counts, h<i> histogram counts)."""
    population = max(int(a[f"{prefix}_population"]), int(a[f"{prefix}_reached"]))
    sla = {}
    if f"{prefix}_within_sla" in a:  # the SLA watcher's verdicts beside the fixed thresholds
        sla = {"within_sla": int(a[f"{prefix}_within_sla"]), "breached": int(a[f"{prefix}_breached"]),
               "sla_compliance": round(a[f"{prefix}_within_sla"] / population, 4) if population else None}
    return {**sla, "key": key, "population": population, "reached": int(a[f"{prefix}_reached"]),
            "median_seconds": a[f"{prefix}_median"], "p90_seconds": a[f"{prefix}_p90"],
            "within": {name: (round(a[f"{prefix}_within_{name}"] / population, 4) if population else None)
                       for name, _ in THRESHOLDS},
            "histogram": [int(a[f"{prefix}_h{i}"]) for i in range(len(BUCKETS))]}


def report_from_aggregates(rows: Iterable[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """Rows per group (largest population first) and the total row (``is_total``), as ``speed_report``."""
    rows = list(rows)
    groups = [from_aggregates(r["key"], r, prefix) for r in rows if not r["is_total"]]
    groups.sort(key=lambda r: (-r["population"], r["key"]))
    totals = [from_aggregates("total", r, prefix) for r in rows if r["is_total"]]
    empty = summarize("total", [], 0)
    return {"buckets": list(BUCKETS), "thresholds": [name for name, _ in THRESHOLDS], "rows": groups,
            "total": totals[0] if totals else empty}


def speed_report(groups: Iterable[Group]) -> dict[str, Any]:
    """Rows per group (largest population first) and the total over all of them."""
    groups = list(groups)
    rows = [summarize(g.key, g.durations, g.population) for g in groups]
    rows.sort(key=lambda r: (-r["population"], r["key"]))
    everything = [d for g in groups for d in g.durations]
    total = summarize("total", everything, sum(g.population for g in groups))
    return {"buckets": list(BUCKETS), "thresholds": [name for name, _ in THRESHOLDS], "rows": rows, "total": total}
