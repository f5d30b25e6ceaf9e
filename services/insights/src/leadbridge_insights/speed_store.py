"""The SQL behind the speed-to-lead view. An adapter: PostgreSQL counts and takes percentiles, and
``speed.report_from_aggregates`` shapes them.

Three queries, run concurrently on one snapshot (``store.gather_on_one_snapshot``; PostgreSQL cannot run
an ordered-set aggregate in parallel workers, this spreads the view over the cores):

- the counts: one hash aggregate over the filtered leads, grouped by the ``by`` value and the row's two
  histogram buckets (``touch_bucket``, ``route_bucket``: ``speed.bucket_of`` of the durations), with the
  populations and the threshold counts as ``FILTER`` aggregates; the histograms and the totals are sums
  of those groups, added up here (counts add exactly);
- per duration, the median and p90 (``percentile_cont``) per ``by`` value, and over all of them from the
  partial covering index on the duration (an index-only scan in value order, so the aggregate's own sort
  finds its input sorted).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import speed
from .store import gather_on_one_snapshot
from .store import lead_views as lf
from .views_store import NONE_KEY, count_where

MEASURES = {"touch": (lf.c.touch_secs, lf.c.touch_bucket), "route": (lf.c.route_secs, lf.c.route_bucket)}


def _populations() -> dict[str, Any]:
    """Who was owed each step: routed leads the first touch, sales-ready ones (MQL or routed) the routing."""
    return {"touch": lf.c.routed.is_(True), "route": or_(lf.c.mql_at.is_not(None), lf.c.routed.is_(True))}


async def _counts(conn: AsyncConnection, where: Any, by: str) -> dict[str | None, dict[str, int]]:
    key = func.coalesce(lf.c[by], NONE_KEY)
    measures = [count_where(lf.c.within_sla.is_(True)).label("touch_within_sla"),
                count_where(lf.c.breached.is_(True)).label("touch_breached")]
    for prefix, owed in _populations().items():
        value, _ = MEASURES[prefix]
        measures += [count_where(owed).label(f"{prefix}_population"), func.count(value).label(f"{prefix}_reached")]
        measures += [count_where(value <= limit).label(f"{prefix}_within_{name}") for name, limit in speed.THRESHOLDS]
    query = (select(key.label("key"), lf.c.touch_bucket, lf.c.route_bucket, *measures).where(where)
             .group_by(key, lf.c.touch_bucket, lf.c.route_bucket))
    names = [c.name for c in measures]
    blank = dict.fromkeys([*names, *(f"{p}_h{i}" for p in MEASURES for i in range(len(speed.BUCKETS)))], 0)
    out: dict[str | None, dict[str, int]] = {None: dict(blank)}  # None: the total, there even over no leads
    for r in (await conn.execute(query)).all():
        m = r._mapping
        for group in (out.setdefault(r.key, dict(blank)), out[None]):
            for name in names:
                group[name] += m[name]
            for prefix in MEASURES:
                bucket = m[f"{prefix}_bucket"]
                if bucket is not None:  # the duration's histogram: the leads that got there, by bucket
                    group[f"{prefix}_h{bucket}"] += m[f"{prefix}_reached"]
    return out


async def _percentiles(conn: AsyncConnection, where: Any, by: str, prefix: str) -> dict[str | None, tuple]:
    """(median, p90) of one duration per ``by`` value and in total (key None)."""
    await conn.execute(text("SET LOCAL work_mem = '64MB'"))  # the percentiles' sorts stay in memory
    value, _ = MEASURES[prefix]
    key = func.coalesce(lf.c[by], NONE_KEY)
    quantiles = (func.percentile_cont(0.5), func.percentile_cont(0.9))
    where = and_(where, value.is_not(None))
    groups = select(key.label("key"), *(q.within_group(value) for q in quantiles)).where(where).group_by(key)
    ordered = select(value.label("v")).where(where).order_by(value).subquery()
    total = select(*(q.within_group(ordered.c.v) for q in quantiles))
    out: dict[str | None, tuple] = {r[0]: (r[1], r[2]) for r in (await conn.execute(groups)).all()}
    out[None] = tuple((await conn.execute(total)).one())
    return out


async def speed_groups(engine: AsyncEngine, where: Any, by: str) -> list[dict[str, Any]]:
    """Per ``by`` value and in total (``is_total``): the first-touch and routing aggregates
    ``speed.from_aggregates`` reads."""

    counts, touch, route = await gather_on_one_snapshot(engine, (_counts, where, by),
                                                        (_percentiles, where, by, "touch"),
                                                        (_percentiles, where, by, "route"))
    rows = []
    for key, c in counts.items():
        row = {"key": key, "is_total": key is None, **{f"{p}_h{i}": 0 for p in MEASURES
                                                       for i in range(len(speed.BUCKETS))}, **c}
        for prefix, found in (("touch", touch), ("route", route)):
            row[f"{prefix}_median"], row[f"{prefix}_p90"] = found.get(key, (None, None))
        rows.append(row)
    return rows
