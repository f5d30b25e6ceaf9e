"""crm-sync against the real broker and PostgreSQL, delivering to the local fakes of HubSpot, Salesforce and a
webhook receiver: create, update, owner change, 401 token expiry, 429 with Retry-After, 5xx, timeouts,
receiver restarts and outages, exactly once per destination, ordering, pause, dead letters and replay."""

from __future__ import annotations

import asyncio
from datetime import UTC

import pytest
from leadbridge_events.testing import collect_events

from .conftest import Crm, Fakes, eventually, routed

pytestmark = pytest.mark.integration


async def delivered(crm: Crm, lead_id: str, destination: str, count: int = 1) -> list[dict]:
    async def check() -> bool:
        ds = [d for d in await crm.deliveries(lead_id) if d["destination"] == destination]
        return sum(d["status"] == "delivered" for d in ds) >= count
    await eventually(check, what=f"{count} deliveries of {lead_id} to {destination}")
    return [d for d in await crm.deliveries(lead_id) if d["destination"] == destination]


async def test_hubspot_contact_is_created_owned_and_noted_then_a_reroute_changes_the_owner(crm: Crm, fakes: Fakes):
    first = routed(crm.team + "-hs")
    await crm.publish(first)
    await delivered(crm, first.lead_id, "hubspot:main")
    contact = fakes.hubspot.contact_by_email(f"{first.lead_id}@example.com")
    assert contact["properties"]["hubspot_owner_id"] == "71000001"
    assert contact["properties"]["hs_lead_status"] == "NEW" and contact["properties"]["firstname"] == "Pat"
    note = next(n for n in fakes.hubspot.notes if n["associations"][0]["to"]["id"] == contact["id"])
    assert "round robin" in note["properties"]["hs_note_body"]
    assert note["associations"][0]["types"][0]["associationTypeId"] == 202

    contact["properties"]["hs_lead_status"] = "ATTEMPTED_TO_CONTACT"  # the rep works the lead in HubSpot
    again = routed(crm.team + "-hs", lead_id=first.lead_id, rep="bob", hubspot_owner="71000002", attempt=2)
    await crm.publish(again)
    await delivered(crm, first.lead_id, "hubspot:main", count=2)
    assert fakes.hubspot.contact_by_email(f"{first.lead_id}@example.com")["id"] == contact["id"], "updated, not new"
    assert fakes.hubspot.owner_history[contact["id"]] == ["71000001", "71000002"]
    assert contact["properties"]["hs_lead_status"] == "ATTEMPTED_TO_CONTACT", "a re-route keeps the rep's status"

    recorded = await collect_events(crm.bootstrap, ["crm-deliveries"], lead_ids=[first.lead_id], count=2)
    assert {e.data.result for e in recorded} == {"delivered"} and recorded[0].data.crm_record_id == contact["id"]


async def test_hubspot_429_with_retry_after_and_5xx_are_retried_and_logged(crm: Crm, fakes: Fakes):
    fakes.hubspot.fail_next.extend([(429, {"Retry-After": "1"}), (502, {})])
    event = routed(crm.team + "-hs")
    await crm.publish(event)
    [d] = await delivered(crm, event.lead_id, "hubspot:main")
    assert [a["status_code"] for a in d["log"]] == [429, 502, 200]
    assert [a["result"] for a in d["log"]] == ["failed", "failed", "delivered"]
    assert "RATE_LIMIT" in d["log"][0]["error"]
    # Retry-After: 1 s was honoured although the schedule's first step is 0.2 s
    first, second = (a["at"] for a in d["log"][:2])
    from datetime import datetime
    assert (datetime.fromisoformat(second) - datetime.fromisoformat(first)).total_seconds() >= 0.95


