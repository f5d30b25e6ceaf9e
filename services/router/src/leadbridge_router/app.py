"""Composition root: the router service -- its consumer and outbox relay, the roster API, the hold scheduler."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from leadbridge_contracts.events import LeadScored
from leadbridge_events.auth import scopes_by_method
from leadbridge_events.bootstrap import Service, Wiring
from leadbridge_events.locks import LockClass, xact_lock
from leadbridge_events.runtime import ServiceRuntime
from sqlalchemy import func, select

from . import db, handlers, roster_announcer, roster_io, scheduler
from .api import build_router
from .settings import RouterSettings

log = logging.getLogger("leadbridge.router")


async def seed_roster(runtime: ServiceRuntime, path: str) -> None:
    """Import the roster file once, when the database has no teams yet."""
    async with runtime.transaction() as tx:
        await xact_lock(tx.session, LockClass.ROUTER_SEED, "roster")
        if (await tx.session.execute(select(func.count()).select_from(db.teams))).scalar():
            return
        roster = roster_io.parse_roster_text(Path(path).read_text())
        await roster_io.save_roster(tx.session, roster, tx.now(), tx.emit)  # no open leads yet: nothing re-routed
        log.info("roster imported", extra={"file": path, "teams": len(roster.teams), "reps": len(roster.reps)})


async def roster_at_start(runtime: ServiceRuntime, deps: Any) -> None:
    """The roster file seeded (first start only), and the roster announced to the services that keep a copy."""
    if runtime.settings.roster_file:
        await seed_roster(runtime, runtime.settings.roster_file)
    await roster_announcer.announce_at_start(runtime.transaction)


async def hold_scheduler(runtime: ServiceRuntime, deps: Any) -> None:
    await scheduler.run_hold_scheduler(runtime.transaction, runtime.clock, runtime.settings.hold_poll_seconds)


def roster_api(wiring: Wiring) -> APIRouter:
    api = APIRouter(dependencies=[Depends(scopes_by_method(read="roster:read", write="roster:write"))])
    api.include_router(build_router(lambda: wiring.runtime.transaction()))
    return api


SERVICE = Service(
    name="router", settings=RouterSettings, metadata=db.metadata, migrations=db.MIGRATIONS,
    handlers=handlers.HANDLERS,
    on_start=(roster_at_start,), tasks=(hold_scheduler,), routers=(roster_api,),
    express=(LeadScored,),  # a new lead's first score is routed at once, even behind a backlog (express lane)
)
create_app = SERVICE.create_app
