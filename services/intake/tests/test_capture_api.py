"""POST /v1/leads end to end: JSON and browser form posts, auth, limits, dedupe, events on the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_events.testing import auth_headers, collect_events
from leadbridge_intake.tables import leads, outbox
from leadbridge_intake.testing import ADMIN, make_settings, new_key, running
from sqlalchemy import func, select

pytestmark = pytest.mark.integration


def unique_email() -> str:
    return f"Jane.{uuid.uuid4().hex[:8]}@Example.COM"


async def count(app, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with app.state.runtime.sessions() as s:
        return (await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def test_json_lead_is_accepted_normalized_and_published(intake, kafka_bootstrap):
    client, app, key = intake
    email = unique_email()
    r = await client.post("/v1/leads", headers={"X-API-Key": key}, json={
        "email": email, "phone": "030 1234567", "country": "de", "name": "Jane Roe", "company": "Acme",
        "company_size": "51-200", "channel": "Paid", "form_type": "Demo Request", "consent": True,
        "utm": {"utm_source": "google"}, "custom": {"plan": "pro"}})
    assert r.status_code == 202, r.text
    lead_id = r.json()["lead_id"]
    assert r.json()["status"] == "accepted"
    got = await client.get(f"/v1/leads/{lead_id}", headers={"X-API-Key": key})
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "captured"
    assert body["profile"]["contact"] == {"email": email.lower(), "phone": "+49301234567", "name": "Jane Roe"}
    assert body["profile"]["company_size"] == 51 and body["profile"]["form_type"] == "demo_request"
    assert body["profile"]["source"] == "website"
    await app.state.runtime.kafka_ready.wait()
    [event] = await collect_events(kafka_bootstrap, ["lead-captured"], lead_ids=[lead_id], count=1)
    assert event.type == "lead-captured" and event.data.profile.contact.email == email.lower()


async def test_browser_form_post_cors_redirect_and_honeypot(fresh_database_url, kafka_bootstrap):
    settings = make_settings(fresh_database_url, kafka_bootstrap, thank_you_url="https://www.example.com/thanks")
    async with running(settings) as (client, app):
        key = await new_key(client, source="web_form", scopes=["leads:write"])
        pre = await client.options("/v1/leads", headers={"Origin": "https://www.example.com",
                                                          "Access-Control-Request-Method": "POST"})
        assert pre.headers["access-control-allow-origin"] == "https://www.example.com"
        form = {"email": unique_email(), "first_name": "Ann", "last_name": "Lee", "consent": "on",
                "utm_campaign": "spring", "favourite_color": "blue", "_hp": ""}
        r = await client.post(f"/v1/leads?api_key={key}", data=form, headers={"Origin": "https://www.example.com"})
        assert r.status_code == 303 and r.headers["location"] == "https://www.example.com/thanks"
        assert r.headers["access-control-allow-origin"] == "https://www.example.com"
        [row] = (await _rows(app))
        assert row.profile["contact"]["name"] == "Ann Lee" and row.profile["consent"] is True
        assert row.profile["utm"] == {"utm_campaign": "spring"} and row.profile["custom"] == {"favourite_color": "blue"}
        bot = await client.post(f"/v1/leads?api_key={key}", data={**form, "email": unique_email(), "_hp": "spam"})
        assert bot.status_code == 303  # the bot sees success; nothing is stored
        assert len(await _rows(app)) == 1
        # a form key cannot read leads
        denied = await client.get(f"/v1/leads/{row.id}", headers={"X-API-Key": key})
        assert denied.status_code == 403 and "leads:read" in denied.json()["detail"]


async def _rows(app):  # type: ignore[no-untyped-def]
    async with app.state.runtime.sessions() as s:
        return (await s.execute(select(leads))).all()


async def test_auth_failures_say_why(intake):
    client, _app, key = intake
    body = {"email": unique_email()}
    missing = await client.post("/v1/leads", json=body)
    assert missing.status_code == 401 and missing.json()["error"] == "missing_api_key"
    unknown = await client.post("/v1/leads", json=body, headers={"X-API-Key": "lb_nope"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "unknown_api_key"
    key_id = key[:11]
    revoked = await client.delete(f"/v1/admin/keys/{key_id}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert revoked.status_code == 200
    r = await client.post("/v1/leads", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["error"] == "revoked_api_key"
    admin = await client.post("/v1/admin/keys", json={"source": "x"}, headers={"Authorization": "Bearer wrong"})
    assert admin.status_code == 401 and admin.json()["error"] == "invalid_token"
    assert admin.headers["www-authenticate"].startswith("Bearer")
    no_scope = await client.post("/v1/admin/keys", json={"source": "x"}, headers=auth_headers(["insights:read"]))
    assert no_scope.status_code == 403 and no_scope.json()["missing_scopes"] == ["keys:admin"]


async def test_validation_size_and_rate_limits(fresh_database_url, kafka_bootstrap):
    settings = make_settings(fresh_database_url, kafka_bootstrap, rate_limit_burst=5, rate_limit_per_minute=1)
    async with running(settings) as (client, _app):
        key = await new_key(client)
        h = {"X-API-Key": key}
        r = await client.post("/v1/leads", headers=h, json={"email": "not-an-email", "country": "Germany"})
        assert r.status_code == 422
        fields = {e["field"] for e in r.json()["errors"]}
        assert {"email", "country"} <= fields
        r = await client.post("/v1/leads", headers=h, json={"name": "No Contact"})
        assert r.status_code == 422 and "email or phone is required" in r.json()["detail"]
        big = await client.post("/v1/leads", headers=h, content=b"{" + b" " * 70_000 + b"}",
                                 )
        assert big.status_code == 413 and big.json()["error"] == "body_too_large"
        statuses = [(await client.post("/v1/leads", headers=h, json={"email": unique_email()})).status_code
                    for _ in range(5)]
        assert statuses[-1] == 429 and statuses[:2] == [202, 202]
        limited = await client.post("/v1/leads", headers=h, json={"email": unique_email()})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_out_of_range_numbers_and_the_largest_lead(intake):
    """An unbounded company_size used to be accepted (202) and then dead-lettered by scoring's float()."""
    from leadbridge_intake.testing import maximal_lead

    client, _app, key = intake
    h = {"X-API-Key": key}
    for size in (10**400, 10_000_001):
        body = f'{{"email": "{unique_email()}", "company_size": {size}}}'  # JSON numbers have no size limit
        r = await client.post("/v1/leads", headers={**h, "Content-Type": "application/json"}, content=body)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["company_size"] and "at most" in r.json()["detail"]
    largest = await client.post("/v1/leads", headers=h, json=maximal_lead(uuid.uuid4().hex[:8]))
    assert largest.status_code == 202, largest.text


