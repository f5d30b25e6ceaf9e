"""The SQL behind ``GET /v1/funnel``: the closed-loop funnel counted in PostgreSQL over ``lead_views``' flat
columns (``lead_row.row_of``), one row per ``by`` value and the total, plus the reasons per value. An
adapter; ``funnel.report_from_aggregates`` shapes the numbers into the same report ``funnel.funnel``
computes from facts (the tests hold the two to the same result).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .funnel import DIMENSIONS, NONE_KEY
from .store import gather_on_one_snapshot
from .store import lead_views as lf
from .views_store import Filters, count_where


def _window(since: datetime | None, until: datetime | None) -> Any:
    return Filters(since=since, until=until).where()  # the views' cohort: no test leads, captured in the window


def _key(by: str) -> Any:
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    return func.coalesce(func.nullif(lf.c[by], ""), NONE_KEY)  # as ``funnel.dimension_value``: '' is none too


async def funnel_aggregates(engine: AsyncEngine, *, by: str, now: datetime, limbo_after: timedelta,
                            since: datetime | None = None, until: datetime | None = None
                            ) -> tuple[list[dict[str, Any]], list[tuple[str, str, str, int]]]:
    """Counts per ``by`` value (one scan) and in total (``is_total``: their sums); and (key, kind, reason,
    count) for the rejected and lost reasons per value, from the closed leads' index. The two run
    concurrently on one snapshot."""
    counts, reasons = await gather_on_one_snapshot(engine, (_counts, by, now, limbo_after, since, until),
                                                   (_reasons, by, since, until))
    return counts, reasons


async def _counts(conn: AsyncConnection, by: str, now: datetime, limbo_after: timedelta, since: datetime | None,
                  until: datetime | None) -> list[dict[str, Any]]:
    key = _key(by)
    routed = lf.c.routed.is_(True)
    query = select(
        key.label("key"), func.count().label("captured"),
        count_where(lf.c.mql.is_(True)).label("mql"), count_where(lf.c.nurtured.is_(True)).label("nurtured"),
        count_where(routed).label("routed"), count_where(and_(routed, lf.c.within_sla.is_(True))).label("first_touch_within_sla"),
        count_where(lf.c.sla_at_risk.is_(True)).label("sla_at_risk"), count_where(lf.c.breached.is_(True)).label("sla_breached"),
        count_where(and_(routed, lf.c.touches == 0)).label("touches_0"),
        count_where(and_(routed, lf.c.touches.between(1, 3))).label("touches_1_3"),
        count_where(and_(routed, lf.c.touches >= 4)).label("touches_4"),
        count_where(lf.c.accepted.is_(True)).label("accepted"), count_where(lf.c.rejected.is_(True)).label("rejected"),
        count_where(lf.c.qualified.is_(True)).label("qualified"), count_where(lf.c.won.is_(True)).label("won"),
        func.coalesce(func.sum(lf.c.won_amount).filter(lf.c.won.is_(True)), 0.0).label("won_amount"),
        count_where(lf.c.lost.is_(True)).label("lost"),
        count_where(and_(lf.c.unowned.is_(True), lf.c.cohort_at <= now - limbo_after)).label("limbo"),
    ).where(_window(since, until)).group_by(key)
    rows = [{**r._mapping, "is_total": False} for r in (await conn.execute(query)).all()]
    names = [c.name for c in query.selected_columns if c.name != "key"]
    total = {name: sum((r[name] for r in rows), 0) for name in names}  # counts add up exactly
    return [*rows, {**total, "key": None, "is_total": True}]


async def _reasons(conn: AsyncConnection, by: str, since: datetime | None,
                   until: datetime | None) -> list[tuple[str, str, str, int]]:
    key = _key(by)
    rejected, lost = lf.c.rejected_reason, lf.c.lost_reason  # set exactly when rejected / lost
    sets = func.grouping_sets(tuple_(key, rejected), tuple_(key, lost))
    closed = select(key.label("key"), rejected, lost, func.grouping(rejected).label("g_r"), func.count().label("n")
                    ).where(_window(since, until), or_(lf.c.rejected.is_(True), lf.c.lost.is_(True))).group_by(sets)
    reasons = []
    for r in (await conn.execute(closed)).all():
        kind, why = ("rejected", r.rejected_reason) if r.g_r == 0 else ("lost", r.lost_reason)
        if why is not None:
            reasons.append((r.key, kind, why, r.n))
    return reasons
