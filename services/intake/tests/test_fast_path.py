"""The fast path (fast_path.py) answers a JSON ``POST /v1/leads`` exactly as the routed endpoint does.

A request with an ``Origin`` the app does not allow goes the full stack (CORS) and gets no CORS headers, so
the same request with and without that header compares the two paths answer by answer."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from leadbridge_intake.fast_path import LeadFastPath, fast_path_of
from leadbridge_intake.ratelimit import RateLimiter
from leadbridge_intake.testing import new_key

pytestmark = pytest.mark.integration

FULL_STACK = {"Origin": "https://not-allowed.example"}
HEADERS = ("content-type", "location", "idempotent-replayed", "retry-after", "www-authenticate")


def _email() -> str:
    return f"f{uuid.uuid4().hex[:10]}@example.com"


def _same_shape(value: Any) -> Any:
    """The answer without what differs from lead to lead (its id)."""
    if isinstance(value, dict):
        return {k: ("<id>" if k == "lead_id" else _same_shape(v)) for k, v in value.items()}
    return value


async def test_the_fast_path_and_the_full_stack_answer_alike(intake):
    client, app, key = intake
    read_only = await new_key(client, scopes=["leads:read"])
    big = 64 * 1024 + 1
    cases: list[tuple[str, dict[str, str], bytes]] = [
        ("accepted", {"X-API-Key": key}, b'{"email": "%s", "company": "Acme"}'),
        ("no key", {}, b'{"email": "%s"}'),
        ("unknown key", {"X-API-Key": "lb_made_up_key"}, b'{"email": "%s"}'),
        ("bearer key", {"Authorization": f"Bearer {key}"}, b'{"email": "%s"}'),
        ("wrong scope", {"X-API-Key": read_only}, b'{"email": "%s"}'),
        ("bad json", {"X-API-Key": key}, b'{"email": "%s"'),
        ("not an object", {"X-API-Key": key}, b'["%s"]'),
        ("bad email", {"X-API-Key": key}, b'{"email": "not-an-email-%s"}'),
        ("unknown field", {"X-API-Key": key}, b'{"email": "%s", "shoe_size": 44}'),
        ("no contact", {"X-API-Key": key}, b'{"company": "Acme %s"}'),
        ("nul", {"X-API-Key": key}, b'{"email": "%s", "company": "A\\u0000B"}'),
        ("too deep", {"X-API-Key": key}, b'{"email": "%s", "custom": ' + b'[' * 70 + b']' * 70 + b'}'),
        ("too large", {"X-API-Key": key}, b'{"email": "%s", "company": "' + b"x" * big + b'"}'),
        ("long idempotency key", {"X-API-Key": key, "Idempotency-Key": "k" * 201}, b'{"email": "%s"}'),
    ]
    for name, headers, template in cases:
        answers = []
        for extra in ({}, FULL_STACK):
            body = template.replace(b"%s", _email().encode()) if b"%s" in template else template
            r = await client.post("/v1/leads", content=body,
                                  headers={"Content-Type": "application/json", **headers, **extra})
            answers.append((r.status_code, _same_shape(r.json()),
                            {h: r.headers.get(h) for h in HEADERS if h != "location"},
                            (r.headers.get("location") or "").rsplit("/", 1)[0]))
        assert answers[0] == answers[1], name
    fast = fast_path_of(app)
    assert isinstance(fast, LeadFastPath) and fast.handled >= len(cases) - 1  # "too large" is refused unread

    # an Idempotency-Key replayed, reused with another body; a rate limit, on either path
    for extra in ({}, FULL_STACK):
        idem, body = f"idem-{uuid.uuid4().hex}", {"email": _email()}
        post = {"headers": {"X-API-Key": key, "Idempotency-Key": idem, **extra}}
        first = await client.post("/v1/leads", json=body, **post)
        again = await client.post("/v1/leads", json=body, **post)
        assert first.status_code == again.status_code == 202 and again.json()["status"] == "duplicate"
        assert again.headers["Idempotent-Replayed"] == "true" and again.json()["lead_id"] == first.json()["lead_id"]
        reused = await client.post("/v1/leads", json={"email": _email()}, **post)
        assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"
        app.state.ctx.limiter = RateLimiter(0.001, 1)
        try:
            ok, limited = [await client.post("/v1/leads", json={"email": _email()},
                                             headers={"X-API-Key": key, **extra}) for _ in range(2)]
        finally:
            app.state.ctx.limiter = RateLimiter(1e9, 10**6)
        assert ok.status_code == 202 and limited.status_code == 429 and limited.headers["Retry-After"]
        assert limited.json()["error"] == "rate_limited"


async def test_other_requests_take_the_full_stack(intake):
    client, app, key = intake
    await client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": _email()})
    fast = fast_path_of(app)
    assert isinstance(fast, LeadFastPath)
    before = fast.handled
    allowed = await client.post("/v1/leads", json={"email": _email()},
                                headers={"X-API-Key": key, "Origin": "https://www.example.com"})
    assert allowed.status_code == 202 and allowed.headers["access-control-allow-origin"] == "https://www.example.com"
    form = await client.post("/v1/leads", params={"api_key": key}, data={"email": _email()})
    assert form.status_code == 202
    assert (await client.get("/v1/leads")).status_code == 405
    assert fast.handled == before  # a browser's request (CORS), a form post, another method


async def test_an_unexpected_error_is_the_same_500_on_both_paths(intake, monkeypatch):
    """A bug (not an outage) in a capture: the server's 500, and the error raised on to the server (which logs
    its traceback), on the fast path as on the full stack."""
    import httpx

    _client, app, key = intake

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.ctx.captures, "capture", broken)
    fast = fast_path_of(app)
    answers = []
    for extra in ({}, FULL_STACK):
        before = fast.handled
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                     base_url="http://intake") as quiet:
            r = await quiet.post("/v1/leads", json={"email": _email()}, headers={"X-API-Key": key, **extra})
        answers.append((r.status_code, r.text, r.headers.get("content-type")))
        assert fast.handled == before + (0 if extra else 1)
        with pytest.raises(RuntimeError, match="a bug"):  # raised on to the server
            await _client.post("/v1/leads", json={"email": _email()}, headers={"X-API-Key": key, **extra})
    assert answers[0] == answers[1] and answers[0][0] == 500
