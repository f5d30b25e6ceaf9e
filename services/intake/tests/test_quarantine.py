"""Quarantine instead of drop: a platform lead we answered 200 for but that fails mapping or validation is kept
with its raw payload and the reason, counted, listed by the admin API and re-processed into a lead after a fix.
And the fetcher handles pending rows one by one: one failing row never holds back the others."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from leadbridge_intake import fetcher as fetcher_module
from leadbridge_intake.tables import leads, pending_fetches, quarantined_leads
from leadbridge_intake.testing import ADMIN, LI_SECRET, META_SECRET
from prometheus_client import REGISTRY
from sqlalchemy import select

from .test_followups_and_webhooks import google_payload, sign, wait_for_lead

pytestmark = pytest.mark.integration
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


def quarantined_count(platform: str, reason: str) -> float:
    return REGISTRY.get_sample_value("intake_quarantined_total", {"platform": platform, "reason": reason}) or 0


def meta_lead(leadgen_id: str, email: str, *, phone: str = "+4915112345678", country: str | None = None) -> dict:
    fields = [{"name": "email", "values": [email]}, {"name": "phone_number", "values": [phone]}]
    if country is not None:
        fields.append({"name": "country", "values": [country]})
    return {"id": leadgen_id, "created_time": "2026-11-23T10:00:00+0000", "form_id": "555", "field_data": fields}


async def notify_meta(client, leadgen_ids: list[str]) -> None:
    body = json.dumps({"object": "page", "entry": [{"id": "1", "time": 1, "changes": [
        {"field": "leadgen", "value": {"leadgen_id": lid, "form_id": "555"}} for lid in leadgen_ids]}]}).encode()
    r = await client.post("/v1/webhooks/meta", content=body, headers={
        "X-Hub-Signature-256": "sha256=" + sign(META_SECRET, body), "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["queued"] == len(leadgen_ids)


async def wait_done(app, platform: str, pid: str):  # type: ignore[no-untyped-def]
    for _ in range(200):
        async with app.state.runtime.sessions() as s:
            row = (await s.execute(select(pending_fetches).where(pending_fetches.c.platform == platform,
                                                                 pending_fetches.c.platform_lead_id == pid))).one()
        if row.done_at is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"{platform} {pid} was never handled")


async def test_an_invalid_meta_lead_is_quarantined_listed_and_reprocessed_into_one_lead(intake, platforms):
    client, app, _ = intake
    bad, good, free_text = (str(uuid.uuid4().int)[:16] for _ in range(3))
    tag = uuid.uuid4().hex[:8]
    platforms.leads[bad] = meta_lead(bad, f"bad-{tag}@meta.example", phone="call me maybe")
    platforms.leads[good] = meta_lead(good, f"good-{tag}@meta.example")
    platforms.leads[free_text] = meta_lead(free_text, f"ft-{tag}@meta.example", country="Germany, mostly")
    phones_before = quarantined_count("meta", "invalid_phone")
    countries_before = quarantined_count("meta", "invalid_country")
    await notify_meta(client, [bad, good, free_text])
    assert await wait_for_lead(app, "meta", good)
    row = await wait_done(app, "meta", bad)
    assert row.lead_id is None and "quarantined (invalid_phone)" in row.last_error
    await wait_done(app, "meta", free_text)
    assert quarantined_count("meta", "invalid_phone") == phones_before + 1
    assert quarantined_count("meta", "invalid_country") == countries_before + 1

    # listed for admins only, without raw payloads; one shows its raw payload and the failing field
    assert (await client.get("/v1/admin/quarantine")).status_code == 401
    listing = (await client.get("/v1/admin/quarantine", params={"platform": "meta"}, headers=ADMIN_H)).json()
    by_pid = {item["platform_lead_id"]: item for item in listing}
    assert set(by_pid) == {bad, free_text} and all(item["raw"] is None for item in listing)
    item = by_pid[bad]
    assert item["reason"] == "invalid_phone" and item["status"] == "quarantined"
    assert item["errors"][0]["field"] == "phone" and "call me maybe" not in json.dumps(item["errors"])
    shown = (await client.get(f"/v1/admin/quarantine/{item['quarantine_id']}", headers=ADMIN_H)).json()
    assert shown["raw"]["field_data"][1]["values"] == ["call me maybe"]

    # re-processing as it is still fails (422, still quarantined); with the phone corrected it becomes a lead
    url = f"/v1/admin/quarantine/{item['quarantine_id']}/reprocess"
    still = await client.post(url, headers=ADMIN_H)
    assert still.status_code == 422 and still.json()["reason"] == "invalid_phone"
    fixed = await client.post(url, headers=ADMIN_H, json={"corrections": {"phone": "+4915112345670"}})
    assert fixed.status_code == 200 and fixed.json()["status"] == "accepted", fixed.text
    lead_id = fixed.json()["lead_id"]
    again = await client.post(url, headers=ADMIN_H, json={"corrections": {"phone": "+4915112345670"}})
    assert again.json() == {"quarantine_id": item["quarantine_id"], "status": "already_released", "lead_id": lead_id}
    async with app.state.runtime.sessions() as s:
        lead = (await s.execute(select(leads).where(leads.c.id == lead_id))).one()
        fetch = (await s.execute(select(pending_fetches).where(pending_fetches.c.platform_lead_id == bad))).one()
    assert lead.source == "meta" and lead.phone == "+4915112345670" and lead.dedupe_key == bad
    assert fetch.lead_id == lead_id

    # a bulk re-process (e.g. after a mapping change) leaves what is still unusable in quarantine
    bulk = (await client.post("/v1/admin/quarantine/reprocess", params={"platform": "meta"}, headers=ADMIN_H)).json()
    assert bulk["released"] == [] and [s["reason"] for s in bulk["still_quarantined"]] == ["invalid_country"]


async def test_an_invalid_google_lead_is_kept_and_answered_200_and_redeliveries_find_it(intake):
    client, app, _ = intake
    gid = f"g-{uuid.uuid4().hex}"
    body = google_payload(gid, "not-an-email")
    before = quarantined_count("google", "invalid_email")
    r = await client.post("/v1/webhooks/google", json=body)
    assert r.status_code == 200, r.text  # Google resends nothing after a 4xx: it is kept, not refused
    assert r.json()["status"] == "quarantined" and r.json()["reason"] == "invalid_email"
    redelivered = await client.post("/v1/webhooks/google", json=body)
    assert redelivered.status_code == 200 and redelivered.json()["quarantine_id"] == r.json()["quarantine_id"]
    assert quarantined_count("google", "invalid_email") == before + 1
    async with app.state.runtime.sessions() as s:
        row = (await s.execute(select(quarantined_leads).where(quarantined_leads.c.platform_lead_id == gid))).one()
    assert "google_key" not in row.raw and row.raw["lead_id"] == gid  # the secret is never stored

    fixed = await client.post(f"/v1/admin/quarantine/{row.id}/reprocess", headers=ADMIN_H,
                              json={"corrections": {"email": f"{gid}@google.example"}})
    assert fixed.status_code == 200 and fixed.json()["status"] == "accepted"
    late = await client.post("/v1/webhooks/google", json=body)  # a redelivery after the release: no second lead
    assert late.json() == {"lead_id": fixed.json()["lead_id"], "status": "duplicate", "is_test": False}


async def test_an_unmappable_linkedin_payload_is_quarantined_not_retried_forever(intake, platforms):
    client, app, _ = intake
    rid = str(uuid.uuid4())
    platforms.leads[rid] = {"id": rid, "formResponse": {"answers": []}, "leadMetadata": {"sponsoredLeadMetadata": "?"}}
    body = json.dumps({"type": "LEAD_ACTION", "leadGenFormResponse": f"urn:li:leadGenFormResponse:{rid}",
                       "leadAction": "CREATED"}).encode()
    ok = await client.post("/v1/webhooks/linkedin", content=body, headers={"X-LI-Signature": sign(LI_SECRET, body)})
    assert ok.status_code == 200
    row = await wait_done(app, "linkedin", rid)
    assert "quarantined (unmappable)" in row.last_error
    listing = (await client.get("/v1/admin/quarantine", params={"platform": "linkedin"}, headers=ADMIN_H)).json()
    assert [i["reason"] for i in listing if i["platform_lead_id"] == rid] == ["unmappable"]


async def test_one_failing_row_does_not_hold_back_the_others(intake, platforms, monkeypatch):
    client, app, _ = intake
    ids = [str(uuid.uuid4().int)[:16] for _ in range(4)]
    broken = ids[1]
    for lid in ids:
        platforms.leads[lid] = meta_lead(lid, f"{lid}@meta.example")
    real_capture = fetcher_module.capture_lead

    async def capture_failing_for_one(session, profile, **options):  # type: ignore[no-untyped-def]
        if options.get("dedupe_key") == broken:
            raise RuntimeError("a bug handling this one row")
        return await real_capture(session, profile, **options)

    monkeypatch.setattr(fetcher_module, "capture_lead", capture_failing_for_one)
    await notify_meta(client, ids)
    for lid in ids:
        if lid != broken:
            assert await wait_for_lead(app, "meta", lid)
    async with app.state.runtime.sessions() as s:
        row = (await s.execute(select(pending_fetches).where(pending_fetches.c.platform_lead_id == broken))).one()
    assert row.done_at is None and row.attempts >= 1 and "a bug handling this one row" in row.last_error
    monkeypatch.setattr(fetcher_module, "capture_lead", real_capture)  # fixed: the kept row goes through
    assert await wait_for_lead(app, "meta", broken)
