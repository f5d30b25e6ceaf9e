"""One service scaffold, a composition root in the spirit of *Architecture Patterns with Python*'s
``bootstrap.py``: what a service is goes in, ``create_app()`` and ``main()`` come out.

```python
SERVICE = Service(name="router", settings=RouterSettings, metadata=db.metadata, migrations=db.MIGRATIONS,
                  handlers=HANDLERS, on_start=(roster_at_start,), tasks=(hold_scheduler,), routers=(roster_api,))
create_app = SERVICE.create_app  # and in __main__.py: sys.exit(SERVICE.main())
```

* ``deps(settings)`` builds the service's dependencies once, in ``create_app`` (a bad model or config file
  fails there, before anything starts); handlers reach them as ``ctx.deps``, routers as ``wiring.deps``;
  ``runtime.transaction()`` (HTTP handlers, timers) and ``ctx.now()`` use the service's ``clock``.
* ``tasks``: ``async def loop(runtime, deps)`` background loops, run with ``runtime.spawn`` for the runtime's
  lifetime; ``on_start``/``on_stop`` hooks run once, before the tasks and after the runtime stopped.
* ``routers``: ``(wiring) -> APIRouter``; ``wiring.runtime`` is the started runtime (built inside the app's
  lifespan, since Kafka clients need the running event loop).
* ``main(argv)``: JSON logs, settings (bad values: a one-line message and exit code 2), the app on
  ``settings.host:settings.port``. ``run(settings)`` runs the same service headless, until SIGTERM/SIGINT or
  until its task is cancelled, and stops cleanly either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from leadbridge_contracts.events import EventData
from sqlalchemy import MetaData

from .auth import protected_app
from .clock import Clock, utcnow
from .db import make_engine
from .express import run_express_lane
from .http import add_operational_routes
from .logs import configure_logging
from .migrations import Migrations, migrations_dir
from .priority import yield_cpu
from .registry import EventHandlers
from .runtime import ServiceRuntime
from .settings import ServiceSettings
from .shutdown import exit_zero_after_signals, stop_on_signals
from .tracing import instrument_app

Task = Callable[[ServiceRuntime, Any], Coroutine[Any, Any, None]]
Hook = Callable[[ServiceRuntime, Any], Awaitable[None]]


class Wiring:
    """What routers and app customisations get: settings, deps, the clock, and the runtime once started."""

    def __init__(self, service: Service, settings: ServiceSettings, deps: Any, clock: Clock) -> None:
        self.service, self.settings, self.deps, self.clock = service, settings, deps, clock
        self._runtime: ServiceRuntime | None = None

    @property
    def runtime(self) -> ServiceRuntime:
        if self._runtime is None:
            raise RuntimeError(f"{self.service.name} is not started (its runtime starts in the app's lifespan)")
        return self._runtime

    def now(self) -> datetime:
        return self.clock()


# Serving processes (``main()``, a uvicorn worker's ``app_from_env()``) tune the collector once started; tests,
# which build many apps in one process, do not. Young generation every 20,000 allocations instead of 700.
SERVING_GC_THRESHOLD = (20_000, 20, 20)
_SERVING = threading.Event()


def tune_gc_for_serving() -> None:
    """Everything alive once a service has started (modules, models, schemas, compiled SQL, the app, its clients)
    never becomes garbage: move it out of the cyclic collector's reach (``gc.freeze``) and make young
    collections rarer. A batch or a request allocates many short-lived objects; with the defaults, collections
    over the ~140,000-160,000 long-lived objects took 11% of intake's CPU under wrk and ~15% of scoring's and
    the router's during a drain (py-spy; process CPU per lead 0.92 -> 0.63 ms for intake, 0.258 -> 0.219 ms
    for scoring, 0.378 -> 0.322 ms for the router)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLD)


