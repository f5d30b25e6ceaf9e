"""Inbound CRM webhooks against the real broker and PostgreSQL: HubSpot (signature v3, stale timestamps,
replays, engagements fetched from the fake) and Salesforce Outbound Messages (Ack, org id, replays)."""

from __future__ import annotations

import json
import time

import pytest
from leadbridge_crm_sync.fakes import outbound_message
from leadbridge_crm_sync.testing import hubspot_headers
from leadbridge_events.testing import collect_events

from .conftest import HS_SECRET, ORG_ID, Crm, Fakes, eventually, routed

pytestmark = pytest.mark.integration
HS_URL = "http://crm-sync/v1/inbound/hubspot/main"


async def _routed_to(crm: Crm, fakes: Fakes, team_suffix: str) -> str:
    event = routed(crm.team + team_suffix)
    await crm.publish(event)

    async def done() -> bool:
        return any(d["status"] == "delivered" for d in await crm.deliveries(event.lead_id))
    await eventually(done, what="delivered")
    return event.lead_id


async def post_hubspot(crm: Crm, events: list[dict], **headers_options) -> tuple[int, dict]:
    body = json.dumps(events).encode()
    headers = hubspot_headers(HS_SECRET, HS_URL, body, **headers_options)
    r = await crm.client.post("/v1/inbound/hubspot/main", content=body, headers=headers)
    return r.status_code, r.json()


async def test_a_call_logged_in_hubspot_comes_back_as_a_follow_up_by_the_rep(crm: Crm, fakes: Fakes):
    lead_id = await _routed_to(crm, fakes, "-hs")
    contact = fakes.hubspot.contact_by_email(f"{lead_id}@example.com")
    call = fakes.hubspot.log_engagement("calls", contact["id"], "71000001",
                                        hs_call_disposition="f240bbac-87c9-4f6e-bf70-924b57d47db7")
    status = fakes.hubspot.property_change(contact["id"], "hs_lead_status", "CONNECTED")
    unrelated = fakes.hubspot.property_change("999999", "hs_lead_status", "CONNECTED")
    code, counts = await post_hubspot(crm, [call, status, unrelated])
    assert code == 200 and counts == {"accepted": 2, "duplicate": 0, "ignored": 1}
    events = await collect_events(crm.bootstrap, ["follow-up-logged"], lead_ids=[lead_id], count=2)
    touch = next(e.data for e in events if e.data.touch_type == "call")
    assert touch.actor == "ada" and touch.outcome == "connected" and e_source(events) == {"crm-sync"}

    code, counts = await post_hubspot(crm, [call, status])  # HubSpot retries the batch
    assert code == 200 and counts["duplicate"] == 2 and counts["accepted"] == 0


def e_source(events) -> set[str]:
    return {e.source for e in events}


async def test_hubspot_requests_badly_signed_or_stale_are_rejected(crm: Crm, fakes: Fakes):
    event = fakes.hubspot.property_change("1", "hs_lead_status", "CONNECTED")
    body = json.dumps([event]).encode()
    headers = hubspot_headers("wrong-secret", HS_URL, body)
    r = await crm.client.post("/v1/inbound/hubspot/main", content=body, headers=headers)
    assert r.status_code == 401 and "does not match" in r.json()["error"]
    stale_ms = int((time.time() - 6 * 60) * 1000)
    code, body_json = await post_hubspot(crm, [event], timestamp_ms=stale_ms)
    assert code == 401 and "older than 5 minutes" in body_json["error"]
    r = await crm.client.post("/v1/inbound/hubspot/main", content=body)
    assert r.status_code == 401
    signed = hubspot_headers(HS_SECRET, HS_URL, body)
    r = await crm.client.post("/v1/inbound/hubspot/main", content=body + b" ", headers=signed)
    assert r.status_code == 401, "a body changed after signing"


async def test_salesforce_task_and_lead_status_are_acknowledged_and_come_back_once(crm: Crm, fakes: Fakes):
    lead_id = await _routed_to(crm, fakes, "-sf")
    sf_lead = fakes.salesforce.lead_by_external_id(lead_id)
    body = outbound_message(ORG_ID, [
        ("04l000000000001AAA", "Task", {"Id": "00T000000000001AAA", "WhoId": sf_lead["Id"],
                                        "OwnerId": "005000000000001AAA", "TaskSubtype": "Call",
                                        "CallDisposition": "Connected", "CreatedDate": "2026-12-01T12:00:00.000Z"}),
        ("04l000000000002AAA", "Lead", {"Id": sf_lead["Id"], "LeadBridge_Id__c": lead_id,
                                        "Status": "Working - Contacted", "OwnerId": "005000000000001AAA"})])
    r = await crm.client.post("/v1/inbound/salesforce/acme", content=body, headers={"Content-Type": "text/xml"})
    assert r.status_code == 200 and "<Ack>true</Ack>" in r.text
    events = await collect_events(crm.bootstrap, ["follow-up-logged"], lead_ids=[lead_id], count=2)
    assert {(e.data.touch_type, e.data.outcome, e.data.actor) for e in events} == {
        ("call", "connected", "ada"), ("note", "connected", "ada")}
    r = await crm.client.post("/v1/inbound/salesforce/acme", content=body, headers={"Content-Type": "text/xml"})
    assert r.status_code == 200 and "<Ack>true</Ack>" in r.text, "a redelivered notification is acknowledged"

    async def counted() -> bool:
        text = (await crm.client.get("/metrics")).text
        return 'leadbridge_crm_inbound_total{crm="salesforce",result="duplicate"}' in text
    await eventually(counted, what="duplicates counted")


async def test_salesforce_messages_from_another_org_or_not_soap_are_refused(crm: Crm):
    body = outbound_message("00D999999999999AAA", [("04l1", "Lead", {"LeadBridge_Id__c": "x", "Status": "x"})])
    r = await crm.client.post("/v1/inbound/salesforce/acme", content=body)
    assert r.status_code == 403 and "OrganizationId" in r.text and "Ack" not in r.text
    r = await crm.client.post("/v1/inbound/salesforce/acme", content=b"{}")
    assert r.status_code == 400 and "Fault" in r.text