async def test_hubspot_timeouts_are_retried(crm: Crm, fakes: Fakes):
    fakes.hubspot.delay_seconds = 1.5  # the client gives up after 1 s
    event = routed(crm.team + "-hs")
    await crm.publish(event)
    await eventually(lambda: _has_attempt(crm, event.lead_id), what="a timed-out attempt")
    fakes.hubspot.delay_seconds = 0
    [d] = await delivered(crm, event.lead_id, "hubspot:main")
    assert d["log"][0]["error"] == "timed out" and d["log"][-1]["result"] == "delivered"


async def _has_attempt(crm: Crm, lead_id: str) -> bool:
    return any(d["log"] for d in await crm.deliveries(lead_id))


async def test_a_lead_without_email_is_skipped_for_hubspot(crm: Crm, fakes: Fakes):
    event = routed(crm.team + "-hs", email=None)
    await crm.publish(event)
    await eventually(lambda: _has_attempt(crm, event.lead_id), what="an attempt")
    [d] = await crm.deliveries(event.lead_id)
    assert d["status"] == "skipped" and "email" in d["log"][0]["error"]


async def test_salesforce_lead_upserted_by_external_id_and_the_token_refreshed_on_401(crm: Crm, fakes: Fakes):
    sf = fakes.salesforce
    first = routed(crm.team + "-sf")
    await crm.publish(first)
    [d] = await delivered(crm, first.lead_id, "salesforce:acme")
    lead = sf.lead_by_external_id(first.lead_id)
    assert lead["OwnerId"] == "005000000000001AAA" and lead["LeadSource"] == "LeadBridge"
    assert lead["Status"] == "Open - Not Contacted" and lead["LastName"] == "Example" and lead["Company"] == "Acme"
    assert d["log"][0]["status_code"] == 201 and d["crm_record_id"] == lead["Id"]

    sf.expire_tokens()
    fetches = crm.app.state.salesforce["acme"].token_fetches
    again = routed(crm.team + "-sf", lead_id=first.lead_id, rep="bob", sf_owner="005000000000002AAA", attempt=2)
    await crm.publish(again)
    deliveries = await delivered(crm, first.lead_id, "salesforce:acme", count=2)
    assert deliveries[1]["log"] == [{**deliveries[1]["log"][0], "result": "delivered", "status_code": 200}]
    assert crm.app.state.salesforce["acme"].token_fetches == fetches + 1, "one refresh, inside the attempt"
    assert sf.owner_history[lead["Id"]] == ["005000000000001AAA", "005000000000002AAA"]


async def test_salesforce_5xx_is_retried_and_a_validation_error_is_dead_lettered(crm: Crm, fakes: Fakes):
    fakes.salesforce.fail_next.append((503, {}))
    event = routed(crm.team + "-sf")
    await crm.publish(event)
    [d] = await delivered(crm, event.lead_id, "salesforce:acme")
    assert [a["status_code"] for a in d["log"]] == [503, 201]


async def test_webhooks_are_signed_ordered_per_lead_and_delivered_once_across_receiver_restarts(
        crm: Crm, fakes: Fakes):
    receiver, server = fakes.receiver, fakes.receiver_server
    sub = await crm.subscribe(receiver, server.url + "/hook")
    leads = [routed(crm.team) for _ in range(8)]
    reroutes = [routed(crm.team, lead_id=e.lead_id, rep="bob", attempt=2) for e in leads]
    await crm.publish(*leads[:4])
    await asyncio.sleep(0.3)
    server.stop()  # the receiver restarts while deliveries are under way
    await crm.publish(*leads[4:], *reroutes)
    await asyncio.sleep(1.0)
    server.start()
    await eventually(lambda: _all_delivered(crm, [e.lead_id for e in leads], 2), timeout=30, what="all delivered")
    ids = {m for m in receiver.order if receiver.messages[m]["data"]["lead_id"] in {e.lead_id for e in leads}}
    assert len(ids) == 16, "every routing of every lead, once per destination"
    assert all(receiver.seen[m] == 1 for m in ids), {m: receiver.seen[m] for m in ids if receiver.seen[m] != 1}
    for e in leads:
        attempts = [m["data"]["attempt"] for m in receiver.of_lead(e.lead_id)]
        assert attempts == [1, 2], "a lead's events arrive in order"
    health = {d["id"]: d for d in (await crm.client.get("/v1/destinations", headers=crm.auth)).json()}
    assert health[sub["destination"]]["failing_since"] is None and health[sub["destination"]]["delivered"] == 16


