"""Insights' batch projection folds the same facts and timeline as one event at a time, per lead in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import Contact, LeadActivityRecorded, LeadCaptured, LeadProfile
from leadbridge_events.batching import BatchContext
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_insights import store
from leadbridge_insights.handlers import HANDLERS, project_many
from sqlalchemy import select, text

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC) - timedelta(hours=2)


def _events() -> list[Envelope]:
    out = []
    for n, lead in enumerate(f"lead-{uuid.uuid4()}" for _ in range(3)):
        profile = LeadProfile(contact=Contact(email=f"{lead}@x.example"), channel="paid", campaign=f"c{n}")
        out.append(Envelope.of(LeadCaptured(lead_id=lead, captured_at=T0, profile=profile), source="intake",
                               lead_id=lead, time=T0))
        for i in range(n):
            at = T0 + timedelta(minutes=i + 1)
            out.append(Envelope.of(LeadActivityRecorded(lead_id=lead, activity_id=f"{lead}-{i}", occurred_at=at,
                                                        kind="visit", channel="organic"),
                                   source="intake", lead_id=lead, time=at))
    return [out[0], out[3], out[1], out[4], out[2], out[5]]  # interleaved leads, each lead's own order kept


async def _snapshot(engine) -> tuple[dict, list]:
    async with engine.connect() as conn:
        facts = {r.lead_id: r.facts for r in (await conn.execute(select(store.lead_facts))).all()}
        timeline = (await conn.execute(select(store.timeline.c.event_id, store.timeline.c.explanation)
                                       .order_by(store.timeline.c.event_id))).all()
    return facts, [tuple(t) for t in timeline]


async def test_batch_projection_equals_one_by_one(fresh_database_url):
    engine = make_engine(fresh_database_url)
    sessions = session_factory(engine)
    events = _events()
    outbox = store.metadata.tables["insights.outbox"]
    try:
        await migrate(engine, store.metadata, migrations_dir("leadbridge_insights"))
        async with sessions() as session, session.begin():
            ctx = BatchContext(session=session, outbox=outbox)
            for e in events:
                await HANDLERS[e.type].handler(e, ctx.for_event(e))
        expected = await _snapshot(engine)
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE insights.timeline, insights.lead_facts"))
        async with sessions() as session, session.begin():
            await project_many(events, BatchContext(session=session, outbox=outbox))
        async with sessions() as session, session.begin():  # replayed: the timeline's unique id keeps it once
            await project_many(events[:2], BatchContext(session=session, outbox=outbox))
        got = await _snapshot(engine)
    finally:
        await engine.dispose()
    assert len(expected[0]) == 3 and len(expected[1]) == 6
    assert got == expected
