"""The managers' page signs in through the organisation's OpenID Connect provider.

Authorization code flow with PKCE (S256), a ``state`` and a ``nonce``: ``/login`` sends the browser to the
provider, ``/login/callback`` exchanges the code, checks the ID token (signature by the provider's JWKS,
issuer, audience = our client id, expiry, nonce) and sets a session cookie: a short-lived token signed by
insights itself that grants ``insights:read``. The cookie is HttpOnly and SameSite=Lax (Secure behind TLS),
so the page's own requests carry it and other sites' cannot. Without a session, a browser asking for a page
gets a 401 that sends it to ``/login``; an API client gets the usual JSON 401.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from leadbridge_events.auth import AuthError, Principal, auth_error_handler, public, signing_key

from .settings import InsightsSettings

log = logging.getLogger("leadbridge.insights.signin")

SESSION_COOKIE = "lb_session"
SIGNIN_COOKIE = "lb_signin"
SESSION_ISSUER = "leadbridge-insights"
SESSION_SCOPES = "insights:read"
CALLBACK_PATH = "/login/callback"
SIGNIN_SECONDS = 600


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def safe_next(target: str | None) -> str:
    """Only a path on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class SignIn:
    def __init__(self, settings: InsightsSettings) -> None:
        self.settings = settings
        secret = settings.session_secret.get_secret_value() if settings.session_secret else None
        self.secret = secret or secrets.token_urlsafe(32)  # sessions then end when the process restarts
        self._provider: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKClient | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.oidc_issuer)

    # -- our own signed cookies ------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], seconds: float, audience: str) -> str:
        now = int(time.time())
        return jwt.encode({**claims, "iss": SESSION_ISSUER, "aud": audience, "iat": now, "exp": now + int(seconds)},
                          self.secret, algorithm="HS256")

    def _read(self, token: str | None, audience: str) -> dict[str, Any] | None:
        if not token:
            return None
        try:
            return jwt.decode(token, self.secret, algorithms=["HS256"], audience=audience, issuer=SESSION_ISSUER)
        except jwt.InvalidTokenError:
            return None

    async def session_principal(self, request: Request) -> Principal | None:
        claims = self._read(request.cookies.get(SESSION_COOKIE), "insights-session")
        if claims is None:
            return None
        return Principal(str(claims["sub"]), frozenset(claims["scope"].split()), claims)

    # -- the provider ----------------------------------------------------------------------------

    async def provider(self) -> dict[str, Any]:
        if self._provider is None:
            url = str(self.settings.oidc_issuer).rstrip("/") + "/.well-known/openid-configuration"
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.get(url)
                resp.raise_for_status()
                self._provider = resp.json()
        return self._provider

    def _verify_id_token(self, id_token: str, jwks_uri: str) -> dict[str, Any]:  # blocking: in a thread
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(jwks_uri, cache_keys=True, timeout=10)
        key = signing_key(self._jwks, id_token)
        return jwt.decode(id_token, key, algorithms=["RS256", "ES256", "PS256"],
                          audience=self.settings.oidc_client_id, issuer=str(self.settings.oidc_issuer).rstrip("/"),
                          leeway=30, options={"require": ["exp", "iat", "sub", "aud", "iss"]})

    def redirect_uri(self, request: Request) -> str:
        base = self.settings.public_url or str(request.base_url)
        return base.rstrip("/") + CALLBACK_PATH

    def _cookie(self, response: Response, name: str, value: str, seconds: float) -> None:
        response.set_cookie(name, value, max_age=int(seconds), httponly=True, samesite="lax", path="/",
                            secure=self.settings.cookie_secure)

    # -- the routes ------------------------------------------------------------------------------

    async def login(self, request: Request, next: str | None = None) -> Response:
        if not self.enabled:
            return _problem(404, "signin_not_configured", "sign-in is not configured (INSIGHTS_OIDC_ISSUER); "
                                                          "call the API with a bearer token")
        try:
            provider = await self.provider()
        except (httpx.HTTPError, ValueError):
            return _unavailable()
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = urlencode({"response_type": "code", "client_id": self.settings.oidc_client_id,
                           "redirect_uri": self.redirect_uri(request), "scope": self.settings.oidc_scopes,
                           "state": state, "nonce": nonce, "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        response = RedirectResponse(f"{provider['authorization_endpoint']}?{query}", status_code=303)
        pending = self._sign({"state": state, "nonce": nonce, "verifier": verifier, "next": safe_next(next)},
                             SIGNIN_SECONDS, "insights-signin")
        self._cookie(response, SIGNIN_COOKIE, pending, SIGNIN_SECONDS)
        return response

    async def callback(self, request: Request, code: str | None = None, state: str | None = None,
                       error: str | None = None) -> Response:
        if not self.enabled:
            return _problem(404, "signin_not_configured", "sign-in is not configured (INSIGHTS_OIDC_ISSUER)")
        if error:
            return _problem(400, "signin_refused", f"the identity provider answered {error[:100]!r}")
        pending = self._read(request.cookies.get(SIGNIN_COOKIE), "insights-signin")
        if pending is None:
            return _problem(400, "signin_expired", "this sign-in expired or began in another browser; "
                                                   "start again at /login")
        if not code or not state or not secrets.compare_digest(state, pending["state"]):
            return _problem(400, "bad_state", "the sign-in answer does not match the sign-in this browser began")
        try:
            provider = await self.provider()
            claims = await self._exchange(request, provider, code, pending)
        except _Refused as exc:
            return _problem(400, "signin_refused", str(exc))
        except (httpx.HTTPError, jwt.PyJWKClientConnectionError, OSError):
            return _unavailable()
        response = RedirectResponse(pending["next"], status_code=303)
        hours = self.settings.session_hours
        session = self._sign({"sub": str(claims["sub"]), "scope": SESSION_SCOPES}, hours * 3600, "insights-session")
        self._cookie(response, SESSION_COOKIE, session, hours * 3600)
        response.delete_cookie(SIGNIN_COOKIE, path="/")
        log.info("manager signed in", extra={"session_hours": hours})  # never the subject: it may be an email
        return response

    async def _exchange(self, request: Request, provider: dict[str, Any], code: str,
                        pending: dict[str, Any]) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri(request),
                "client_id": self.settings.oidc_client_id, "code_verifier": pending["verifier"]}
        secret = self.settings.oidc_client_secret
        auth = (self.settings.oidc_client_id, secret.get_secret_value()) if secret else None
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(provider["token_endpoint"], data=form, auth=auth)  # type: ignore[arg-type]
        if resp.status_code >= 500:
            raise httpx.HTTPError(f"token endpoint answered {resp.status_code}")
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200 or "id_token" not in body:
            raise _Refused(f"the code was not accepted ({str(body.get('error', resp.status_code))[:100]})")
        try:
            claims = await asyncio.to_thread(self._verify_id_token, body["id_token"], provider["jwks_uri"])
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            if isinstance(exc, jwt.PyJWKClientConnectionError):
                raise
            raise _Refused(f"the ID token is not valid ({type(exc).__name__})") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")), pending["nonce"]):
            raise _Refused("the ID token's nonce does not match this sign-in")
        return claims

    async def logout(self) -> Response:
        response = RedirectResponse("/login" if self.enabled else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def on_auth_error(self, request: Request, exc: Exception) -> Response:
        """A browser without a session is sent to sign in; everyone else gets the JSON answer."""
        assert isinstance(exc, AuthError)
        if exc.status_code == 401 and self.enabled and "text/html" in request.headers.get("accept", ""):
            target = html.escape(f"/login?{urlencode({'next': safe_next(request.url.path)})}", quote=True)
            page = (f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">'
                    f'<title>Sign in</title><p>Please <a href="{target}">sign in</a>.</p>')
            return HTMLResponse(page, status_code=401, headers=exc.headers)
        return await auth_error_handler(request, exc)


class _Refused(Exception):
    pass


def _problem(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _unavailable() -> JSONResponse:
    return JSONResponse({"error": "provider_unavailable", "detail": "the identity provider cannot be reached; "
                         "retry later"}, status_code=503, headers={"Retry-After": "5"})


def install(app: FastAPI, settings: InsightsSettings) -> SignIn:
    """Add /login, /login/callback and /logout, and accept the session cookie as a token."""
    signin = SignIn(settings)
    app.state.authenticator.sources.append(signin.session_principal)
    app.add_exception_handler(AuthError, signin.on_auth_error)
    app.add_api_route("/login", public(signin.login), methods=["GET"], include_in_schema=False)
    app.add_api_route(CALLBACK_PATH, public(signin.callback), methods=["GET"], include_in_schema=False)
    app.add_api_route("/logout", public(signin.logout), methods=["GET"], include_in_schema=False)
    return signin