async def test_idempotency_key_sequential_and_concurrent(intake):
    client, app, key = intake
    body = {"email": unique_email(), "form_type": "pricing"}
    h = {"X-API-Key": key, "Idempotency-Key": f"submit-{uuid.uuid4()}"}
    first = await client.post("/v1/leads", headers=h, json=body)
    again = await client.post("/v1/leads", headers=h, json=body)
    assert first.status_code == again.status_code == 202
    assert again.json() == {"lead_id": first.json()["lead_id"], "status": "duplicate"}
    h2 = {"X-API-Key": key, "Idempotency-Key": f"click-{uuid.uuid4()}"}
    body2 = {"email": unique_email()}
    answers = await asyncio.gather(*(client.post("/v1/leads", headers=h2, json=body2) for _ in range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["lead_id"] for a in answers}) == 1
    assert sorted(a.json()["status"] for a in answers).count("accepted") == 1
    assert await count(app, leads) == 2
    assert await count(app, outbox) == 2


async def test_repeat_person_becomes_activity_even_when_concurrent(intake, kafka_bootstrap):
    client, app, key = intake
    h = {"X-API-Key": key}
    email = unique_email()
    answers = await asyncio.gather(*(client.post("/v1/leads", headers=h, json={"email": email, "form_type": f"f{i}"})
                                     for i in range(4)))
    assert len({a.json()["lead_id"] for a in answers}) == 1
    assert sorted(a.json()["status"] for a in answers) == ["accepted"] + ["activity_recorded"] * 3
    lead_id = answers[0].json()["lead_id"]
    # same person by phone, another channel
    r = await client.post("/v1/leads", headers=h, json={"phone": "+1 415 555 0123", "email": email.upper()})
    assert r.json() == {"lead_id": lead_id, "status": "activity_recorded"}
    assert (await client.get(f"/v1/leads/{lead_id}", headers=h)).json()["activity_count"] == 4
    await app.state.runtime.kafka_ready.wait()
    events = await collect_events(kafka_bootstrap, ["lead-captured"], lead_ids=[lead_id], count=5)
    assert [e.type for e in events].count("lead-activity-recorded") == 4


async def test_repeat_window_is_configurable(fresh_database_url, kafka_bootstrap):
    async with running(make_settings(fresh_database_url, kafka_bootstrap, repeat_window_hours=0)) as (client, _):
        key = await new_key(client)
        email = unique_email()
        a = await client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": email})
        await asyncio.sleep(0.01)
        b = await client.post("/v1/leads", headers={"X-API-Key": key}, json={"email": email})
        assert a.json()["lead_id"] != b.json()["lead_id"]
