"""The intake service's composition root: ``create_app(settings)`` wires everything together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import create_async_engine

from leadbridge_events.runtime import ServiceRuntime

from .api import admin, leads, ops, webhooks
from .api.context import IntakeContext
from .api.errors import ApiError, api_error_handler, request_validation_handler
from .fetcher import PlatformFetcher
from .handlers import HANDLERS
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
                        limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # built here: Kafka clients need the running event loop
        # hide_parameters: database errors in logs never carry the emails and phones of a statement
        engine = create_async_engine(settings.database_url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                                     hide_parameters=True)
        runtime = ServiceRuntime(name=SERVICE, settings=settings, metadata=metadata, engine=engine,
                                 handlers=HANDLERS if consume else None, group_id=group_id, **runner_options)
        ctx.runtime = app.state.runtime = runtime
        ctx.fetcher = PlatformFetcher(settings, runtime.sessions, lambda: ctx.clock())
        async with runtime.lifespan(app):
            task = asyncio.create_task(ctx.fetcher.run(), name="intake-fetcher")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                await ctx.fetcher.close()

    app = FastAPI(title="LeadBridge intake", version="1.0.0", lifespan=lifespan,
                  description="Every lead from every channel, accepted once, never lost.")
    app.state.ctx = ctx
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    for router in (leads.router, webhooks.router, admin.router, ops.router):
        app.include_router(router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # outermost, so that every answer (413 included) carries the CORS headers a browser needs to read it
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["POST", "GET", "OPTIONS"],
                       allow_headers=["Content-Type", "X-API-Key", "Authorization", "Idempotency-Key"],
                       expose_headers=["Location", "Retry-After", "Idempotent-Replayed"])
    return app
