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

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException

SCOPES = {
    "roster:read": "read the router's teams, reps, rules and a lead's routing status",
    "roster:write": "change the roster (teams, reps, rules, whole-roster import)",
    "insights:read": "lead timelines, the funnel and the managers' page",
    "scoring:read": "the scoring model in force",
    "scoring:whatif": "replay stored leads through a proposed scoring model",
    "keys:admin": "create, list and revoke intake's API keys",
}
DEV_ISSUER = "leadbridge-dev"
bearer_scheme = HTTPBearer(auto_error=False, description="An OAuth 2.0 access token (JWT) of the issuer.")


class AuthSettings(BaseSettings):
    """Who issues tokens and how they are checked (``AUTH_*`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="AUTH_", env_file=None, extra="ignore", populate_by_name=True)

    issuer: str | None = Field(default=None, description="The token issuer (``iss``); its JWKS signs tokens.")
    audience: str = Field(default="leadbridge", description="The audience (``aud``) every token must carry.")
    jwks_url: str | None = Field(default=None, description="Default: jwks_uri of the issuer's discovery document.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256"])
    dev_secret: SecretStr | None = Field(default=None, min_length=32, description=(
        "Development only: HS256 tokens signed with this shared secret (issuer: AUTH_ISSUER or leadbridge-dev)."))
    leeway_seconds: float = Field(default=30, ge=0, le=300)
    jwks_cache_seconds: int = Field(default=300, ge=1)

    @property
    def effective_issuer(self) -> str:
        return self.issuer or DEV_ISSUER

    def check(self) -> None:
        if not self.issuer and self.dev_secret is None:
            raise ValueError("authentication is not configured: set AUTH_ISSUER (with AUTH_AUDIENCE) for the "
                             "organisation's OAuth 2.0 issuer, or AUTH_DEV_SECRET for development tokens")


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may do."""

    subject: str
    scopes: frozenset[str]
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class AuthError(HTTPException):
    """401 (no or bad token), 403 (a scope is missing) or 503 (the issuer's keys cannot be fetched)."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        headers = {"WWW-Authenticate": _challenge(error, detail, extra.get("missing_scopes"))} if status in (
            401, 403) else {"Retry-After": "5"}
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.error, self.extra = error, extra


def _challenge(error: str, detail: str, missing: list[str] | None) -> str:
    parts = ['Bearer realm="leadbridge"']
    if error in ("invalid_token", "insufficient_scope"):
        parts.append(f'error="{error}"')
        parts.append('error_description="{}"'.format(detail.replace('"', "'")))
    if missing:
        parts.append(f'scope="{" ".join(missing)}"')
    return ", ".join(parts)


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """``scope`` (space separated, RFC 8693/9068) or ``scp`` (a list or a string)."""
    out: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            out.update(value.split())
        elif isinstance(value, list):
            out.update(str(v) for v in value)
    return frozenset(out)


class TokenVerifier:
    """Checks a JWT's signature, issuer, audience and expiry; fails fast on a configuration it cannot use."""

    def __init__(self, settings: AuthSettings) -> None:
        settings.check()
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None

    def _jwks_client(self) -> jwt.PyJWKClient:  # blocking: called in a worker thread
        if self._jwks is None:
            url = self.settings.jwks_url or discover(self.settings.issuer or "")["jwks_uri"]
            self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=self.settings.jwks_cache_seconds,
                                         timeout=10)
        return self._jwks

    def _key_for(self, token: str, header: dict[str, Any]) -> tuple[Any, list[str]]:
        s = self.settings
        if header.get("alg") == "HS256":
            if s.dev_secret is None:
                raise AuthError(401, "invalid_token", "HS256 tokens are accepted only in development mode")
            return s.dev_secret.get_secret_value(), ["HS256"]
        if not s.issuer:
            raise AuthError(401, "invalid_token", "only development (HS256) tokens are accepted here")
        return signing_key(self._jwks_client(), token, header), s.algorithms

    def verify_sync(self, token: str) -> Principal:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
            key, algorithms = self._key_for(token, header)
            claims = jwt.decode(token, key, algorithms=algorithms, audience=s.audience, issuer=s.effective_issuer,
                                leeway=s.leeway_seconds, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWKClientConnectionError:
            raise AuthError(503, "issuer_unavailable", "the token issuer's keys cannot be fetched; retry later")
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise AuthError(401, "invalid_token", _why(exc)) from None
        except OSError:  # discovery document unreachable
            raise AuthError(503, "issuer_unavailable", "the token issuer cannot be reached; retry later") from None
        return Principal(str(claims["sub"]), scopes_of(claims), claims)

    async def verify(self, token: str) -> Principal:
        if self.settings.dev_secret is not None and not self.settings.issuer:
            return self.verify_sync(token)  # no network: stay on the loop
        return await asyncio.to_thread(self.verify_sync, token)


def signing_key(jwks: jwt.PyJWKClient, token: str, header: dict[str, Any] | None = None) -> Any:
    """The JWKS key that signed ``token``: by ``kid``, or the only signing key when the token names none."""
    header = header if header is not None else jwt.get_unverified_header(token)
    if header.get("kid"):
        return jwks.get_signing_key_from_jwt(token).key
    keys = jwks.get_signing_keys()
    if len(keys) != 1:
        raise jwt.PyJWKClientError("the token names no key (kid) and the JWKS has several")
    return keys[0].key


def _why(exc: Exception) -> str:
    """What is wrong with a token, without echoing the token or its claims."""
    known = {jwt.ExpiredSignatureError: "the token has expired", jwt.InvalidAudienceError: "wrong audience",
             jwt.InvalidIssuerError: "wrong issuer", jwt.InvalidSignatureError: "bad signature",
             jwt.MissingRequiredClaimError: "a required claim (exp, iss, aud, sub) is missing",
             jwt.ImmatureSignatureError: "the token is not valid yet", jwt.DecodeError: "not a well-formed JWT",
             jwt.InvalidAlgorithmError: "this signing algorithm is not accepted",
             jwt.PyJWKClientError: "the token's key is not in the issuer's JWKS"}
    for kind, text in known.items():
        if isinstance(exc, kind):
            return text
    return "the token is not valid"


def discover(issuer: str) -> dict[str, Any]:
    """The issuer's OpenID Connect discovery document (blocking)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the configured issuer
        return json.loads(resp.read())


TokenSource = Callable[[Request], Awaitable[Principal | None]]


class Authenticator:
    """The app's verifier plus other ways to present a token (e.g. the insights page's session cookie)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.verifier = TokenVerifier(settings)
        self.sources: list[TokenSource] = []
        self.app_scopes: tuple[str, ...] = ()  # needed by every non-public route of the app

    async def principal(self, request: Request) -> Principal:
        cached = getattr(request.state, "principal", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() == "bearer" and token.strip():
            principal = await self.verifier.verify(token.strip())
        else:
            principal = None
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
    principal = await request.app.state.authenticator.principal(request)
    check_scopes(principal, request.app.state.authenticator.app_scopes)
    return principal


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's token must carry every one of ``scopes`` (403 names the missing ones)."""
    known_scopes(scopes)

    async def dependency(request: Request, _token: Any = Depends(bearer_scheme)) -> Principal:
        principal = await request.app.state.authenticator.principal(request)
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


# -- development tokens ---------------------------------------------------------------------------

def mint_dev_token(settings: AuthSettings | None = None, scopes: Iterable[str] = tuple(SCOPES), *,
                   subject: str = "demo-user", ttl_seconds: int = 12 * 3600, now: float | None = None) -> str:
    """An HS256 token signed with ``AUTH_DEV_SECRET`` (for tests, ``make run`` and the demo)."""
    settings = settings or AuthSettings()
    if settings.dev_secret is None:
        raise ValueError("set AUTH_DEV_SECRET to mint development tokens")
    issued = int(now if now is not None else time.time())
    claims = {"iss": settings.effective_issuer, "aud": settings.audience, "sub": subject, "iat": issued,
              "exp": issued + ttl_seconds, "scope": " ".join(scopes)}
    return jwt.encode(claims, settings.dev_secret.get_secret_value(), algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
