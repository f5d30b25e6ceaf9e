"""Composition root: settings, runtime (Kafka consumer + outbox relay), the roster API, the hold scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from leadbridge_events.auth import protected_app, scopes_by_method
from leadbridge_events.clock import Clock, utcnow
from leadbridge_events.http import add_operational_routes
from leadbridge_events.locks import LockClass, xact_lock
from leadbridge_events.migrations import migrations_dir
from leadbridge_events.runtime import ServiceRuntime
from sqlalchemy import func, select

from . import db, handlers, roster_announcer, roster_io, scheduler
from .api import build_router
from .settings import RouterSettings

log = logging.getLogger("leadbridge.router")


def build_runtime(settings: RouterSettings, *, clock: Clock = utcnow, **runner_options: Any) -> ServiceRuntime:
    runner_options.setdefault("group_id", settings.group_id)
    return ServiceRuntime(name="router", settings=settings, metadata=db.metadata, handlers=handlers.HANDLERS,
                          clock=clock,
                          migrations=migrations_dir("leadbridge_router"), **runner_options)


async def seed_roster(runtime: ServiceRuntime, path: str) -> None:
    """Import the roster file once, when the database has no teams yet."""
    async with runtime.transaction() as tx:
        await xact_lock(tx.session, LockClass.ROUTER_SEED, "roster")
        if (await tx.session.execute(select(func.count()).select_from(db.teams))).scalar():
            return
        roster = roster_io.parse_roster_text(Path(path).read_text())
        await roster_io.save_roster(tx.session, roster, tx.now(), tx.emit)  # no open leads yet: nothing re-routed
        log.info("roster imported", extra={"file": path, "teams": len(roster.teams), "reps": len(roster.reps)})


def create_app(settings: RouterSettings | None = None, *, clock: Clock = utcnow, **runner_options: Any) -> FastAPI:
    settings = settings or RouterSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings, clock=clock, **runner_options)  # aiokafka needs the running loop
        app.state.runtime = runtime
        async with runtime.lifespan(app):
            if settings.roster_file:
                await seed_roster(runtime, settings.roster_file)
            await roster_announcer.announce_at_start(runtime.transaction)
            runtime.spawn(scheduler.run_hold_scheduler(runtime.transaction, runtime.clock, settings.hold_poll_seconds),
                          name="router-hold-scheduler")
            yield

    app = protected_app(settings.auth, title="LeadBridge router", lifespan=lifespan)
    app.include_router(build_router(lambda: app.state.runtime.transaction()),
                       dependencies=[Depends(scopes_by_method(read="roster:read", write="roster:write"))])

    add_operational_routes(app, lambda: app.state.runtime)

    return app
