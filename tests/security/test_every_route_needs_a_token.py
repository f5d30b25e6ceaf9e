"""Every route of every service answers 401 without a token, except the few that are open on purpose.

The apps are walked, not listed: a route anyone adds later is covered the day it is added.
"""

from __future__ import annotations

import importlib
import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from leadbridge_devstack.system import SERVICES
from leadbridge_events.auth import is_public
from leadbridge_events.testing import auth_headers

OPEN_ON_PURPOSE = {"/healthz", "/readyz", "/metrics", "/login", "/login/callback", "/logout"}
# intake's endpoints that keep their own authentication: API keys (forms, site backends, CRMs) and the
# ad platforms' signatures; crm-sync's inbound CRM webhooks (signed by the CRMs)
OWN_AUTH = {"intake": re.compile(r"^/v1/(leads(/.*)?|webhooks/.*)$"),
            "crm-sync": re.compile(r"^/v1/inbound/(hubspot|salesforce)/\{name\}$")}  # the CRMs' signed webhooks


def apps():
    for spec in SERVICES:
        module = importlib.import_module(f"{spec.module}.app")
        yield spec.name, module.create_app()


APPS = dict(apps())


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)


def api_routes(app):
    """(route, method) of every API route, those of included routers too (FastAPI includes them lazily)."""
    try:
        from fastapi.routing import iter_route_contexts
        routes = list(iter_route_contexts(app.routes))
    except ImportError:  # FastAPI before lazy router inclusion
        routes = app.routes
    out = [(route, method) for route in routes if isinstance(route.original_route if hasattr(
        route, "original_route") else route, APIRoute) for method in route.methods if method != "HEAD"]
    assert out or not app.routes
    return out


@pytest.mark.parametrize("name", sorted(APPS))
def test_every_non_ops_route_answers_401_without_a_token(name):
    app = APPS[name]
    client = TestClient(app)  # no lifespan: the token is checked before anything touches a database
    checked = 0
    for route, method in api_routes(app):
        if is_public(route.endpoint):
            own = OWN_AUTH.get(name)
            assert route.path in OPEN_ON_PURPOSE or (own and own.match(route.path)), (
                f"{name} {method} {route.path} is open to anyone; only the operational, sign-in and intake's "
                "API-key/webhook endpoints may be")
            continue
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic dXNlcjpwdw=="}):
            resp = client.request(method, concrete(route.path), headers=headers)
            assert resp.status_code == 401, f"{name} {method} {route.path} {headers}: {resp.status_code} {resp.text}"
            assert resp.headers["www-authenticate"].startswith("Bearer"), route.path
            assert resp.json()["error"] in ("missing_token", "invalid_token")
        checked += 1
    assert name == "sla-watcher" or checked, f"{name}: no protected route found"


@pytest.mark.parametrize("name", sorted(APPS))
def test_a_token_without_the_scope_is_refused_with_403_naming_it(name):
    app = APPS[name]
    client = TestClient(app)
    for route, method in api_routes(app):
        if is_public(route.endpoint):
            continue
        resp = client.request(method, concrete(route.path), headers=auth_headers(scopes=[]))
        assert resp.status_code == 403, f"{name} {method} {route.path}: {resp.status_code} {resp.text}"
        assert resp.json()["missing_scopes"], resp.text
        assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]


def test_expired_or_foreign_tokens_are_refused():
    from leadbridge_events.auth import AuthSettings, mint_dev_token
    from leadbridge_events.testing import TEST_DEV_SECRET

    client = TestClient(APPS["router"])
    expired = mint_dev_token(AuthSettings(dev_secret=TEST_DEV_SECRET), ["roster:read"], now=0)
    other_secret = mint_dev_token(AuthSettings(dev_secret="a-different-secret-entirely-of-another-system"), ["roster:read"])
    other_audience = mint_dev_token(AuthSettings(dev_secret=TEST_DEV_SECRET, audience="someone-else"),
                                    ["roster:read"])
    for token, why in ((expired, "expired"), (other_secret, "bad signature"), (other_audience, "wrong audience")):
        resp = client.get("/roster", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and why in resp.json()["detail"], resp.text
        assert token not in resp.text


def test_ops_and_docs_stay_open():
    for name, app in APPS.items():
        client = TestClient(app)
        for path in ("/healthz", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200, f"{name} {path}"
