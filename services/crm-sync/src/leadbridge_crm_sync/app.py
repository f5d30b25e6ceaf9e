"""crm-sync's composition root: settings + destinations file -> deps (CRM clients) -> the service (consumer,
outbox relay, sender, gauges) -> HTTP (admin API, inbound CRM webhooks, /healthz, /readyz, /metrics)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from leadbridge_events.auth import exempt, require_scopes
from leadbridge_events.bootstrap import Service, Wiring
from leadbridge_events.runtime import ServiceRuntime
from sqlalchemy.ext.asyncio import AsyncSession

from . import tables
from .api import admin_router
from .config import ConfigError, CrmConfig, load_config
from .handlers import HANDLERS
from .hubspot import HubSpotClient
from .inbound_api import inbound_router
from .salesforce import SalesforceClient
from .sender import Sender, gauges_forever, utcnow
from .settings import CrmSyncSettings


@dataclass
class CrmDeps:
    """The destinations file and the clients of the CRMs it names; the sender once the runtime runs."""

    settings: CrmSyncSettings
    config: CrmConfig
    http: httpx.AsyncClient
    clock: Callable[[], datetime] = utcnow
    hubspot: dict[str, HubSpotClient] = field(default_factory=dict)
    salesforce: dict[str, SalesforceClient] = field(default_factory=dict)
    sender: Sender | None = None

    @property
    def adapters(self) -> dict[str, Any]:
        return {**{c.destination: c for c in self.hubspot.values()},
                **{c.destination: c for c in self.salesforce.values()}}


def build_deps(settings: CrmSyncSettings, *, config: CrmConfig | None = None, clock: Callable[[], datetime] = utcnow,
               transport: httpx.AsyncBaseTransport | None = None) -> CrmDeps:
    """The destinations file is read and validated here (ConfigError: the service must not start)."""
    config = config if config is not None else load_config(settings.config_file)
    http = httpx.AsyncClient(timeout=settings.http_timeout_seconds, transport=transport)
    return CrmDeps(settings, config, http, clock,
                   hubspot={name: HubSpotClient(name, portal, http) for name, portal in config.hubspot.items()},
                   salesforce={name: SalesforceClient(name, org, http) for name, org in config.salesforce.items()})


async def start_sender(runtime: ServiceRuntime, deps: CrmDeps) -> None:
    deps.sender = Sender(runtime.transaction, deps.settings, deps.http, deps.adapters, clock=deps.clock)


async def send_forever(runtime: ServiceRuntime, deps: CrmDeps) -> None:
    assert deps.sender is not None
    await deps.sender.run()


async def refresh_gauges(runtime: ServiceRuntime, deps: CrmDeps) -> None:
    await gauges_forever(runtime.sessions, deps.settings.gauge_refresh_seconds, deps.clock,
                         deps.settings.retention_days)


async def close_http(runtime: ServiceRuntime, deps: CrmDeps) -> None:
    await deps.http.aclose()


def admin_api(wiring: Wiring) -> APIRouter:
    """Behind an access token with ``crm:admin`` (the app itself already needs a valid token on every route)."""
    async def tx() -> AsyncIterator[AsyncSession]:
        async with wiring.runtime.sessions() as session, session.begin():
            yield session

    deps: CrmDeps = wiring.deps
    return admin_router(tx, require_scopes("crm:admin"), deps.clock, deps.settings.secret_rotation_grace_seconds)


def inbound_webhooks(wiring: Wiring) -> APIRouter:
    """What the CRMs post back: no token, their own signatures (inbound_hubspot, inbound_salesforce)."""
    deps: CrmDeps = wiring.deps
    inbound = inbound_router(lambda: wiring.runtime.transaction(), deps.config, deps.hubspot, deps.clock,
                             deps.settings.inbound_max_age_seconds)
    exempt(inbound)
    return inbound


def expose_clients(app: FastAPI, wiring: Wiring) -> None:
    app.state.config, app.state.hubspot, app.state.salesforce = (
        wiring.deps.config, wiring.deps.hubspot, wiring.deps.salesforce)


SERVICE = Service(
    name="crm-sync", settings=CrmSyncSettings, metadata=tables.metadata, migrations=tables.MIGRATIONS,
    handlers=HANDLERS, deps=build_deps,
    # the handlers' ctx.deps is the destinations file; a committed delivery wakes the sender at once
    runtime_options=lambda deps: {"deps": deps.config,
                                  "on_committed": lambda record: deps.sender.wake() if deps.sender else None},
    on_start=(start_sender,), tasks=(send_forever, refresh_gauges), on_stop=(close_http,),
    routers=(admin_api, inbound_webhooks), customize=expose_clients, startup_errors=(ConfigError,),
)


def create_app(settings: CrmSyncSettings | None = None, *, config: CrmConfig | None = None,
               clock: Callable[[], datetime] = utcnow, transport: httpx.AsyncBaseTransport | None = None,
               **runner_options: Any) -> FastAPI:
    """The app, with a destinations config, a clock or a fake CRM transport of the caller's (tests) if given."""
    settings = settings or CrmSyncSettings()
    deps = build_deps(settings, config=config, clock=clock, transport=transport)
    return SERVICE.create_app(settings, deps=deps, clock=clock, **runner_options)
