"""One authentication model for every service: OAuth 2.0 bearer tokens verified as JWTs, scopes per operation.

Production: tokens of the organisation's issuer, checked for issuer, audience, expiry and a signature by a key
of the issuer's JWKS (``AUTH_ISSUER``, ``AUTH_AUDIENCE``, optionally ``AUTH_JWKS_URL``; by default the JWKS is
found through the issuer's OpenID discovery document). Development: a shared secret signs HS256 tokens
(``AUTH_DEV_SECRET``), and ``mint_dev_token`` makes them.

A service builds its app with ``protected_app(settings.auth, ...)``: every route needs a valid token, except the
endpoints marked ``public`` (health, readiness, metrics, a sign-in callback) or ``exempt`` (intake's API-key and
webhook endpoints, which keep their own authentication). Each operation adds ``require_scopes("roster:write")``
(or ``scopes_by_method``). Missing or invalid token: 401 with ``WWW-Authenticate``; insufficient: 403 naming
the missing scope. The issuer unreachable: 503 with ``Retry-After``.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from .tokens import (
    DEV_ISSUER,
    SCOPES,
    AuthError,
    AuthSettings,
    Principal,
    TokenVerifier,
    bearer,
    discover,
    mint_dev_token,
    scopes_of,
    signing_key,
)

# the token names are re-exported: services import everything about authentication from here
__all__ = [
    "auth_error_handler", "authenticate", "Authenticator", "AuthError", "AuthSettings", "bearer", "bearer_scheme",
    "check_scopes", "DEV_ISSUER", "discover", "exempt", "is_public", "known_scopes", "mint_dev_token", "Principal",
    "protected_app", "public", "require_scopes", "SCOPES", "scopes_by_method", "scopes_of", "signing_key",
    "TokenSource", "TokenVerifier",
]

bearer_scheme = HTTPBearer(auto_error=False, description="An OAuth 2.0 access token (JWT) of the issuer.")


TokenSource = Callable[[Request], Awaitable[Principal | None]]


class Authenticator:
    """The app's verifier plus other ways to present a token (e.g. the insights page's session cookie)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.verifier = TokenVerifier(settings)
        self.sources: list[TokenSource] = []
        self.app_scopes: tuple[str, ...] = ()  # needed by every non-public route of the app

    async def principal(self, request: Request) -> Principal:
        cached: Principal | None = getattr(request.state, "principal", None)
        if cached is not None:
            return cached
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        principal: Principal | None = None
        if header and scheme.lower() == "bearer" and token.strip():
            principal = await self.verifier.verify(token.strip())
        else:
            for source in self.sources:
                principal = await source(request)
                if principal is not None:
                    break
        if principal is None:
            raise AuthError(401, "missing_token", "send an access token as Authorization: Bearer <token>")
        request.state.principal = principal
        return principal


# -- the app, public endpoints, scopes ------------------------------------------------------------

_PUBLIC = "__leadbridge_public__"


def public(endpoint: Any) -> Any:
    """Mark an endpoint as open to anyone (health, readiness, metrics, sign-in)."""
    setattr(getattr(endpoint, "__func__", endpoint), _PUBLIC, True)  # a bound method: its function
    return endpoint


def exempt(router: APIRouter | FastAPI) -> None:
    """Mark every endpoint of ``router`` as authenticated by its own means (API keys, webhook signatures)."""
    for route in router.routes:
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None:
            public(endpoint)


def is_public(endpoint: Any) -> bool:
    return bool(getattr(endpoint, _PUBLIC, False))


async def authenticate(request: Request, _token: Any = Depends(bearer_scheme)) -> Principal | None:
    """The app-wide dependency: every route needs a valid token unless its endpoint is public."""
    if is_public(request.scope.get("endpoint")):
        return None
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.principal(request)
    check_scopes(principal, authenticator.app_scopes)
    return principal


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's token must carry every one of ``scopes`` (403 names the missing ones)."""
    known_scopes(scopes)

    async def dependency(request: Request, _token: Any = Depends(bearer_scheme)) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        principal = await authenticator.principal(request)
        check_scopes(principal, scopes)
        return principal

    return dependency


def known_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """``scopes`` as a tuple; a ValueError for a scope nobody grants (a typo would lock everyone out)."""
    scopes = tuple(scopes)
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {sorted(unknown)}; known: {sorted(SCOPES)}")
    return scopes


def check_scopes(principal: Principal, scopes: Iterable[str]) -> None:
    missing = sorted(set(scopes) - principal.scopes)
    if missing:
        raise AuthError(403, "insufficient_scope", f"this operation needs the scope {' '.join(missing)}",
                        missing_scopes=missing)


def scopes_by_method(read: str, write: str) -> Callable[..., Awaitable[Principal]]:
    """``read`` for GET/HEAD, ``write`` for every other method: one dependency for a whole router."""
    need_read, need_write = require_scopes(read), require_scopes(write)

    async def dependency(request: Request, _token: Any = Depends(bearer_scheme)) -> Principal:
        return await (need_read if request.method in ("GET", "HEAD") else need_write)(request)

    return dependency


async def auth_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    return JSONResponse({"error": exc.error, "detail": exc.detail, **exc.extra}, status_code=exc.status_code,
                        headers=exc.headers)


def protected_app(settings: AuthSettings, *, scopes: Iterable[str] = (), edge_guard: bool = True,
                  **fastapi_options: Any) -> FastAPI:
    """A FastAPI app whose every route, including those added later, needs a valid token (see ``public``)
    carrying ``scopes``; single routes add theirs with ``require_scopes``.

    ``edge_guard``: refuse over-deep JSON and NUL characters before any handler (``edge.JsonDepthAndNulGuard``).
    """
    from .edge import JsonDepthAndNulGuard

    dependencies = [Depends(authenticate), *fastapi_options.pop("dependencies", [])]
    app = FastAPI(dependencies=dependencies, **fastapi_options)
    app.state.authenticator = Authenticator(settings)
    app.state.authenticator.app_scopes = known_scopes(scopes)
    app.add_exception_handler(AuthError, auth_error_handler)
    if edge_guard:
        app.add_middleware(JsonDepthAndNulGuard)
    return app
