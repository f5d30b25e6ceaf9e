"""Follow-ups from CRMs and the three ad-platform webhooks, with real payload shapes and bad signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid

import pytest
from leadbridge_events.testing import collect_events
from leadbridge_intake.tables import leads, pending_fetches
from leadbridge_intake.testing import GOOGLE_KEY, LI_SECRET, META_SECRET, META_VERIFY
from sqlalchemy import select

pytestmark = pytest.mark.integration


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def wait_for_lead(app, platform: str, pid: str) -> str:  # type: ignore[no-untyped-def]
    for _ in range(200):
        async with app.state.runtime.sessions() as s:
            lead_id = (await s.execute(select(pending_fetches.c.lead_id).where(
                pending_fetches.c.platform == platform, pending_fetches.c.platform_lead_id == pid))).scalar()
        if lead_id:
            return lead_id
        await asyncio.sleep(0.05)
    raise AssertionError("lead was never fetched")


async def test_follow_ups_publish_and_close_the_lead(intake, kafka_bootstrap):
    client, app, key = intake
    h = {"X-API-Key": key}
    lead_id = (await client.post("/v1/leads", headers=h, json={"email": f"{uuid.uuid4().hex}@x.io"})).json()["lead_id"]
    unknown = await client.post(f"/v1/leads/{uuid.uuid4()}/follow-ups", headers=h, json={"touch_type": "call"})
    assert unknown.status_code == 404
    bad = await client.post(f"/v1/leads/{lead_id}/follow-ups", headers=h, json={"touch_type": "call", "outcome": "lost"})
    assert bad.status_code == 422 and "reason is required" in bad.json()["detail"]
    ok = await client.post(f"/v1/leads/{lead_id}/follow-ups", headers=h, json={
        "touch_type": "call", "actor": "rep-1", "outcome": "qualified",
        "bant": {"budget": True, "authority": True, "need": True, "timing": False}})
    assert ok.status_code == 202
    won = await client.post(f"/v1/leads/{lead_id}/follow-ups", headers=h,
                            json={"touch_type": "meeting", "outcome": "won", "amount": 12000})
    assert won.status_code == 202
    late = await client.post(f"/v1/leads/{lead_id}/follow-ups", headers=h, json={"touch_type": "email"})
    assert late.status_code == 409 and "won" in late.json()["detail"]
    view = (await client.get(f"/v1/leads/{lead_id}", headers=h)).json()
    assert view["status"] == "won" and len(view["follow_ups"]) == 2
    await app.state.runtime.kafka_ready.wait()
    events = await collect_events(kafka_bootstrap, ["follow-up-logged"], lead_ids=[lead_id], count=2)
    assert [e.data.outcome.value for e in events] == ["qualified", "won"] and events[1].data.amount == 12000


def meta_payload(leadgen_id: str) -> bytes:
    return json.dumps({"object": "page", "entry": [{"id": "1081", "time": 1732350000, "changes": [{
        "field": "leadgen", "value": {"ad_id": "444", "form_id": "555", "leadgen_id": leadgen_id,
                                      "created_time": 1732350000, "page_id": "1081", "adgroup_id": "333"}}]}]}).encode()


async def test_meta_handshake_signature_and_retrying_fetch(intake, platforms, kafka_bootstrap):
    client, app, _key = intake
    ok = await client.get("/v1/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": META_VERIFY,
                                                       "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = await client.get("/v1/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "x",
                                                        "hub.challenge": "1"})
    assert bad.status_code == 403 and "verify_token" in bad.json()["detail"]
    leadgen_id = str(uuid.uuid4().int)[:16]
    email = f"{uuid.uuid4().hex[:8]}@meta.example"
    platforms.leads[leadgen_id] = {"id": leadgen_id, "created_time": "2026-11-23T10:00:00+0000", "form_id": "555",
                                   "ad_id": "444", "campaign_id": "777", "field_data": [
                                       {"name": "email", "values": [email]},
                                       {"name": "full_name", "values": ["Mia Meta"]},
                                       {"name": "phone_number", "values": ["+4915112345678"]},
                                       {"name": "what_is_your_budget?", "values": ["10k"]}]}
    body = meta_payload(leadgen_id)
    missing = await client.post("/v1/webhooks/meta", content=body)
    assert missing.status_code == 401 and "X-Hub-Signature-256" in missing.json()["detail"]
    forged = await client.post("/v1/webhooks/meta", content=body, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert forged.status_code == 403
    platforms.fail_next = 3  # the Graph API is down for a while: the fetch is kept and retried
    good = {"X-Hub-Signature-256": "sha256=" + sign(META_SECRET, body), "Content-Type": "application/json"}
    r = await client.post("/v1/webhooks/meta", content=body, headers=good)
    assert r.status_code == 200 and r.json()["queued"] == 1
    again = await client.post("/v1/webhooks/meta", content=body, headers=good)
    assert again.json() == {"received": 1, "queued": 0, "duplicates": 1}
    lead_id = await wait_for_lead(app, "meta", leadgen_id)
    async with app.state.runtime.sessions() as s:
        row = (await s.execute(select(pending_fetches).where(pending_fetches.c.platform_lead_id == leadgen_id))).one()
        lead = (await s.execute(select(leads).where(leads.c.id == lead_id))).one()
    assert row.attempts == 4 and lead.email == email and lead.profile["custom"]["what_is_your_budget?"] == "10k"
    assert lead.source == "meta" and lead.profile["campaign"] == "777"
    await app.state.runtime.kafka_ready.wait()
    [event] = await collect_events(kafka_bootstrap, ["lead-captured"], lead_ids=[lead_id], count=1)
    assert event.data.dedupe_key == leadgen_id


def google_payload(lead_id: str, email: str, *, is_test: bool = False, key: str | None = GOOGLE_KEY) -> dict:
    body = {"lead_id": lead_id, "api_version": "1.0", "form_id": 4242, "campaign_id": 12345, "adgroup_id": 1,
            "creative_id": 2, "gcl_id": "EAIaIQob", "is_test": is_test, "user_column_data": [
                {"column_name": "Full Name", "string_value": "Gus Google", "column_id": "FULL_NAME"},
                {"column_name": "User Email", "string_value": email, "column_id": "EMAIL"},
                {"column_name": "User Phone", "string_value": "+1 650-253-0000", "column_id": "PHONE_NUMBER"},
                {"column_name": "Company size?", "string_value": "11-50", "column_id": "COMPANY_SIZE"}]}
    if key is not None:
        body["google_key"] = key
    return body


async def test_google_lead_form_key_mapping_test_flag_and_dedupe(intake):
    client, app, _ = intake
    email = f"{uuid.uuid4().hex[:8]}@google.example"
    gid = f"TeSter-{uuid.uuid4().hex}"
    assert (await client.post("/v1/webhooks/google", json=google_payload(gid, email, key=None))).status_code == 401
    wrong = await client.post("/v1/webhooks/google", json=google_payload(gid, email, key="nope"))
    assert wrong.status_code == 403 and "form 4242" in wrong.json()["detail"]
    r = await client.post("/v1/webhooks/google", json=google_payload(gid, email))
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    dup = await client.post("/v1/webhooks/google", json=google_payload(gid, email))
    assert dup.json()["status"] == "duplicate" and dup.json()["lead_id"] == r.json()["lead_id"]
    burst_id = uuid.uuid4().hex  # Google retries in parallel: one lead
    burst = await asyncio.gather(*(client.post("/v1/webhooks/google",
                                               json=google_payload(burst_id, f"{burst_id[:8]}@g.example"))
                                   for _ in range(5)))
    assert len({b.json()["lead_id"] for b in burst}) == 1 and [b.json()["status"] for b in burst].count("duplicate") == 4
    test_lead = await client.post("/v1/webhooks/google", json=google_payload(uuid.uuid4().hex, email, is_test=True))
    assert test_lead.json()["is_test"] is True
    async with app.state.runtime.sessions() as s:
        rows = {row.id: row for row in (await s.execute(select(leads))).all()}
    real, test = rows[r.json()["lead_id"]], rows[test_lead.json()["lead_id"]]
    assert real.phone == "+16502530000" and real.profile["company_size"] == 11 and real.profile["channel"] == "paid"
    assert test.is_test and test.status == "test"


async def test_linkedin_challenge_signature_and_fetch(intake, platforms):
    client, app, _ = intake
    r = await client.get("/v1/webhooks/linkedin", params={"challengeCode": "890e4665-4dfe-4ab1-b689-ed553ceeb1b6"})
    assert r.json()["challengeResponse"] == sign(LI_SECRET, b"890e4665-4dfe-4ab1-b689-ed553ceeb1b6")
    rid = f"{uuid.uuid4()}"
    email = f"{uuid.uuid4().hex[:8]}@linkedin.example"
    platforms.forms["9001"] = {"id": 9001, "content": {"questions": [
        {"questionId": 1, "name": "firstName", "predefinedField": "FIRST_NAME"},
        {"questionId": 2, "name": "email", "predefinedField": "EMAIL"},
        {"questionId": 3, "name": "title", "predefinedField": "JOB_TITLE"}]}}
    platforms.leads[rid] = {"id": rid, "submittedAt": 1732350000000, "testLead": False,
                            "versionedLeadGenFormUrn": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:9001,1)",
                            "formResponse": {"answers": [
                                {"questionId": 1, "answerDetails": {"textQuestionAnswer": {"answer": "Lin"}}},
                                {"questionId": 2, "answerDetails": {"textQuestionAnswer": {"answer": email}}},
                                {"questionId": 3, "answerDetails": {"textQuestionAnswer": {"answer": "CTO"}}}],
                                "consentResponses": [{"accepted": True, "consentId": 1}]}}
    body = json.dumps({"type": "LEAD_ACTION", "leadGenFormResponse": f"urn:li:leadGenFormResponse:{rid}",
                       "leadGenForm": "urn:li:leadGenForm:9001", "leadAction": "CREATED",
                       "owner": {"sponsoredAccount": "urn:li:sponsoredAccount:1"}, "occuredAt": 1732350000000}).encode()
    assert (await client.post("/v1/webhooks/linkedin", content=body)).status_code == 401
    assert (await client.post("/v1/webhooks/linkedin", content=body, headers={"X-LI-Signature": "ab"})).status_code == 403
    ok = await client.post("/v1/webhooks/linkedin", content=body, headers={"X-LI-Signature": sign(LI_SECRET, body)})
    assert ok.status_code == 200 and ok.json()["queued"] == 1
    lead_id = await wait_for_lead(app, "linkedin", rid)
    async with app.state.runtime.sessions() as s:
        lead = (await s.execute(select(leads).where(leads.c.id == lead_id))).one()
    assert lead.email == email and lead.profile["job_title"] == "CTO" and lead.profile["consent"] is True
