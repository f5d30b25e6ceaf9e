"""The managers' page signs in through a real (local) OpenID Connect provider: authorization code + PKCE,
a session cookie; and the services accept the provider's RS256 tokens through its JWKS."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import Depends
from leadbridge_events.auth import AuthSettings, protected_app, require_scopes
from leadbridge_events.testing import test_auth_settings
from leadbridge_insights.app import create_app
from leadbridge_insights.settings import InsightsSettings
from leadbridge_insights.signin import SESSION_COOKIE, safe_next


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


def insights(provider: str) -> httpx.AsyncClient:
    settings = InsightsSettings(INSIGHTS_OIDC_ISSUER=provider, INSIGHTS_SESSION_SECRET="s" * 32,
                                INSIGHTS_OIDC_CLIENT_SECRET="insights-client-secret",
                                auth=test_auth_settings())
    app = create_app(settings)  # no lifespan: sign-in and the page need neither Kafka nor PostgreSQL
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://insights")


async def sign_in_at_provider(authorize_url: str, user: str = "manager") -> str:
    """What a person does at the provider's page: type a user name, press Authorize. Returns the redirect."""
    async with httpx.AsyncClient() as browser:
        form = await browser.get(authorize_url)
        assert form.status_code == 200, form.text
        answer = await browser.post(authorize_url, data={"sub": user})
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["location"]


async def test_a_manager_signs_in_with_code_and_pkce_and_then_sees_the_page(provider):
    async with insights(provider) as client:
        page = await client.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and 'url=/login?next=%2F' in page.text  # the browser is sent to sign in
        start = await client.get("/login", params={"next": "/?by=campaign"})
        assert start.status_code == 303
        authorize = start.headers["location"]
        query = parse_qs(urlsplit(authorize).query)
        assert authorize.startswith(provider)
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert query["state"] and query["nonce"] and query["redirect_uri"] == ["http://insights/login/callback"]

        back = urlsplit(await sign_in_at_provider(authorize))
        assert back.path == "/login/callback"
        done = await client.get(f"/login/callback?{back.query}")
        assert done.status_code == 303 and done.headers["location"] == "/?by=campaign", done.text
        assert SESSION_COOKIE in client.cookies
        cookie = done.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie

        page = await client.get("/")
        assert page.status_code == 200 and "<table" in page.text
        replay = await client.get(f"/login/callback?{back.query}")  # the sign-in cookie is used up
        assert replay.status_code == 400 and replay.json()["error"] == "signin_expired"

        await client.get("/logout")
        assert (await client.get("/")).status_code == 401


async def test_a_forged_or_foreign_callback_is_refused(provider):
    async with insights(provider) as client:
        no_cookie = await client.get("/login/callback", params={"code": "x", "state": "y"})
        assert no_cookie.status_code == 400 and no_cookie.json()["error"] == "signin_expired"
        start = await client.get("/login")
        authorize = start.headers["location"]
        back = parse_qs(urlsplit(await sign_in_at_provider(authorize)).query)
        wrong_state = await client.get("/login/callback", params={"code": back["code"][0], "state": "forged"})
        assert wrong_state.status_code == 400 and wrong_state.json()["error"] == "bad_state"
        wrong_code = await client.get("/login/callback", params={"code": "forged", "state": back["state"][0]})
        assert wrong_code.status_code == 400 and wrong_code.json()["error"] == "signin_refused"
        refused = await client.get("/login/callback", params={"error": "access_denied"})
        assert refused.status_code == 400
        client.cookies.set(SESSION_COOKIE, "forged.session.cookie")
        assert (await client.get("/v1/funnel")).status_code == 401


async def id_token_of(provider: str, client_id: str) -> str:
    """A real RS256 ID token of the provider for ``client_id`` (its audience)."""
    async with httpx.AsyncClient() as http:
        config = (await http.get(f"{provider}/.well-known/openid-configuration")).json()
        redirect = "http://api.example/callback"
        authorize = config["authorization_endpoint"] + "?" + urlencode(
            {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid",
             "state": "s", "nonce": "n"})
        code = parse_qs(urlsplit(await sign_in_at_provider(authorize, "service-account")).query)["code"][0]
        token = await http.post(config["token_endpoint"], auth=(client_id, "secret"), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect})
    assert token.status_code == 200, token.text
    return token.json()["id_token"]


async def test_the_api_accepts_the_providers_rs256_tokens_through_its_jwks(provider):
    id_token = await id_token_of(provider, "some-api")
    app = protected_app(AuthSettings(issuer=provider, audience="some-api"))

    @app.get("/needs-scope", dependencies=[Depends(require_scopes("roster:read"))])
    async def needs_scope() -> dict:
        return {}

    @app.get("/any-token")
    async def any_token() -> dict:
        return {}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        assert (await api.get("/any-token", headers={"Authorization": f"Bearer {id_token}"})).status_code == 200
        denied = await api.get("/needs-scope", headers={"Authorization": f"Bearer {id_token}"})
        assert denied.status_code == 403 and denied.json()["missing_scopes"] == ["roster:read"]
        head, body, signature = id_token.split(".")
        tampered = f"{head}.{body}.{signature[::-1]}"
        bad = await api.get("/any-token", headers={"Authorization": f"Bearer {tampered}"})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"
        from leadbridge_events.testing import test_token

        dev = await api.get("/any-token", headers={"Authorization": f"Bearer {test_token()}"})
        assert dev.status_code == 401, "a development token must not pass where a real issuer is configured"


def test_redirects_stay_on_this_site():
    assert safe_next("/?by=campaign") == "/?by=campaign"
    for evil in ("https://evil.example/", "//evil.example", "/\\evil.example", None, ""):
        assert safe_next(evil) == "/"
