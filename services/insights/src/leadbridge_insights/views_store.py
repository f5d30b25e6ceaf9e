"""The SQL behind the managers' views, on ``lead_views``' flat columns (see ``lead_row``). An adapter: it
filters and aggregates in PostgreSQL and hands plain numbers to the pure modules (speed, trends, stages,
load). Every query is bounded: aggregates, or lists with a LIMIT on an indexed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from .store import lead_search, pool_overflows, roster, sla_breaches
from .store import lead_views as lf

DIMENSIONS = ("channel", "campaign", "source", "team", "rep")
NONE_KEY = "(none)"
STATUS_COLUMNS = ("lead_id", "name", "email", "company", "status", "channel", "campaign", "source", "team", "rep",
                  "rep_name", "cohort_at")


@dataclass(frozen=True)
class Filters:
    """The page's filters: exact dimension values and the capture window [since, until)."""

    channel: str | None = None
    campaign: str | None = None
    source: str | None = None
    team: str | None = None
    rep: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, *, dates: bool = True) -> Any:
        conds = [lf.c.is_test.is_(False)]
        for name in DIMENSIONS:
            value = getattr(self, name)
            if value:
                conds.append(lf.c[name].is_(None) if value == NONE_KEY else lf.c[name] == value)
        if dates and self.since is not None:
            conds.append(lf.c.cohort_at >= self.since)
        if dates and self.until is not None:
            conds.append(lf.c.cohort_at < self.until)
        return and_(*conds)


def count_where(cond: Any) -> Any:
    """``count(*) FILTER (WHERE cond)``."""
    return func.count().filter(cond)


def _measures() -> list[Any]:
    return [func.count().label("captured"), count_where(lf.c.mql_at.is_not(None)).label("mql"),
            count_where(lf.c.routed.is_(True)).label("routed"),
            count_where(and_(lf.c.routed.is_(True), lf.c.first_touch_at.is_not(None))).label("touched"),
            count_where(lf.c.within_sla.is_(True)).label("within_sla"), count_where(lf.c.breached.is_(True)).label("breached"),
            count_where(lf.c.accepted.is_(True)).label("accepted"), count_where(lf.c.rejected.is_(True)).label("rejected"),
            count_where(lf.c.qualified.is_(True)).label("qualified"), count_where(lf.c.won.is_(True)).label("won"),
            count_where(lf.c.lost.is_(True)).label("lost"), func.coalesce(func.sum(lf.c.won_amount), 0).label("won_amount")]


async def trend_counts(conn: AsyncConnection, f: Filters, unit: str) -> dict[datetime, dict[str, int]]:
    start = func.date_trunc(unit, func.timezone("UTC", lf.c.cohort_at)).label("start")
    rows = (await conn.execute(select(start, *_measures()).where(f.where()).group_by(start))).all()
    return {r.start.replace(tzinfo=UTC): dict(r._mapping) for r in rows}


async def funnel_counts(conn: AsyncConnection, f: Filters) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """The cohort's counts, and the rejected and lost reasons with their counts, in one scan: grouped by
    the two reasons (a reason is set exactly when the lead was rejected / lost), then added up here."""
    query = (select(lf.c.rejected_reason, lf.c.lost_reason, *_measures()).where(f.where())
             .group_by(lf.c.rejected_reason, lf.c.lost_reason))
    counts: dict[str, Any] = dict.fromkeys([c.name for c in _measures()], 0)
    why: dict[str, dict[str, int]] = {"rejected": {}, "lost": {}}
    for r in (await conn.execute(query)).all():
        m = r._mapping
        for name in counts:
            counts[name] += m[name]
        for kind in ("rejected", "lost"):
            if m[f"{kind}_reason"] is not None:
                why[kind][m[f"{kind}_reason"]] = why[kind].get(m[f"{kind}_reason"], 0) + m[kind]
    return counts, why


