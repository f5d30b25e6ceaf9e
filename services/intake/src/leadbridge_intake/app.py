"""The intake service's composition root: ``create_app(settings)`` wires everything together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from leadbridge_events.auth import exempt, protected_app
from leadbridge_events.db import make_engine
from leadbridge_events.http import install_error_handlers
from leadbridge_events.migrations import migrations_dir
from leadbridge_events.runtime import ServiceRuntime

from .api import admin, leads, ops, quarantine, webhooks
from .api.context import IntakeContext
from .api.errors import ApiError, api_error_handler, document_problem_bodies, request_validation_handler
from .fetcher import PlatformFetcher
from .group_commit import GroupCommitter
from .handlers import HANDLERS
from .keys import KeyCache
from .middleware import BodySizeLimit
from .ratelimit import RateLimiter
from .settings import IntakeSettings
from .tables import metadata

SERVICE = "intake"


def create_app(settings: IntakeSettings | None = None, *, group_id: str | None = None, consume: bool = True,
               **runner_options: Any) -> FastAPI:
    """The FastAPI app; its lifespan runs the ServiceRuntime (schema, outbox relay, consumer) and the fetcher."""
    settings = settings or IntakeSettings()
    ctx = IntakeContext(settings=settings, runtime=None, fetcher=None,  # type: ignore[arg-type]
                        # several workers: each takes its share, so that together they never exceed the limit
                        limiter=RateLimiter(settings.rate_limit_per_minute / settings.workers,
                                            max(1, settings.rate_limit_burst // settings.workers)),
                        keys=KeyCache(settings.api_key_cache_seconds,
                                      unknown_ttl=settings.unknown_key_cache_seconds),
                        webhook_limiter=RateLimiter(settings.webhook_rate_limit_per_minute / settings.workers,
                                                    max(1, settings.webhook_rate_limit_burst // settings.workers)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # built here: Kafka clients need the running event loop
        # no pre-ping: it costs a round trip per request; a dead pooled connection (database restarted) is
        # handled by capture_in_transaction's retry and the pool's invalidation instead
        engine = make_engine(settings.database_url, pre_ping=False, lock_timeout_ms=settings.db_lock_timeout_ms,
                             statement_timeout_ms=settings.db_statement_timeout_ms)
        runtime = ServiceRuntime(name=SERVICE, settings=settings, metadata=metadata, engine=engine,
                                 handlers=HANDLERS if consume else None, emits=HANDLERS.emits, group_id=group_id,
                                 migrations=migrations_dir("leadbridge_intake"), **runner_options)
        ctx.runtime = app.state.runtime = runtime
        ctx.fetcher = PlatformFetcher(settings, runtime.transaction, lambda: ctx.clock())
        try:
            async with runtime.lifespan(app):
                runtime.spawn(ctx.fetcher.run(), name="intake-fetcher")
                if settings.group_commit_max > 0:
                    ctx.captures = GroupCommitter(engine, runtime.transaction,
                                                  window_seconds=settings.group_commit_window_ms / 1000,
                                                  max_group=settings.group_commit_max)
                    runtime.spawn(ctx.captures.run(), name="intake-group-commit")
                yield
        finally:
            await ctx.fetcher.close()

    # every route needs an access token, except the capture/follow-up (API keys) and webhook (platform
    # signatures) endpoints, which keep their own authentication, and the operational ones
    app = protected_app(settings.auth, edge_guard=False, title="LeadBridge intake", version="1.0.0",
                        lifespan=lifespan, description="Every lead from every channel, accepted once, never lost.")
    app.state.ctx = ctx
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    document_problem_bodies(app)
    for own_auth in (leads.router, webhooks.router, ops.router):
        exempt(own_auth)
    install_error_handlers(app)  # the database down: 503 + Retry-After, never a 500
    for router in (leads.router, webhooks.router, admin.router, quarantine.router, ops.router):
        app.include_router(router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # outermost, so that every answer (413 included) carries the CORS headers a browser needs to read it
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["POST", "GET", "OPTIONS"],
                       allow_headers=["Content-Type", "X-API-Key", "Authorization", "Idempotency-Key"],
                       expose_headers=["Location", "Retry-After", "Idempotent-Replayed"])
    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (``python -m leadbridge_intake`` with ``INTAKE_WORKERS`` > 1)."""
    from leadbridge_events.logs import configure_logging

    configure_logging("intake")
    return create_app(IntakeSettings())
