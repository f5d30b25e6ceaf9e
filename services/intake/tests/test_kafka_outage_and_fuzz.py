"""Intake keeps accepting while Kafka is down (events wait in the outbox, then flow); and a fuzz of the
OpenAPI surface finds no 5xx."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leadbridge_events.testing import collect_events
from leadbridge_intake.app import create_app
from leadbridge_intake.tables import outbox
from leadbridge_intake.testing import free_port, make_settings, new_key, running
from sqlalchemy import func, select

pytestmark = pytest.mark.integration


async def test_kafka_outage_leads_wait_in_outbox_then_flow(fresh_database_url, kafka_bootstrap):
    dead_broker = f"127.0.0.1:{free_port()}"  # nothing listens here
    async with running(make_settings(fresh_database_url, dead_broker)) as (client, app):
        key = await new_key(client)
        ids = []
        for i in range(3):
            r = await client.post("/v1/leads", headers={"X-API-Key": key},
                                  json={"email": f"outage-{i}-{uuid.uuid4().hex[:6]}@example.com"})
            assert r.status_code == 202
            ids.append(r.json()["lead_id"])
        assert not app.state.runtime.kafka_ready.is_set()
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "degraded", "database": "ok",
                                                             "kafka": "unavailable"}
        async with app.state.runtime.sessions() as s:
            unsent = (await s.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None)))).scalar()
        assert unsent == 3
        # a second instance with a working broker on the same database relays what waited
        async with running(make_settings(fresh_database_url, kafka_bootstrap)) as (client2, app2):
            events = await collect_events(kafka_bootstrap, ["lead-captured"], lead_ids=ids, count=3)
            assert sorted(e.lead_id for e in events) == sorted(ids)
            assert (await client2.get("/readyz")).json()["status"] == "ready"


# -- fuzz ------------------------------------------------------------------------------------------

_text = st.text(max_size=40)
_value = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), _text,
                   st.lists(_text, max_size=2), st.dictionaries(_text, _text, max_size=2))
# the lead fields as the OpenAPI document publishes them, plus one it does not know
_lead_fields = st.sampled_from(sorted(create_app().openapi()["paths"]["/v1/leads"]["post"]["requestBody"]["content"]
                                      ["application/json"]["schema"]["properties"]) + ["zzz"])
_email_like = st.sampled_from(["a@example.com", "B@Example.org", "+1 415 555 0123", "0151 12345678", "x@"])
_plausible = st.fixed_dictionaries(
    {"email": st.one_of(st.emails(), _email_like)},
    optional={"name": _text, "company": _text, "channel": _text, "form_type": _text, "campaign": _text,
              "company_size": st.one_of(st.integers(min_value=0, max_value=10**6), _text),
              "consent": st.booleans(), "custom": st.dictionaries(_text, _text, max_size=3),
              "utm": st.dictionaries(st.sampled_from(["utm_source", "utm_medium"]), _text)})
_json_body = st.one_of(_plausible, st.dictionaries(_lead_fields, st.one_of(_email_like, _value), max_size=6), _value)
_follow_up = st.dictionaries(st.sampled_from(["touch_type", "outcome", "reason", "bant", "amount", "occurred_at",
                                              "actor", "note"]),
                             st.one_of(_value, st.sampled_from(["call", "won", "lost", "qualified", "2026-01-01"])),
                             max_size=5)
NASTY_BODIES = ['{"email": NaN}', '{"touch_type": "call", "amount": Infinity}', '{"email": "\\u0000"}', '[1, 2',
                '{"company_size": 1e400, "email": "a@b.io"}', '\u00ff\u00fe', '{"touch_type": "call", "amount": NaN}',
                '{"lead_id": "x", "google_key": "k", "form_id": {"a": 1}}', '{"email": "a@b.io", "custom": {"k": null}}']
NASTY_PATHS = ["/v1/leads", "/v1/leads/LEAD/follow-ups", "/v1/webhooks/google", "/v1/webhooks/meta",
               "/v1/webhooks/linkedin", "/v1/admin/keys"]
_request = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/leads"), _json_body, st.sampled_from(["json", "form", "text"])),
    st.tuples(st.just("GET"), st.builds(lambda s: f"/v1/leads/{quote(s, safe='')}", st.text(min_size=1, max_size=20)),
              st.none(), st.just("json")),
    st.tuples(st.just("POST"), st.just("/v1/leads/LEAD/follow-ups"), _follow_up, st.just("json")),
    st.tuples(st.just("POST"), st.sampled_from(["/v1/webhooks/google", "/v1/webhooks/meta", "/v1/webhooks/linkedin"]),
              _json_body, st.just("json")),
    st.tuples(st.just("GET"), st.sampled_from(["/v1/webhooks/meta", "/v1/webhooks/linkedin", "/healthz"]),
              st.none(), st.just("json")),
)


async def test_fuzz_openapi_surface_never_5xx(fresh_database_url, kafka_bootstrap):
    async with running(make_settings(fresh_database_url, kafka_bootstrap, rate_limit_burst=10_000)) as (client, _app):
        await _fuzz(client, await new_key(client))


async def _fuzz(client, key) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/docs")).status_code == 200
    paths = set((await client.get("/openapi.json")).json()["paths"])
    assert {"/v1/leads", "/v1/leads/{lead_id}/follow-ups", "/v1/webhooks/google"} <= paths
    lead_id = (await client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": "fuzz@example.com"})).json()["lead_id"]
    examples: list = []

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_request)
    def draw(req):  # type: ignore[no-untyped-def]
        examples.append(req)

    draw()
    examples += [("POST", path, body, "raw") for path in NASTY_PATHS for body in NASTY_BODIES]
    seen = set()
    for method, path, body, kind in examples:
        path = path.replace("LEAD", lead_id)
        headers = {"X-API-Key": key}
        if kind == "form" and isinstance(body, dict):
            r = await client.request(method, path, headers=headers, data={k: str(v) for k, v in body.items()})
        elif kind == "raw":
            r = await client.request(method, path, headers={**headers, "Content-Type": "application/json"},
                                     content=body.encode())
        elif kind == "text":
            r = await client.request(method, path, headers={**headers, "Content-Type": "text/plain"},
                                     content=str(body).encode())
        elif body is None:
            r = await client.request(method, path, headers=headers)
        else:
            r = await client.request(method, path, headers=headers, json=body)
        assert r.status_code < 500, (method, path, body, r.status_code, r.text)
        seen.add(r.status_code)
    assert {202, 422} <= seen, seen  # the fuzz reaches both the happy path and validation