async def load_inputs(conn: AsyncConnection, week_from: datetime) -> dict[str, Any]:
    """Open leads per rep, assignments and breaches per rep and hour since ``week_from``, the capacity waiting
    list and overflows per pool, and the announced roster."""
    opened = (await conn.execute(
        select(lf.c.rep, func.count(), func.max(lf.c.rep_name), func.max(lf.c.team))
        .where(lf.c.is_open.is_(True), lf.c.is_test.is_(False)).group_by(lf.c.rep))).all()
    hour = func.date_trunc("hour", lf.c.assigned_at)
    assigned = (await conn.execute(
        select(lf.c.rep, hour, func.count(), func.max(lf.c.rep_name), func.max(lf.c.team))
        .where(lf.c.assigned_at >= week_from, lf.c.rep.is_not(None), lf.c.is_test.is_(False))
        .group_by(lf.c.rep, hour))).all()
    b_hour = func.date_trunc("hour", sla_breaches.c.fired_at)
    breaches = (await conn.execute(
        select(sla_breaches.c.assignee_id, b_hour, func.count())
        .where(sla_breaches.c.fired_at >= week_from, sla_breaches.c.assignee_id.is_not(None))
        .group_by(sla_breaches.c.assignee_id, b_hour))).all()
    waiting = (await conn.execute(
        select(lf.c.waiting_pool, func.count(), func.min(lf.c.waiting_since))
        .where(lf.c.waiting_pool.is_not(None), lf.c.is_test.is_(False)).group_by(lf.c.waiting_pool))).all()
    overflows = (await conn.execute(
        select(pool_overflows.c.pool, pool_overflows.c.outcome, func.count())
        .where(pool_overflows.c.occurred_at >= week_from).group_by(pool_overflows.c.pool, pool_overflows.c.outcome)
    )).all()
    announced = (await conn.execute(select(roster.c.data))).scalar()
    out: dict[str, Any] = {"roster": announced, "open": {}, "assigned": {}, "breaches": {}, "names": {}, "teams": {},
                           "waiting": {}, "overflows": {}}
    for rep, n, name, team in opened:
        out["open"][rep] = n
        out["names"][rep], out["teams"][rep] = name, team
    for rep, at, n, name, team in assigned:
        out["assigned"].setdefault(rep, []).append((at, n))
        out["names"].setdefault(rep, name)
        out["teams"].setdefault(rep, team)
    for rep, at, n in breaches:
        out["breaches"].setdefault(rep, []).append((at, n))
    out["waiting"] = {pool: (n, oldest) for pool, n, oldest in waiting}
    for pool, outcome, n in overflows:
        out["overflows"].setdefault(pool, {})[outcome] = n
    return out


def _row(r: Any) -> dict[str, Any]:
    out = dict(r._mapping)
    for k, v in out.items():
        if isinstance(v, datetime):
            out[k] = v.isoformat()
    return out


async def limbo(conn: AsyncConnection, f: Filters, now: datetime, after: timedelta, limit: int) -> tuple[int, list]:
    cond = and_(f.where(dates=False), lf.c.unowned.is_(True), lf.c.cohort_at <= now - after)
    total = (await conn.execute(select(func.count()).where(cond))).scalar_one()
    rows = (await conn.execute(select(*(lf.c[c] for c in STATUS_COLUMNS)).where(cond)
                               .order_by(lf.c.cohort_at, lf.c.lead_id).limit(limit))).all()
    return total, [_row(r) for r in rows]


async def at_risk(conn: AsyncConnection, f: Filters, limit: int) -> tuple[int, list]:
    cond = and_(f.where(dates=False), lf.c.alert_state.is_not(None))
    total = (await conn.execute(select(func.count()).where(cond))).scalar_one()
    rows = (await conn.execute(
        select(*(lf.c[c] for c in STATUS_COLUMNS), lf.c.alert_state, lf.c.alert_kind, lf.c.alert_due_at,
               lf.c.alert_owner).where(cond).order_by(lf.c.alert_due_at, lf.c.lead_id).limit(limit))).all()
    return total, [_row(r) for r in rows]


def _like(q: str) -> str:
    return "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search(conn: AsyncConnection, f: Filters, *, q: str | None, status: str | None, limit: int,
                 offset: int) -> tuple[int, list]:
    """Leads matching ``q`` (id, name, email, company or owner, any part) and ``status``, newest first."""
    cond = and_(f.where(), lf.c.status == status if status else true())
    if q:  # the text in its own table, under a trigram index (``store.lead_search``)
        cond = and_(cond, lf.c.lead_id.in_(select(lead_search.c.lead_id).where(lead_search.c.search.like(_like(q)))))
    total = (await conn.execute(select(func.count()).where(cond))).scalar_one()
    rows = (await conn.execute(select(*(lf.c[c] for c in STATUS_COLUMNS)).where(cond)
                               .order_by(lf.c.cohort_at.desc(), lf.c.lead_id).limit(limit).offset(offset))).all()
    return total, [_row(r) for r in rows]


async def dimension_values(conn: AsyncConnection, limit: int = 200) -> dict[str, list[str]]:
    """The values each filter can take (most common first), for the page's pickers: one scan grouped by
    all five dimensions at once, each one's counts added up here."""
    cols = [lf.c[name] for name in DIMENSIONS]
    query = select(*cols, func.count().label("n")).where(lf.c.is_test.is_(False)).group_by(*cols)
    found: dict[str, dict[str, int]] = {name: {} for name in DIMENSIONS}
    for r in (await conn.execute(query)).all():
        m = r._mapping
        for name in DIMENSIONS:
            if m[name] is not None:
                found[name][m[name]] = found[name].get(m[name], 0) + m["n"]
    return {name: [v for _, v in sorted((-n, v) for v, n in values.items())[:limit]]
            for name, values in found.items()}
