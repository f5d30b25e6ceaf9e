"""Access tokens: who issues them, how a JWT is verified (PyJWT: signature by the issuer's JWKS or the
development secret, issuer, audience, expiry), the scopes it carries, and development tokens for tests and
``make run``. The FastAPI side (apps, public endpoints, scope dependencies) is ``leadbridge_events.auth``.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException

SCOPES = {
    "roster:read": "read the router's teams, reps, rules and a lead's routing status",
    "roster:write": "change the roster (teams, reps, rules, whole-roster import)",
    "insights:read": "lead timelines, the funnel and the managers' page",
    "scoring:read": "the scoring model in force",
    "scoring:whatif": "replay stored leads through a proposed scoring model",
    "keys:admin": "create, list and revoke intake's API keys; its quarantine",
    "crm:admin": "crm-sync's webhook subscriptions, destinations and deliveries",
}
DEV_ISSUER = "leadbridge-dev"


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
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthError(503, "issuer_unavailable", "the token issuer's keys cannot be fetched; retry later") from exc
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
        document: dict[str, Any] = json.loads(resp.read())
        return document


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
