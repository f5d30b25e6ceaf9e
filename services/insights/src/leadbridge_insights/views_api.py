"""The HTTP API behind the managers' page: speed to lead, trends, funnel stages, rep load, live lists and
the lead search. Each view reads insights' own read model (``views_store``) and shapes it with a pure module.

Every view takes the same filters (``channel``, ``campaign``, ``source``, ``team``, ``rep``, ``since``,
``until``), so one query string describes what the page shows and can be shared as a link.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from . import load, speed, speed_store, stages, trends, views_store
from . import views_models as m
from .lead_row import STATUSES
from .views_store import Filters

Dimension = Literal["channel", "campaign", "source", "team", "rep"]


def unprocessable(message: str, param: str) -> HTTPException:
    """422 in the shape the OpenAPI document promises: ``{"detail": [{"loc", "msg", "type"}]}``."""
    return HTTPException(422, [{"loc": ["query", param], "msg": message, "type": "value_error"}])

def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def filters(
    channel: str | None = Query(None, description="Only this channel ('(none)': leads without one)."),
    campaign: str | None = Query(None, description="Only this campaign."),
    source: str | None = Query(None, description="Only this source (web_form, google, meta, ...)."),
    team: str | None = Query(None, description="Only leads whose latest assignment is to this team."),
    rep: str | None = Query(None, description="Only leads whose latest assignment is to this rep id."),
    since: datetime | None = Query(None, description="Leads captured at or after (ISO 8601; UTC if no offset)."),
    until: datetime | None = Query(None, description="Leads captured before (ISO 8601)."),
) -> Filters:
    since, until = _aware(since), _aware(until)
    if since and until and since >= until:
        raise unprocessable("since must be before until", "until")
    return Filters(channel, campaign, source, team, rep, since, until)


def build_views_router(engine: Callable[[], Any], clock: Callable[[], datetime],
                       limbo_after: Callable[[], timedelta]) -> APIRouter:
    """``engine``: the runtime's engine (looked up per request: the runtime starts with the app)."""
    api = APIRouter(prefix="/v1/views", tags=["managers' views"])

    def echo(f: Filters) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in f.__dict__.items()}

    @api.get("/speed", response_model=m.SpeedView,
             summary="Speed to lead: capture -> first touch and capture -> routed")
    async def speed_to_lead(by: Dimension = Query("channel", description="Group rows by this dimension."),
                            f: Filters = Depends(filters)) -> dict[str, Any]:
        """Median, p90 and the share within 5 minutes / 1 hour / 24 hours, with a histogram, per ``by`` value
        and in total. First touch: over routed leads (never touched = missed every threshold). Routed: over
        sales-ready leads (MQL or routed)."""
        groups = await speed_store.speed_groups(engine(), f.where(), by)
        touch = speed.report_from_aggregates(groups, "touch")
        route = speed.report_from_aggregates(groups, "route")
        return {"by": by, "filters": echo(f), "first_touch": touch, "routed": route}

    @api.get("/trends", response_model=m.TrendsView,
             summary="Trends per day or week")
    async def trend_lines(unit: Literal["day", "week"] = Query("day", description="Bucket size."),
                          f: Filters = Depends(filters)) -> dict[str, Any]:
        """Per bucket of capture time (the cohort): captured, MQL, routed, first touch within SLA and its %
        of routed, breached, accepted, rejected, won, lost. The range defaults to the last 30 days."""
        now = clock()
        until = f.until or now
        since = f.since or until - timedelta(days=30 if unit == "day" else 182)
        f = Filters(**{**f.__dict__, "since": since, "until": until})
        async with engine().connect() as conn:
            counts = await views_store.trend_counts(conn, f, unit)
        try:
            return {"filters": echo(f), **trends.series(counts, since=since, until=until, unit=unit)}
        except ValueError as exc:
            raise unprocessable(str(exc), "since") from exc

    @api.get("/funnel", response_model=m.FunnelView,
             summary="The funnel's stages with conversions, and the reasons ranked")
    async def funnel_stages(f: Filters = Depends(filters)) -> dict[str, Any]:
        """captured -> MQL -> routed -> touched -> accepted -> qualified -> won for the filtered cohort, each
        with its conversion from the stage before and from the top; rejected and lost reasons by count."""
        async with engine().connect() as conn:
            counts, why = await views_store.funnel_counts(conn, f)
        return {"filters": echo(f), "stages": stages.funnel_stages(counts), "counts": counts,
                "rejected_reasons": stages.ranked(why["rejected"]), "lost_reasons": stages.ranked(why["lost"])}

    @api.get("/load", response_model=m.LoadView,
             summary="Rep load now, and each pool's waiting list and overflows")
    async def rep_load(team: str | None = Query(None, description="Only this team's reps and pool."),
                       rep: str | None = Query(None, description="Only this rep.")) -> dict[str, Any]:
        """Per rep: open leads vs ``max_open``, new leads this local week vs ``weekly_cap``, availability now,
        breaches this week. Per pool: leads on the capacity waiting list and overflows this week. Caps and
        shifts are the roster the router last announced (``roster-changed``)."""
        now = clock()
        async with engine().connect() as conn:
            week_from = load.earliest_week_start(None, now) - timedelta(days=1)  # any zone's Monday is within
            data = await views_store.load_inputs(conn, week_from)
        reps = load.rep_load(data["roster"], open_by_rep=data["open"], assigned_hourly=data["assigned"],
                             breaches_hourly=data["breaches"], names=data["names"], teams=data["teams"], now=now)
        pools = load.pool_load(data["roster"], waiting=data["waiting"], overflows=data["overflows"], now=now)
        reps = [r for r in reps if (not team or r["team"] == team) and (not rep or r["rep"] == rep)]
        pools = [p for p in pools if not team or p["pool"] == team]
        return {"now": now.isoformat(), "roster_known": data["roster"] is not None, "reps": reps, "pools": pools}

    @api.get("/live", response_model=m.LiveView,
             summary="Lead limbo and SLA at risk, now")
    async def live(limit: int = Query(100, ge=1, le=500, description="Rows per list."),
                   f: Filters = Depends(filters)) -> dict[str, Any]:
        """Leads captured at least the limbo time ago that nobody owns (oldest first), and leads whose SLA is
        at risk or breached and not yet met, with owner and seconds left (negative: overdue)."""
        now, after = clock(), limbo_after()
        async with engine().connect() as conn:
            n_limbo, in_limbo = await views_store.limbo(conn, f, now, after, limit)
            n_risk, risky = await views_store.at_risk(conn, f, limit)
        for r in in_limbo:
            r["age_seconds"] = (now - datetime.fromisoformat(r["cohort_at"])).total_seconds()
        for r in risky:
            r["seconds_left"] = (datetime.fromisoformat(r["alert_due_at"]) - now).total_seconds()
        return {"now": now.isoformat(), "limbo_after_minutes": after.total_seconds() / 60,
                "limbo": {"total": n_limbo, "rows": in_limbo}, "at_risk": {"total": n_risk, "rows": risky}}

    @api.get("/leads", response_model=m.LeadsPage,
             summary="Find a lead")
    async def find_leads(q: str | None = Query(None, max_length=200,
                                               description="Part of the id, name, email, company or owner."),
                         status: str | None = Query(None, description=f"One of {', '.join(STATUSES)}."),
                         page: int = Query(1, ge=1), per_page: int = Query(25, ge=1, le=200),
                         f: Filters = Depends(filters)) -> dict[str, Any]:
        """A page of leads, newest first, with contact details (personal data: for signed-in managers)."""
        if status and status not in STATUSES:
            raise unprocessable(f"status must be one of {', '.join(STATUSES)}", "status")
        async with engine().connect() as conn:
            total, rows = await views_store.search(conn, f, q=(q or "").strip() or None, status=status,
                                                   limit=per_page, offset=(page - 1) * per_page)
        return {"total": total, "page": page, "per_page": per_page, "rows": rows}

    @api.get("/options", summary="The values each filter can take")
    async def options() -> dict[str, Any]:
        async with engine().connect() as conn:
            values = await views_store.dimension_values(conn)
        return {**values, "status": list(STATUSES)}

    return api
