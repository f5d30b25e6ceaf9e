"""Composition root: the backbone runtime (consumer + outbox relay), the timer loop, the gauges, FastAPI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from leadbridge_events.auth import protected_app
from leadbridge_events.clock import utcnow
from leadbridge_events.http import add_operational_routes
from leadbridge_events.logs import configure_logging
from leadbridge_events.migrations import migrations_dir
from leadbridge_events.runtime import ServiceRuntime

from . import gauges, tables
from .handlers import HANDLERS
from .policies import SlaConfig
from .settings import WatcherSettings
from .timer import TimerLoop

NAME = "sla-watcher"


class Watcher:
    """One watcher process: consume routings and touches, fire due deadlines, keep the gauges fresh."""

    def __init__(self, settings: WatcherSettings | None = None, *, config: SlaConfig | None = None,
                 group_id: str | None = None, clock: Callable[[], datetime] = utcnow, **runner_options: Any):
        self.settings = settings or WatcherSettings()
        self.config = config or self.settings.sla_config()
        self.runtime = ServiceRuntime(name=NAME, settings=self.settings, metadata=tables.metadata,
                                      handlers=HANDLERS, deps=self.config, clock=clock, group_id=group_id,
                                      migrations=migrations_dir("leadbridge_sla_watcher"), **runner_options)
        self.timer = TimerLoop(self.runtime.transaction, batch_size=self.settings.timer_batch_size,
                               poll_seconds=self.settings.timer_poll_seconds, clock=clock,
                               workers=self.settings.timer_workers)

    async def start(self) -> None:
        await self.runtime.start()  # creates the schema first: the timer needs its table
        self.runtime.spawn(self.timer.run(), name="sla-timer")
        self.runtime.spawn(gauges.run(self.runtime.engine, self.settings.gauge_refresh_seconds), name="sla-gauges")

    async def stop(self) -> None:
        await self.runtime.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def create_app(settings: WatcherSettings | None = None, **watcher_options: Any) -> FastAPI:
    """The HTTP face (/healthz, /readyz, /metrics); the watcher is built inside the lifespan, on the loop."""
    settings = settings or WatcherSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = Watcher(settings, **watcher_options)
        app.state.watcher = watcher
        async with watcher.lifespan(app):
            yield

    # no API of its own yet: whatever is added later needs a token
    app = protected_app(settings.auth, title="LeadBridge SLA watcher", lifespan=lifespan)

    add_operational_routes(app, lambda: app.state.watcher.runtime)

    return app


def main() -> None:
    import uvicorn

    configure_logging(NAME)
    settings = WatcherSettings()
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
