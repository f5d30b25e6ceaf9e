"""The edge refuses what would reach a 500, a signing oracle or the database: each case of issue 11."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid

import pytest
from leadbridge_events.logs import configure_logging
from leadbridge_intake.keys import KeyCache, find_key_cached
from leadbridge_intake.testing import ADMIN, LI_SECRET, META_SECRET, make_settings, running

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"email": "a@b.io", "custom": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.integration
async def test_linkedin_answers_only_uuid_challenges(intake):
    client, _app, _key = intake
    forged = json.dumps({"leadGenFormResponse": "urn:li:leadGenFormResponse:evil"})
    for code in (forged, "abc", "890e46654dfe4ab1b689ed553ceeb1b6", "{890e4665-4dfe-4ab1-b689-ed553ceeb1b6}"):
        r = await client.get("/v1/webhooks/linkedin", params={"challengeCode": code})
        assert r.status_code == 422 and "challengeResponse" not in r.text, (code, r.text)
    ok = await client.get("/v1/webhooks/linkedin", params={"challengeCode": "890e4665-4dfe-4ab1-b689-ed553ceeb1b6"})
    assert ok.status_code == 200


@pytest.mark.integration
async def test_deeply_nested_json_is_a_400_not_a_500(intake):
    client, _app, key = intake
    for body in (DEEP, DEEP_OBJECT):
        r = await client.post("/v1/leads", content=body, headers={"X-API-Key": key, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "bad_json", r.text
        r = await client.post("/v1/webhooks/google", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "bad_json", r.text
        for platform, secret, header, prefix in (("meta", META_SECRET, "X-Hub-Signature-256", "sha256="),
                                                 ("linkedin", LI_SECRET, "X-LI-Signature", "")):
            r = await client.post(f"/v1/webhooks/{platform}", content=body,
                                  headers={header: prefix + sign(secret, body), "Content-Type": "application/json"})
            assert r.status_code == 400 and r.json()["error"] == "bad_json", (platform, r.text)


@pytest.mark.integration
async def test_an_idempotency_key_reused_with_another_body_is_422(intake):
    client, _app, key = intake
    idem = {"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/v1/leads", json={"email": f"{uuid.uuid4().hex}@x.io"}, headers=idem)
    assert first.status_code == 202
    body = json.loads(first.request.content)
    again = await client.post("/v1/leads", json=body, headers=idem)
    assert again.status_code == 202 and again.json()["status"] == "duplicate"
    other = await client.post("/v1/leads", json={"email": f"{uuid.uuid4().hex}@x.io"}, headers=idem)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused", other.text
    lead_id = first.json()["lead_id"]
    touch = {"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex}
    assert (await client.post(f"/v1/leads/{lead_id}/follow-ups", json={"touch_type": "call"},
                              headers=touch)).json()["status"] == "accepted"
    assert (await client.post(f"/v1/leads/{lead_id}/follow-ups", json={"touch_type": "call"},
                              headers=touch)).json()["status"] == "duplicate"
    reused = await client.post(f"/v1/leads/{lead_id}/follow-ups", json={"touch_type": "email"}, headers=touch)
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"


@pytest.mark.integration
async def test_new_keys_get_leads_write_only(intake):
    client, _app, _key = intake
    admin = {"Authorization": f"Bearer {ADMIN}"}
    created = await client.post("/v1/admin/keys", json={"source": "site"}, headers=admin)
    assert created.status_code == 201 and created.json()["scopes"] == ["leads:write"]
    key = created.json()["api_key"]
    some_lead = await client.post("/v1/leads", json={"email": f"{uuid.uuid4().hex}@x.io"}, headers={"X-API-Key": key})
    assert some_lead.status_code == 202
    read = await client.get(f"/v1/leads/{some_lead.json()['lead_id']}", headers={"X-API-Key": key})
    assert read.status_code == 403 and read.json()["error"] == "forbidden_scope"


@pytest.mark.integration
async def test_webhooks_are_rate_limited_per_source_address(fresh_database_url, kafka_bootstrap):
    settings = make_settings(fresh_database_url, kafka_bootstrap, webhook_rate_limit_burst=3,
                             webhook_rate_limit_per_minute=1)
    async with running(settings) as (client, _app):
        answers = [(await client.get("/v1/webhooks/linkedin", params={"challengeCode": str(uuid.uuid4())}))
                   for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1 and answers[-1].json()["error"] == "rate_limited"


async def test_unknown_keys_are_cached_as_unknown_for_a_short_time():
    lookups = 0

    class Session:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

        async def execute(self, _statement):
            nonlocal lookups
            lookups += 1
            return type("Result", (), {"first": lambda self: None})()

    cache = KeyCache(5, unknown_ttl=2)
    for now in (0.0, 0.5, 1.9):
        assert await find_key_cached(Session, cache, "lb_made_up", now) is None
    assert lookups == 1
    assert await find_key_cached(Session, cache, "lb_made_up", 2.1) is None
    assert lookups == 2
    cache.forget_unknown()  # a key created through this process works at once
    await find_key_cached(Session, cache, "lb_made_up", 2.2)
    assert lookups == 3


def test_the_httpx_logger_never_logs_request_urls():
    configure_logging("test")
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING
