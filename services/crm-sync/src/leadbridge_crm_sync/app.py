"""crm-sync's composition root: settings + destinations file -> runtime (consumer, outbox relay), sender,
gauges -> HTTP (admin API, inbound CRM webhooks, /healthz, /readyz, /metrics)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from leadbridge_events.auth import exempt, protected_app, require_scopes
from leadbridge_events.http import add_operational_routes
from leadbridge_events.migrations import migrations_dir
from leadbridge_events.runtime import ServiceRuntime
from sqlalchemy.ext.asyncio import AsyncSession

from . import tables
from .api import admin_router
from .config import CrmConfig, load_config
from .handlers import HANDLERS
from .hubspot import HubSpotClient
from .inbound_api import inbound_router
from .salesforce import SalesforceClient
from .sender import Sender, gauges_forever, utcnow
from .settings import CrmSyncSettings

NAME = "crm-sync"


def admin_guard(settings: CrmSyncSettings) -> Callable[..., Any]:
    """The one dependency every admin route sits behind: an access token with ``crm:admin``
    (leadbridge_events.auth; the app itself already needs a valid token on every route)."""
    return require_scopes("crm:admin")


def create_app(settings: CrmSyncSettings | None = None, *, config: CrmConfig | None = None,
               clock: Callable[[], datetime] = utcnow, group_id: str | None = None,
               transport: httpx.AsyncBaseTransport | None = None, **runner_options: Any) -> FastAPI:
    """The app; the destinations file is read and validated here (ConfigError: the service must not start)."""
    settings = settings or CrmSyncSettings()
    config = config if config is not None else load_config(settings.config_file)
    http = httpx.AsyncClient(timeout=settings.http_timeout_seconds, transport=transport)
    hubspot = {name: HubSpotClient(name, portal, http) for name, portal in config.hubspot.items()}
    salesforce = {name: SalesforceClient(name, org, http) for name, org in config.salesforce.items()}
    adapters = {**{c.destination: c for c in hubspot.values()}, **{c.destination: c for c in salesforce.values()}}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sender_ref: list[Sender] = []
        runtime = ServiceRuntime(name=NAME, settings=settings, metadata=tables.metadata, handlers=HANDLERS, deps=config, clock=clock,
                                 group_id=group_id or settings.group_id,
                                 migrations=migrations_dir("leadbridge_crm_sync"),
                                 on_committed=lambda record: sender_ref[0].wake() if sender_ref else None,
                                 **runner_options)
        sender = Sender(runtime.transaction, settings, http, adapters, clock=clock)
        sender_ref.append(sender)
        app.state.runtime, app.state.sender = runtime, sender
        async with runtime.lifespan(app):
            runtime.spawn(sender.run(), name="crm-sender")
            runtime.spawn(gauges_forever(runtime.sessions, settings.gauge_refresh_seconds, clock,
                                         settings.retention_days), name="crm-gauges")
            try:
                yield
            finally:
                await http.aclose()

    # every route needs an access token, except the CRMs' inbound webhooks (their own signatures) and ops
    app = protected_app(settings.auth, title="LeadBridge crm-sync", lifespan=lifespan)
    app.state.config, app.state.hubspot, app.state.salesforce = config, hubspot, salesforce
    add_operational_routes(app, lambda: app.state.runtime)

    async def tx(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.app.state.runtime.sessions() as session, session.begin():
            yield session

    app.include_router(admin_router(tx, admin_guard(settings), clock, settings.secret_rotation_grace_seconds))
    inbound = inbound_router(lambda: app.state.runtime.transaction(), config, hubspot, clock,
                             settings.inbound_max_age_seconds)
    exempt(inbound)
    app.include_router(inbound)
    return app
