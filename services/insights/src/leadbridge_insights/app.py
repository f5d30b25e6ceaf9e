"""Insights' composition root: settings -> runtime (Kafka, Postgres, handlers) -> HTTP API and web page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from leadbridge_events.auth import protected_app
from leadbridge_events.http import add_operational_routes
from leadbridge_events.migrations import migrations_dir
from leadbridge_events.runtime import ServiceRuntime

from . import signin, store
from .funnel import funnel
from .handlers import HANDLERS
from .settings import InsightsSettings
from .views_api import build_views_router

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def build_runtime(settings: InsightsSettings, *, group_id: str | None = None, **runner_options: Any) -> ServiceRuntime:
    return ServiceRuntime(name="insights", settings=settings, metadata=store.metadata, handlers=HANDLERS,
                          group_id=group_id or settings.group_id, migrations=migrations_dir("leadbridge_insights"),
                          **runner_options)


def create_app(settings: InsightsSettings | None = None, *, clock: Clock = _utcnow, group_id: str | None = None,
               **runner_options: Any) -> FastAPI:
    settings = settings or InsightsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings, group_id=group_id, **runner_options)  # aiokafka needs the running loop
        app.state.runtime = runtime
        async with runtime.lifespan(app):
            yield

    # every route but the operational and sign-in ones needs insights:read (a bearer token or the page's session)
    app = protected_app(settings.auth, scopes=["insights:read"], title="LeadBridge insights", lifespan=lifespan)
    signin.install(app, settings)
    page = files("leadbridge_insights").joinpath("static/index.html").read_text(encoding="utf-8")

    add_operational_routes(app, lambda: app.state.runtime)
    app.include_router(build_views_router(lambda: app.state.runtime.engine, clock,
                                          lambda: timedelta(minutes=settings.limbo_after_minutes)))
    app.mount("/static", StaticFiles(packages=[("leadbridge_insights", "static")]), name="static")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        """The funnel and SLA compliance page for sales and marketing managers."""
        return HTMLResponse(page)

    @app.get("/v1/leads/{lead_id}/timeline")
    async def lead_timeline(lead_id: str) -> dict[str, Any]:
        """Every event of the lead in order, each with a one-line explanation of the decision."""
        async with app.state.runtime.engine.connect() as conn:
            events = await store.timeline_of(conn, lead_id)
        if not events:
            raise HTTPException(status_code=404, detail=f"no events for lead {lead_id}")
        return {"lead_id": lead_id, "events": events}

    @app.get("/v1/funnel")
    async def funnel_report(
        by: Literal["channel", "campaign", "source", "team", "rep"] = "channel",
        since: datetime | None = Query(default=None, description="Leads captured at or after (ISO 8601)."),
        until: datetime | None = Query(default=None, description="Leads captured before (ISO 8601)."),
    ) -> dict[str, Any]:
        """The closed-loop funnel of the leads captured in [since, until), one row per ``by`` value."""
        since, until = _aware(since), _aware(until)
        async with app.state.runtime.engine.connect() as conn:
            leads = await store.facts_in_window(conn, since, until)
        return funnel(leads, by=by, now=clock(), limbo_after=timedelta(minutes=settings.limbo_after_minutes),
                      since=since, until=until)

    return app
