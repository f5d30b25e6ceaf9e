"""Insights' composition root: settings -> the service (Kafka, Postgres, handlers) -> HTTP API and web page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from leadbridge_events.bootstrap import Service, Wiring

from . import signin, store
from .funnel import report_from_aggregates
from .funnel_store import funnel_aggregates
from .handlers import HANDLERS
from .settings import InsightsSettings
from .views_api import build_views_router


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def page_and_sign_in(app: FastAPI, wiring: Wiring) -> None:
    """The managers' page signs in through the organisation's OpenID Connect provider (signin.py)."""
    signin.install(app, wiring.settings)
    app.mount("/static", StaticFiles(packages=[("leadbridge_insights", "static")]), name="static")
    page = files("leadbridge_insights").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        """The funnel and SLA compliance page for sales and marketing managers."""
        return HTMLResponse(page)


def views(wiring: Wiring) -> APIRouter:
    return build_views_router(lambda: wiring.runtime.engine, wiring.clock,
                              lambda: timedelta(minutes=wiring.settings.limbo_after_minutes))


def reports(wiring: Wiring) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/leads/{lead_id}/timeline")
    async def lead_timeline(lead_id: str) -> dict[str, Any]:
        """Every event of the lead in order, each with a one-line explanation of the decision."""
        async with wiring.runtime.engine.connect() as conn:
            events = await store.timeline_of(conn, lead_id)
        if not events:
            raise HTTPException(status_code=404, detail=f"no events for lead {lead_id}")
        return {"lead_id": lead_id, "events": events}

    @router.get("/v1/funnel")
    async def funnel_report(
        by: Literal["channel", "campaign", "source", "team", "rep"] = "channel",
        since: datetime | None = Query(default=None, description="Leads captured at or after (ISO 8601)."),
        until: datetime | None = Query(default=None, description="Leads captured before (ISO 8601)."),
    ) -> dict[str, Any]:
        """The closed-loop funnel of the leads captured in [since, until), one row per ``by`` value."""
        since, until = _aware(since), _aware(until)
        window = {"by": by, "now": wiring.now(), "since": since, "until": until,
                  "limbo_after": timedelta(minutes=wiring.settings.limbo_after_minutes)}
        counts, reasons = await funnel_aggregates(wiring.runtime.engine, **window)
        return report_from_aggregates(counts, reasons, **window)

    return router


SERVICE = Service(
    name="insights", settings=InsightsSettings, metadata=store.metadata, migrations=store.MIGRATIONS,
    handlers=HANDLERS,
    # every route but the operational and sign-in ones needs insights:read (a bearer token or the page's session)
    scopes=("insights:read",), customize=page_and_sign_in, routers=(views, reports),
)
create_app = SERVICE.create_app