async def _all_delivered(crm: Crm, lead_ids: list[str], each: int) -> bool:
    for lead_id in lead_ids:
        if sum(d["status"] == "delivered" for d in await crm.deliveries(lead_id)) < each:
            return False
    return True


async def test_an_outage_blocks_the_endpoint_without_a_hot_loop_and_nothing_is_lost(crm: Crm, fakes: Fakes):
    hubspot = fakes.hubspot
    hubspot.down = True
    before = len(hubspot.requests)
    leads = [routed(crm.team + "-hs") for _ in range(10)]
    await crm.publish(*leads)
    await asyncio.sleep(2.0)
    during = len(hubspot.requests) - before
    # 10 leads, one batch per probe; schedule 0.2, 0.3, 0.4, 0.5 ... s: at most ~6 probes in 2 s
    assert 1 <= during <= 8, f"{during} requests in 2 s of outage"
    hubspot.down = False
    await eventually(lambda: _all_delivered(crm, [e.lead_id for e in leads], 1), timeout=20, what="recovery")
    for e in leads:
        assert hubspot.upserts[f"{e.lead_id}@example.com"] == 1, "each routed lead upserted exactly once"
        assert [d["status"] for d in await crm.deliveries(e.lead_id)] == ["delivered"]


async def test_secret_rotation_signs_with_both_until_the_grace_period_ends(crm: Crm, fakes: Fakes):
    receiver, server = fakes.receiver, fakes.receiver_server
    sub = await crm.subscribe(receiver, server.url + "/hook")
    old = receiver.secret
    r = await crm.client.post(f"/v1/subscriptions/{sub['id']}/rotate-secret", headers=crm.auth)
    assert r.status_code == 200 and r.json()["secret"] != old
    event = routed(crm.team)
    await crm.publish(event)  # the receiver still has the old secret: it verifies
    await delivered(crm, event.lead_id, sub["destination"])
    receiver.secret = r.json()["secret"]


@pytest.mark.parametrize("crm", [{"CRM_SYNC_PAUSE_AFTER_SECONDS": 1.0,
                                  "CRM_SYNC_RETRY_SCHEDULE_SECONDS": "[0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]"}],
                         indirect=True)
async def test_an_endpoint_failing_too_long_is_paused_then_resumed_and_dead_letters_replayed(crm: Crm, fakes: Fakes):
    receiver, server = fakes.receiver, fakes.receiver_server
    sub = await crm.subscribe(receiver, server.url + "/hook")
    receiver.fail_next.extend([(500, {})] * 50)
    event = routed(crm.team)
    await crm.publish(event)

    async def paused() -> bool:
        dests = (await crm.client.get("/v1/destinations", headers=crm.auth)).json()
        return any(d["id"] == sub["destination"] and d["paused"] for d in dests)
    await eventually(paused, what="paused")
    text = (await crm.client.get("/metrics")).text
    await asyncio.sleep(0.3)
    text = (await crm.client.get("/metrics")).text
    assert f'leadbridge_crm_endpoint_paused{{destination="{sub["destination"]}"}} 1.0' in text
    attempts = len((await crm.deliveries(event.lead_id))[0]["log"])
    await asyncio.sleep(0.6)
    assert len((await crm.deliveries(event.lead_id))[0]["log"]) == attempts, "a paused endpoint gets nothing"

    receiver.fail_next.clear()
    r = await crm.client.post(f"/v1/destinations/{sub['destination']}/resume", headers=crm.auth)
    assert r.status_code == 200
    await delivered(crm, event.lead_id, sub["destination"])



