"""Intake marks the lead-captured of a newly minted lead as first-of-lead (the express lane's header), on both
capture paths; a repeat person's lead-activity-recorded (an existing lead) is never marked."""

from __future__ import annotations

import uuid

import pytest
from leadbridge_intake.tables import outbox
from leadbridge_intake.testing import make_settings, new_key, running
from sqlalchemy import select

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("group_commit_max", [256, 0])  # group commit, and one transaction per capture
async def test_new_leads_are_marked_first_of_lead_and_repeat_activity_is_not(
        fresh_database_url, kafka_bootstrap, group_commit_max):
    settings = make_settings(fresh_database_url, kafka_bootstrap, group_commit_max=group_commit_max)
    async with running(settings) as (client, app):
        h = {"X-API-Key": await new_key(client)}
        email = f"mark.{uuid.uuid4().hex[:8]}@example.com"
        first = await client.post("/v1/leads", headers=h, json={"email": email, "form_type": "demo_request"})
        again = await client.post("/v1/leads", headers=h, json={"email": email, "form_type": "pricing"})
        assert (first.json()["status"], again.json()["status"]) == ("accepted", "activity_recorded")
        lead_id = first.json()["lead_id"]
        async with app.state.runtime.sessions() as s:
            rows = (await s.execute(select(outbox.c.headers).where(outbox.c.key == lead_id)
                                    .order_by(outbox.c.id))).scalars().all()
    assert [(r["ce_type"], r.get("ce_firstoflead")) for r in rows] == [  # marked with the capture's time
        ("io.leadbridge.lead-captured", rows[0]["ce_time"]), ("io.leadbridge.lead-activity-recorded", None)]


def test_first_event_is_first_of_lead_of_envelope_of():
    """``first_event`` (the group's marked lead-captured, built at once) is the event, and the outbox row,
    that ``first_of_lead(Envelope.of(...))`` makes."""
    from datetime import UTC, datetime

    from leadbridge_contracts.envelope import Envelope
    from leadbridge_contracts.events import LeadCaptured, LeadProfile
    from leadbridge_events.first_of_lead import first_event, first_of_lead, is_first_of_lead
    from leadbridge_events.outbox import outbox_row

    now, lead_id = datetime.now(UTC), str(uuid.uuid4())
    data = LeadCaptured(lead_id=lead_id, captured_at=now, profile=LeadProfile(), dedupe_key="k")
    built = first_event(data, source="intake", lead_id=lead_id, time=now)
    reference = first_of_lead(Envelope.of(data, source="intake", lead_id=lead_id, time=now, event_id=built.id))
    assert built == reference and type(built) is type(reference)
    assert built.model_fields_set == reference.model_fields_set
    assert outbox_row(built) == outbox_row(reference) and is_first_of_lead(built.kafka_headers())
    assert built.model_dump() == reference.model_dump()
