"""API key authentication, scopes and per-key rate limits for the capture and follow-up endpoints."""

from __future__ import annotations

from fastapi import Depends, Request

from .. import metrics
from ..keys import ApiKey, find_key_cached
from ..ratelimit import retry_after_header
from .context import IntakeContext, get_ctx
from .errors import ApiError


def presented_key(request: Request) -> str | None:
    """``X-API-Key``, ``Authorization: Bearer``, or ``?api_key=`` (for plain HTML forms)."""
    key = request.headers.get("x-api-key")
    if not key:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    return key or request.query_params.get("api_key") or None


async def authenticate(request: Request, ctx: IntakeContext, scope: str) -> ApiKey:
    secret = presented_key(request)
    if not secret:
        metrics.REJECTED.labels("no_api_key").inc()
        raise ApiError(401, "missing_api_key", "send an API key in X-API-Key, Authorization: Bearer or ?api_key=",
                       {"WWW-Authenticate": "Bearer"})
    key = await find_key_cached(ctx.runtime.sessions, ctx.keys, secret, ctx.monotonic())
    if key is None:
        metrics.REJECTED.labels("unknown_api_key").inc()
        raise ApiError(401, "unknown_api_key", "this API key is not known", {"WWW-Authenticate": "Bearer"})
    if key.revoked_at is not None:
        metrics.REJECTED.labels("revoked_api_key").inc()
        raise ApiError(403, "revoked_api_key", f"API key {key.id} was revoked at {key.revoked_at.isoformat()}")
    if scope not in key.scopes:
        metrics.REJECTED.labels("forbidden_scope").inc()
        raise ApiError(403, "forbidden_scope", f"API key {key.id} lacks the '{scope}' scope")
    wait = ctx.limiter.take(key.id, ctx.monotonic())
    if wait > 0:
        metrics.REJECTED.labels("rate_limited").inc()
        raise ApiError(429, "rate_limited", f"API key {key.id} exceeded its rate limit; retry later",
                       {"Retry-After": retry_after_header(wait)})
    return key


def require(scope: str):  # type: ignore[no-untyped-def]
    async def dependency(request: Request, ctx: IntakeContext = Depends(get_ctx)) -> ApiKey:
        return await authenticate(request, ctx, scope)
    return dependency