@pytest.mark.parametrize("crm", [{"CRM_SYNC_RETRY_SCHEDULE_SECONDS": "0.1,0.1,0.1"}], indirect=True)
async def test_a_delivery_out_of_retries_is_dead_lettered_and_replayed(crm: Crm, fakes: Fakes):
    receiver, server = fakes.receiver, fakes.receiver_server
    sub = await crm.subscribe(receiver, server.url + "/hook")
    receiver.fail_next.extend([(503, {})] * 4)  # the first attempt and all three retries
    event = routed(crm.team)
    await crm.publish(event)

    async def dead() -> bool:
        ds = await crm.deliveries(event.lead_id)
        return bool(ds) and ds[0]["status"] == "dead"
    await eventually(dead, what="dead-lettered")
    [d] = await crm.deliveries(event.lead_id)
    assert [a["result"] for a in d["log"]] == ["failed", "failed", "failed", "dead"]
    r = await crm.client.post(f"/v1/destinations/{sub['destination']}/replay", headers=crm.auth)
    assert r.json()["replayed"] == 1
    [d] = await delivered(crm, event.lead_id, sub["destination"])
    assert d["log"][-1]["result"] == "delivered" and receiver.seen[d["delivery_id"]] == 1


async def test_the_admin_api_needs_the_token_and_validates_its_input(crm: Crm):
    assert (await crm.client.get("/v1/subscriptions")).status_code == 401
    r = await crm.client.post("/v1/subscriptions", headers=crm.auth, json={"url": "ftp://x", "event_types": ["nope"]})
    assert r.status_code == 422 and "event type" in r.text


async def test_sla_events_reach_only_the_subscribers_of_that_type_and_team(crm: Crm, fakes: Fakes):
    from datetime import datetime, timedelta

    from leadbridge_contracts.envelope import Envelope
    from leadbridge_contracts.events import SlaBreached

    receiver, server = fakes.receiver, fakes.receiver_server
    r = await crm.client.post("/v1/subscriptions", headers=crm.auth, json={
        "url": server.url + "/hook", "event_types": ["sla-breached"], "teams": [crm.team]})
    receiver.secret = r.json()["secret"]
    now = datetime.now(UTC)

    def breach(team: str) -> Envelope:
        lead_id = f"lead-{team}-{now.timestamp()}"
        return Envelope.of(SlaBreached(lead_id=lead_id, deadline_id="d1", policy="p", kind="first_touch",
                                       assignee_id="ada", team=team, due_at=now - timedelta(minutes=1),
                                       fired_at=now), source="sla-watcher", lead_id=lead_id)

    mine, other = breach(crm.team), breach(crm.team + "-elsewhere")
    await crm.publish(other, mine, routed(crm.team))  # the lead-routed has no lead-routed subscriber here
    await delivered(crm, mine.lead_id, r.json()["destination"])
    [message] = receiver.of_lead(mine.lead_id)
    assert message["type"] == "sla-breached" and message["data"]["assignee_id"] == "ada"
    assert await crm.deliveries(other.lead_id) == [], "another team's breach is not this subscriber's"


async def test_finished_deliveries_are_purged_after_the_retention_period(crm: Crm, fakes: Fakes):
    from datetime import datetime, timedelta

    from leadbridge_crm_sync.sender import purge_finished

    event = routed(crm.team + "-hs")
    await crm.publish(event)
    await delivered(crm, event.lead_id, "hubspot:main")
    sessions = crm.app.state.runtime.sessions
    assert await purge_finished(sessions, datetime.now(UTC) - timedelta(days=1)) == 0
    assert await purge_finished(sessions, datetime.now(UTC) + timedelta(seconds=1)) >= 1
    assert await crm.deliveries(event.lead_id) == []
