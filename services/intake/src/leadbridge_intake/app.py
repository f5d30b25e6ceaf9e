"""The intake service's composition root: what the service is (``SERVICE``), and ``create_app(settings)``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from leadbridge_events.auth import exempt
from leadbridge_events.bootstrap import Service, Wiring
from leadbridge_events.http import install_error_handlers
from leadbridge_events.runtime import ServiceRuntime

from .api import admin, leads, ops, quarantine, webhooks
from .api.context import IntakeContext
from .api.errors import ApiError, api_error_handler, document_problem_bodies, request_validation_handler
from .fast_path import install as install_fast_path
from .fetcher import PlatformFetcher
from .group_commit import GroupCommitter
from .handlers import HANDLERS
from .keys import KeyCache
from .middleware import BodySizeLimit
from .ratelimit import RateLimiter
from .settings import IntakeSettings
from .tables import MIGRATIONS, metadata


def build_context(settings: IntakeSettings) -> IntakeContext:
    """What the HTTP handlers share (``app.state.ctx``); the runtime and the workers join it at start."""
    return IntakeContext(settings=settings, runtime=None, fetcher=None,  # type: ignore[arg-type]
                         # several workers: each takes its share, so that together they never exceed the limit
                         limiter=RateLimiter(settings.rate_limit_per_minute / settings.workers,
                                             max(1, settings.rate_limit_burst // settings.workers)),
                         keys=KeyCache(settings.api_key_cache_seconds, unknown_ttl=settings.unknown_key_cache_seconds),
                         webhook_limiter=RateLimiter(settings.webhook_rate_limit_per_minute / settings.workers,
                                                     max(1, settings.webhook_rate_limit_burst // settings.workers)))


async def start_workers(runtime: ServiceRuntime, ctx: IntakeContext) -> None:
    """The platform fetcher, and group commit (concurrent captures share one transaction, group_commit.py)."""
    ctx.runtime = runtime
    ctx.fetcher = PlatformFetcher(ctx.settings, runtime.transaction, lambda: ctx.clock())
    runtime.spawn(ctx.fetcher.run(), name="intake-fetcher")
    if ctx.settings.group_commit_max > 0:
        ctx.captures = GroupCommitter(runtime.engine, runtime.transaction,
                                      window_seconds=ctx.settings.group_commit_window_ms / 1000,
                                      max_group=ctx.settings.group_commit_max)
        runtime.spawn(ctx.captures.run(), name="intake-group-commit")


async def close_fetcher(runtime: ServiceRuntime, ctx: IntakeContext) -> None:
    if ctx.fetcher is not None:
        await ctx.fetcher.close()


def http_edge(app: FastAPI, wiring: Wiring) -> None:
    """Intake's own error bodies, auth exemptions, body limit and CORS."""
    app.state.ctx = wiring.deps
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    document_problem_bodies(app)
    # every route needs an access token, except the capture/follow-up (API keys) and webhook (platform
    # signatures) endpoints, which keep their own authentication, and the operational ones
    for own_auth in (leads.router, webhooks.router, ops.router):
        exempt(own_auth)
    install_error_handlers(app)  # the database down: 503 + Retry-After, never a 500
    app.add_middleware(BodySizeLimit, max_bytes=wiring.settings.max_body_bytes)
    # outermost, so that every answer (413 included) carries the CORS headers a browser needs to read it
    app.add_middleware(CORSMiddleware, allow_origins=wiring.settings.cors_origins,
                       allow_methods=["POST", "GET", "OPTIONS"],
                       allow_headers=["Content-Type", "X-API-Key", "Authorization", "Idempotency-Key"],
                       expose_headers=["Location", "Retry-After", "Idempotent-Replayed"])
    install_fast_path(app, wiring.settings.max_body_bytes)  # JSON POST /v1/leads without the layers above


def serving(settings: IntakeSettings) -> dict[str, Any]:
    """uvicorn's options: access lines would carry ?api_key= secrets; several workers share the work safely
    (README, "Several workers"); uvloop and httptools (uvicorn[standard]) are picked up by its defaults."""
    return {"proxy_headers": True, "access_log": False, "workers": settings.workers,
            "factory": "leadbridge_intake.app:app_from_env"}


SERVICE = Service(
    name="intake", settings=IntakeSettings, metadata=metadata, migrations=MIGRATIONS, handlers=HANDLERS,
    deps=build_context, on_start=(start_workers,), on_stop=(close_fetcher,),
    routers=(leads.router, webhooks.router, admin.router, quarantine.router, ops.router),
    customize=http_edge, operational_routes=False,  # ops.py: ready while the database is, Kafka or not
    serve_options=serving,  # engine without pre-ping (db.make_engine): capture_in_transaction retries a dead connection
    app_options={"edge_guard": False, "title": "LeadBridge intake", "version": "1.0.0",
                 "description": "Every lead from every channel, accepted once, never lost."},
)
def app_from_env() -> FastAPI:
    """One uvicorn worker process's app (INTAKE_WORKERS > 1)."""
    return SERVICE.app_from_env()


def create_app(settings: IntakeSettings | None = None, *, consume: bool = True, **runner_options: Any) -> FastAPI:
    """The FastAPI app; its lifespan runs the runtime (schema, outbox relay, consumer) and the fetcher.
    ``consume=False``: no consumer (tests of the HTTP side)."""
    service = SERVICE if consume else SERVICE.with_(  # its HTTP API still declares what it emits
        handlers=None, runtime_options=lambda ctx: {"emits": HANDLERS.emits})
    return service.create_app(settings, **runner_options)
