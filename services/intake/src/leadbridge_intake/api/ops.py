"""Liveness, readiness (database and Kafka) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .context import IntakeContext, get_ctx

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {}})
async def readyz(ctx: IntakeContext = Depends(get_ctx)) -> JSONResponse:
    """Ready while the database is: leads are then stored durably, and with Kafka down they wait in the outbox
    (status ``degraded``). 503 only when the database is unavailable."""
    checks = await ctx.runtime.ready()
    if checks["database"] != "ok":
        return JSONResponse({"status": "not_ready", **checks}, status_code=503)
    return JSONResponse({"status": "ready" if checks["kafka"] == "ok" else "degraded", **checks})


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(ctx: IntakeContext = Depends(get_ctx)) -> Response:
    if ctx.settings.metrics_port:  # served on a port of their own (leadbridge_events.runtime)
        return JSONResponse({"detail": "metrics are served on METRICS_PORT"}, status_code=404)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