@dataclass(frozen=True)
class Service:
    """Everything that makes one service; see the module docstring."""

    name: str
    settings: type[ServiceSettings]
    metadata: MetaData
    migrations: Migrations | str | Path | None = None  # the service's MIGRATIONS, its package, or the folder
    handlers: EventHandlers | None = None  # handlers.py's HANDLERS: what it consumes and emits
    deps: Callable[[Any], Any] | None = None  # settings -> the service's dependencies
    tasks: Sequence[Task] = ()
    on_start: Sequence[Hook] = ()
    on_stop: Sequence[Hook] = ()
    routers: Sequence[APIRouter | Callable[[Wiring], APIRouter]] = ()  # a router, or (wiring) -> one
    customize: Callable[[FastAPI, Wiring], None] | None = None  # middleware, mounts, error handlers, ...
    scopes: Sequence[str] = ()  # what every route needs besides a valid token (protected_app)
    app_options: Mapping[str, Any] = field(default_factory=dict)  # FastAPI/protected_app keyword arguments
    runtime_options: Callable[[Any], Mapping[str, Any]] | None = None  # deps -> ServiceRuntime keyword arguments
    engine_options: Mapping[str, Any] = field(default_factory=dict)  # make_engine keyword arguments
    # uvicorn.run keyword arguments, or settings -> them; several workers: "factory": "pkg.app:app_from_env"
    serve_options: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] = field(default_factory=dict)
    startup_errors: tuple[type[Exception], ...] = ()  # a bad file: main prints it and exits 2
    operational_routes: bool = True  # /healthz, /readyz, /metrics and the 503 error handlers (http.py)
    clock: Clock = utcnow
    # event types whose first-of-lead records an express lane handles ahead of a backlog (express.py)
    express: Sequence[type[EventData]] = ()

    def with_(self, **changes: Any) -> Service:
        return dataclasses.replace(self, **changes)

    # -- the pieces ------------------------------------------------------------------------------

    def build_runtime(self, settings: ServiceSettings, deps: Any = None, *, clock: Clock | None = None,
                      **runner_options: Any) -> ServiceRuntime:
        """The service's ``ServiceRuntime`` (call it on the running loop); tests add runner options."""
        options: dict[str, Any] = dict(self.runtime_options(deps) if self.runtime_options else {})
        options.update(runner_options)
        options.setdefault("group_id", settings.group_id or self.name)
        options.setdefault("deps", deps)  # what handlers reach as ctx.deps
        options.setdefault("clock", clock or self.clock)
        if self.engine_options:
            options.setdefault("engine", make_engine(
                settings.database_url, lock_timeout_ms=settings.db_lock_timeout_ms,
                statement_timeout_ms=settings.db_statement_timeout_ms, **self.engine_options))
        return ServiceRuntime(name=self.name, settings=settings, metadata=self.metadata, handlers=self.handlers,
                              migrations=self._migrations_path(), **options)

    def _migrations_path(self) -> Path | None:
        if isinstance(self.migrations, Migrations):
            return self.migrations.versions
        if self.migrations is None or isinstance(self.migrations, Path):
            return self.migrations
        return migrations_dir(self.migrations)

    @contextlib.asynccontextmanager
    async def running(self, settings: ServiceSettings | None = None, *, deps: Any = None, clock: Clock | None = None,
                      **runner_options: Any) -> AsyncIterator[ServiceRuntime]:
        """The service started in-process without HTTP (tests, embedding): ``async with SERVICE.running(s) as rt``."""
        async with self._running(self.wire(settings, deps=deps, clock=clock), **runner_options) as runtime:
            yield runtime

    @contextlib.asynccontextmanager
    async def _running(self, wiring: Wiring, **runner_options: Any) -> AsyncIterator[ServiceRuntime]:
        """The runtime started, the hooks run and the tasks spawned; on the way out all of it stopped."""
        runtime = self.build_runtime(wiring.settings, wiring.deps, clock=wiring.clock, **runner_options)
        wiring._runtime = runtime
        try:
            async with runtime.lifespan():
                for hook in self.on_start:
                    await hook(runtime, wiring.deps)
                if _SERVING.is_set():
                    tune_gc_for_serving()
                for task in self.tasks:
                    runtime.spawn(task(runtime, wiring.deps), name=f"{self.name}-{task.__name__}")
                if self.express and self.handlers is not None and wiring.settings.express.enabled:
                    runtime.spawn(run_express_lane(runtime, self.express), name=f"{self.name}-express")
                yield runtime
        finally:
            for hook in self.on_stop:
                await hook(runtime, wiring.deps)

    def wire(self, settings: ServiceSettings | None = None, *, deps: Any = None, clock: Clock | None = None) -> Wiring:
        settings = settings if settings is not None else self.settings()
        if deps is None and self.deps is not None:
            deps = self.deps(settings)
        return Wiring(self, settings, deps, clock or self.clock)

    # -- what comes out ----------------------------------------------------------------------------

    def create_app(self, settings: ServiceSettings | None = None, *, deps: Any = None, clock: Clock | None = None,
                   **runner_options: Any) -> FastAPI:
        """The service's FastAPI app: the runtime runs in its lifespan; ``runner_options`` (tests: a group id,
        ``auto_offset_reset``, ...) go to ``ServiceRuntime``."""
        wiring = self.wire(settings, deps=deps, clock=clock)

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with self._running(wiring, **runner_options) as runtime:
                app.state.runtime = runtime
                yield

        app = protected_app(wiring.settings.auth, scopes=self.scopes, lifespan=lifespan,
                            **{"title": f"LeadBridge {self.name}", **self.app_options})
        app.state.wiring, app.state.deps = wiring, wiring.deps
        instrument_app(app)  # a span per HTTP request, when tracing is on (tracing.py)
        if self.customize is not None:
            self.customize(app, wiring)
        if self.operational_routes:
            add_operational_routes(app, lambda: wiring.runtime)
        for router in self.routers:
            app.include_router(router if isinstance(router, APIRouter) else router(wiring))
        return app

    def app_from_env(self) -> FastAPI:
        """The app of one uvicorn worker process (``serve_options``: ``workers`` and ``factory``)."""
        _SERVING.set()
        configure_logging(self.name)
        return self.create_app()

    async def run(self, settings: ServiceSettings | None = None, **runner_options: Any) -> None:
        """Run headless (no HTTP) until SIGTERM/SIGINT or cancellation; either way stop cleanly."""
        stop = asyncio.Event()
        with stop_on_signals(stop.set):
            async with self.running(settings, **runner_options):
                await stop.wait()

    def main(self, argv: Sequence[str] | None = None) -> int:
        """``python -m <package>``: logs, settings, then the app until SIGTERM. Returns the exit code."""
        import uvicorn

        _SERVING.set()  # a serving process: tune the garbage collector once started
        configure_logging(self.name)  # and tracing, if the OTEL_* variables turn it on (before the app is built)
        cannot_start: tuple[type[Exception], ...] = (ValueError, *self.startup_errors)  # ValidationError too
        try:
            settings = self.settings()
            app = self.create_app(settings)
        except cannot_start as exc:  # bad settings or files: say which, exit 2
            print(f"{self.name} cannot start: {exc}", file=sys.stderr)
            return 2
        yield_cpu(settings.cpu_niceness)  # a read model yields the cores to the routing path (priority.py)
        options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_config": None,
                                   "timeout_keep_alive": settings.http_keep_alive_seconds,
                                   **(self.serve_options(settings) if callable(self.serve_options)
                                      else self.serve_options)}
        with exit_zero_after_signals():
            if options.get("workers", 1) > 1:  # each worker process builds its app: ``factory`` names it
                uvicorn.run(options.pop("factory"), factory=True, **options)
            else:
                options.pop("factory", None)
                uvicorn.run(app, **options)
        return 0

