"""The operational endpoints every service serves: /healthz, /readyz (database and Kafka), /metrics."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .auth import public
from .runtime import ServiceRuntime


def add_operational_routes(app: FastAPI, runtime: Callable[[], ServiceRuntime]) -> None:
    """Add the routes (open to anyone: ``public``); ``runtime`` returns the service's runtime (it is built inside the lifespan)."""

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
