"""Composition root: the watcher service -- its consumer and outbox relay, the timer loop, the gauges, /readyz."""

from __future__ import annotations

from leadbridge_events.bootstrap import Service
from leadbridge_events.runtime import ServiceRuntime

from . import gauges, tables
from .handlers import HANDLERS
from .policies import SlaConfig
from .settings import WatcherSettings
from .timer import TimerLoop


async def fire_due_deadlines(runtime: ServiceRuntime, config: SlaConfig) -> None:
    settings = runtime.settings
    assert isinstance(settings, WatcherSettings)
    await TimerLoop(runtime.transaction, batch_size=settings.timer_batch_size,
                    poll_seconds=settings.timer_poll_seconds, clock=runtime.clock,
                    workers=settings.timer_workers).run()


async def refresh_gauges(runtime: ServiceRuntime, config: SlaConfig) -> None:
    assert isinstance(runtime.settings, WatcherSettings)
    await gauges.run(runtime.engine, runtime.settings.gauge_refresh_seconds)


# no API of its own yet (/healthz, /readyz, /metrics): whatever is added later needs a token
SERVICE = Service(
    name="sla-watcher", settings=WatcherSettings, metadata=tables.metadata, migrations=tables.MIGRATIONS,
    handlers=HANDLERS, deps=lambda settings: settings.sla_config(),  # the SLA config: the handlers' ctx.deps
    tasks=(fire_due_deadlines, refresh_gauges),
    app_options={"title": "LeadBridge SLA watcher"},
)
create_app = SERVICE.create_app
main = SERVICE.main
