"""Scoring's batch handler says exactly what the one-event handler says, event by event, in the same order,
and stores the same leads and activities: new captures scored together (one multi-row statement), a lead's
later activity after its capture, a replayed capture of a known lead."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import Contact, LeadActivityRecorded, LeadCaptured, LeadProfile
from leadbridge_events.batching import BatchContext
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_scoring import store
from leadbridge_scoring.handlers import HANDLERS, on_lead_events
from leadbridge_scoring.model_file import default_model_path, load_model
from leadbridge_scoring.rescoring import Rescorer
from sqlalchemy import select, text

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC) - timedelta(hours=1)


def _profile(title: str, size: int) -> LeadProfile:
    return LeadProfile(contact=Contact(email=f"{uuid.uuid4().hex[:8]}@x.example"), job_title=title,
                       company_size=size, industry="Software", country="US", channel="paid", form_type="demo_request")


def _events() -> list[Envelope]:
    a, b, c = (f"lead-{uuid.uuid4()}" for _ in range(3))
    cap = {lead: Envelope.of(LeadCaptured(lead_id=lead, captured_at=T0, profile=_profile(t, s)), source="intake",
                             lead_id=lead)
           for lead, t, s in ((a, "VP Sales", 800), (b, "Intern", 5), (c, "CEO", 5000))}
    pricing = Envelope.of(LeadActivityRecorded(lead_id=b, activity_id="b-1", occurred_at=T0 + timedelta(minutes=5),
                                               kind="form_submission", form_type="demo_request"),
                          source="intake", lead_id=b)
    replay = Envelope.of(cap[a].data, source="intake", lead_id=a)  # the same capture under a new event id
    return [cap[a], cap[b], pricing, cap[c], replay]


async def _stored(sessions) -> dict[str, list[tuple]]:
    leads = [c for c in store.leads.c if c.name != "updated_at"]
    async with sessions() as session:
        rows = (await session.execute(select(*leads).order_by(store.leads.c.lead_id))).all()
        acts = (await session.execute(select(store.activities).order_by(store.activities.c.lead_id,
                                                                        store.activities.c.activity_id))).all()
    return {"leads": [tuple(r) for r in rows], "activities": [tuple(r) for r in acts]}


def _said(staged) -> list[tuple]:
    return [(e.lead_id, e.data.stage.value, e.data.score, e.data.became_mql) for e, _ in staged]


async def test_batch_handler_emits_what_one_by_one_emits(fresh_database_url):
    model = load_model(default_model_path())
    engine = make_engine(fresh_database_url)
    sessions = session_factory(engine)
    outbox = store.metadata.tables["scoring.outbox"]
    events = _events()
    try:
        await migrate(engine, store.metadata, migrations_dir("leadbridge_scoring"))
        context = {"outbox": outbox, "emits": HANDLERS.emitted_types, "deps": Rescorer(model)}
        async with sessions() as session, session.begin():
            expected = BatchContext(session=session, **context)
            for event in events:
                await HANDLERS[event.type].handler(event, expected.for_event(event))
        expected_rows = await _stored(sessions)
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE scoring.activities, scoring.leads CASCADE"))
        async with sessions() as session, session.begin():
            batched = BatchContext(session=session, **context)
            await on_lead_events(events, batched)
        batched_rows = await _stored(sessions)
    finally:
        await engine.dispose()
    assert len(expected.staged) >= 3
    assert _said(batched.staged) == _said(expected.staged)
    assert [e.causation_id for e, _ in batched.staged] == [e.causation_id for e, _ in expected.staged]
    assert [e.data for e, _ in batched.staged] == [e.data for e, _ in expected.staged]
    assert batched_rows == expected_rows
    assert len(batched_rows["leads"]) == 3 and len(batched_rows["activities"]) == 4
