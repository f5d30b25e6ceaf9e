"""Test helpers for intake and its extensions: the app through its lifespan, a fake ad-platform API."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from leadbridge_events.testing import test_auth_settings, test_token

from leadbridge_intake.app import create_app
from leadbridge_intake.keys import SCOPES
from leadbridge_intake.settings import IntakeSettings

ADMIN = test_token(["keys:admin"])  # an access token of the admin API
META_SECRET = "meta-app-secret"
META_VERIFY = "meta-verify"
LI_SECRET = "linkedin-client-secret"
GOOGLE_KEY = "google-form-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakePlatforms:
    """A local fake of the Graph API and LinkedIn's REST API: serves leads; can fail N times first."""

    def __init__(self) -> None:
        self.leads: dict[str, dict[str, Any]] = {}
        self.forms: dict[str, dict[str, Any]] = {}
        self.fail_next = 0
        self.calls: list[str] = []
        self.app = FastAPI()
        self.app.add_api_route("/graph/{lead_id}", self._graph)
        self.app.add_api_route("/li/leadFormResponses/{rid}", self._li_response)
        self.app.add_api_route("/li/leadForms/{fid}", self._li_form)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def _maybe_fail(self, path: str) -> JSONResponse | None:
        self.calls.append(path)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"error": {"message": "temporarily unavailable"}}, status_code=503)
        return None

    async def _graph(self, lead_id: str, request: Request) -> Any:
        if (failed := self._maybe_fail(request.url.path)) is not None:
            return failed
        if "access_token" in request.query_params:  # a token in the URL would land in access logs
            return JSONResponse({"error": {"message": "access token in the URL"}}, status_code=400)
        if request.headers.get("authorization") != "Bearer meta-token" or lead_id not in self.leads:
            return JSONResponse({"error": {"message": "unknown"}}, status_code=400)
        return self.leads[lead_id]

    async def _li_response(self, rid: str, request: Request) -> Any:
        if (failed := self._maybe_fail(request.url.path)) is not None:
            return failed
        if request.headers.get("authorization") != "Bearer li-token" or rid not in self.leads:
            return JSONResponse({"message": "not found"}, status_code=404)
        return self.leads[rid]

    async def _li_form(self, fid: str) -> Any:
        return self.forms.get(fid) or JSONResponse({"message": "not found"}, status_code=404)


def make_settings(database_url: str, bootstrap: str, platforms: FakePlatforms | None = None,
                  **overrides: Any) -> IntakeSettings:
    values: dict[str, Any] = dict(
        database_url=database_url, kafka_bootstrap_servers=bootstrap, auth=test_auth_settings(),
        cors_origins=["https://www.example.com"], meta_app_secret=META_SECRET, meta_verify_token=META_VERIFY,
        meta_access_token="meta-token", linkedin_client_secret=LI_SECRET, linkedin_access_token="li-token",
        google_keys={"4242": GOOGLE_KEY}, fetch_retry_base_seconds=0.05, fetch_retry_max_seconds=0.2,
        fetch_poll_seconds=0.1,
    )
    if platforms is not None:
        values.update(meta_graph_base_url=f"{platforms.base}/graph", linkedin_api_base_url=f"{platforms.base}/li")
    values.update(overrides)
    return IntakeSettings(**values)


@contextlib.asynccontextmanager
async def running(settings: IntakeSettings, **app_options: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app through its lifespan (ServiceRuntime, fetcher) and an httpx client on it."""
    app_options.setdefault("consume", False)
    app = create_app(settings, **app_options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client, app


async def new_key(client: httpx.AsyncClient, source: str = "website", scopes: list[str] | None = None) -> str:
    """A new API key with ``scopes`` (default: every scope; a key created without scopes gets leads:write)."""
    body: dict[str, Any] = {"source": source, "scopes": list(SCOPES) if scopes is None else scopes}
    r = await client.post("/v1/admin/keys", json=body, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


def maximal_lead(tag: str) -> dict[str, Any]:
    """A sales-ready lead with every field at the event contract's maximum: length for text, value for numbers,
    and as many utm/custom entries at full length as the default 64 KiB body allows. The fields the default
    scoring model matches by equality (industry aside, it still scores MQL) keep their values; ``tag`` (hex)
    makes the person unique."""
    import random

    from leadbridge_contracts.events import (
        COMPANY_SIZE_MAX,
        FIELD_KEY_MAX,
        FIELD_VALUE_MAX,
        PHONE_MAX,
        TEXT_MAX,
        TOKEN_MAX,
    )

    def pad(text: str, size: int) -> str:
        return (text + "-" + "x" * size)[:size]

    local = pad(f"cto.{tag}", 64)  # the longest address email validation accepts: 254 characters
    domain = f"{'d' * 63}.{'e' * 63}.{pad(tag, 52)}.example"
    digits = f"{random.randrange(10**7, 10**8)}"
    phone = "+49" + " " * (PHONE_MAX - 14) + "151" + digits  # 40 characters as typed
    asset = pad("whitepaper-download", FIELD_VALUE_MAX)
    custom = {"asset": asset, **{pad(f"q{i}", FIELD_KEY_MAX): pad(f"answer {i}", FIELD_VALUE_MAX) for i in range(14)}}
    return {
        "email": f"{local}@{domain}", "phone": phone, "first_name": pad("Pat", TEXT_MAX),
        "last_name": pad("Example", TEXT_MAX), "company": pad(f"Acme {tag}", TEXT_MAX),
        "job_title": pad("CTO", TEXT_MAX), "company_size": COMPANY_SIZE_MAX, "industry": pad("software", TEXT_MAX),
        "country": "DE", "language": "de", "channel": pad("paid", TOKEN_MAX), "campaign": pad("max", TEXT_MAX),
        "form_type": "demo_request", "consent": True,
        "utm": {k: pad(k, FIELD_VALUE_MAX) for k in ("utm_source", "utm_medium", "utm_campaign", "utm_term",
                                                      "utm_content")},
        "custom": custom,
    }
