"""What every service's HTTP API shares: /healthz, /readyz (database and Kafka), /metrics, and error handlers.

``install_error_handlers(app)`` (installed by ``add_operational_routes``, or on its own) answers a request that
failed because a dependency is down -- a *transient* error by ``failures.classify``: the database restarting,
refusing connections, out of slots, a lock or statement timeout -- with ``503`` and ``Retry-After`` and a JSON
body, never a plain-text 500::

    {"error": "dependency_unavailable", "dependency": "database", "detail": "...", "retry_after_seconds": 5}

Any other error propagates as before (a bug stays a 500, with its traceback in the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from .auth import public
from .failures import describe, is_transient
from .runtime import ServiceRuntime

log = logging.getLogger("leadbridge.http")

RETRY_AFTER_SECONDS = 5
DEPENDENCY_UNAVAILABLE = Counter(
    "leadbridge_http_dependency_unavailable_total", "Requests answered 503 because a dependency was down",
    ["dependency"],
)
# what a failing dependency raises; each is classified, and only transient ones become a 503
_DEPENDENCY_ERRORS = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, KafkaError)


def install_error_handlers(app: FastAPI, *, retry_after_seconds: int = RETRY_AFTER_SECONDS) -> None:
    """503 + ``Retry-After`` + JSON for a request that failed on a dependency outage (idempotent)."""
    if getattr(app.state, "dependency_error_handlers", False):
        return
    app.state.dependency_error_handlers = True

    async def dependency_unavailable(request: Request, exc: Exception) -> Response:
        if not is_transient(exc):
            raise exc  # a bug, not an outage: the server's 500, with the traceback logged
        dependency = "kafka" if isinstance(exc, KafkaError) else "database"
        DEPENDENCY_UNAVAILABLE.labels(dependency).inc()
        log.warning("%s unavailable, answered 503: %s", dependency, describe(exc),
                    extra={"path": request.url.path, "dependency": dependency})
        return JSONResponse(
            {"error": "dependency_unavailable", "dependency": dependency,
             "detail": f"the {dependency} is unavailable right now; retry in {retry_after_seconds} s",
             "retry_after_seconds": retry_after_seconds},
            status_code=503, headers={"Retry-After": str(retry_after_seconds)},
        )

    for exc_class in _DEPENDENCY_ERRORS:
        app.add_exception_handler(exc_class, dependency_unavailable)


def add_operational_routes(app: FastAPI, runtime: Callable[[], ServiceRuntime]) -> None:
    """Add the routes (open to anyone: ``public``) and the error handlers; ``runtime`` returns the service's
    runtime (built in the lifespan)."""
    install_error_handlers(app)

    @app.get("/healthz", tags=["operations"])
    @public
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    @public
    async def readyz() -> JSONResponse:
        """200 when the database and Kafka are reachable, else 503 with what is not."""
        status = await runtime().ready()
        ok = all(v == "ok" for v in status.values())
        return JSONResponse(status, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    @public
    async def metrics() -> Response:
        """Prometheus metrics of this process (404 when ``METRICS_PORT`` serves them on a port of their own)."""
        if runtime().settings.metrics_port:
            return JSONResponse({"detail": "metrics are served on METRICS_PORT"}, status_code=404)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
