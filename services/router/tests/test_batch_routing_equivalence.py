"""The multi-row batch path (``batch_routing``) has exactly the effects of the one-event handler, in order:
the same lead-routed events, the same pools' counters, assignments and lead rows -- caps, overflow, a lead
scored twice in one batch, routed leads sent back to nurture (the one-event path inside the batch), a
closed lead. Against a real PostgreSQL, no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from leadbridge_contracts import Envelope, LeadProfile, LeadScored, Stage
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_events.transaction import BatchContext, HandlerContext
from leadbridge_router import db, handlers, roster_io
from leadbridge_router.batch_routing import on_lead_scored_batch
from leadbridge_router.roster import Roster
from sqlalchemy import select

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday, noon UTC

ROSTER = Roster.model_validate({
    "teams": [{"id": "inbound", "overflow": {"kind": "next_pool", "pool": "spill"}},
              {"id": "spill", "overflow": {"kind": "fallback_owner", "owner": "boss"}},
              {"id": "mgmt"}, {"id": "small", "overflow": {"kind": "nurture"}}],
    "reps": [{"id": "ann", "team": "inbound", "daily_cap": 3, "weight": 2},
             {"id": "bob", "team": "inbound", "max_open": 2},
             {"id": "cyd", "team": "spill", "daily_cap": 2},
             {"id": "boss", "team": "mgmt"},
             {"id": "dee", "team": "small", "max_open": 1}],
    "rules": [{"id": "small", "pool": "small", "when": {"segments": ["small"]}}],
    "fallback_pool": "inbound",
})


def scored(n: int, *, stage: Stage = Stage.MQL, became_mql: bool = True, segment: str = "big") -> Envelope:
    data = LeadScored(lead_id=f"lead-{n:03d}", scored_at=NOW, score=70, grade="B", stage=stage,
                      became_mql=became_mql, model_version="test", profile=LeadProfile(custom={"segment": segment}))
    return Envelope.of(data, source="scoring", lead_id=data.lead_id, event_id=f"e-{n}-{stage}-{became_mql}")


def first_batch() -> list[Envelope]:
    """More leads than the caps take (ann 3, bob 2 open, cyd 2, then the fallback owner), a lead scored MQL
    and then SQL, two leads for the max_open=1 pool, and a lead that is not sales-ready."""
    events = [scored(i) for i in range(10)]
    events.insert(3, scored(1, stage=Stage.SQL, became_mql=False))  # already owned: not routed again
    events += [scored(20, segment="small"), scored(21, segment="small"), scored(22, segment="small")]
    events.append(scored(30, stage=Stage.NURTURE, became_mql=False))
    return events


def second_batch() -> list[Envelope]:
    """Routed leads go back to nurture (their slots free up; a waiting lead takes one) among new routings."""
    return [scored(40), scored(0, stage=Stage.NURTURE, became_mql=False), scored(41),
            scored(20, stage=Stage.NURTURE, became_mql=False), scored(42), scored(43, segment="small"),
            scored(21, stage=Stage.NURTURE, became_mql=False), scored(44)]


async def _database(url: str):
    engine = make_engine(url, pool_size=2)
    await migrate(engine, db.metadata, migrations_dir("leadbridge_router"))
    sessions = session_factory(engine)

    async def no_emit(event):
        return None

    async with sessions() as s, s.begin():
        await roster_io.save_roster(s, ROSTER, NOW, no_emit)
        await s.execute(db.leads.insert().values(lead_id="lead-009", status="closed", closed_outcome="won",
                                                 facts={}, event={}, updated_at=NOW))  # won before routing
    return engine, sessions


async def _one_at_a_time(sessions, events: list[Envelope]) -> list[Envelope]:
    emitted = []
    for event in events:
        async with sessions() as s, s.begin():
            ctx = HandlerContext(session=s, outbox=db.outbox, emits=handlers.HANDLERS.emitted_types, clock=lambda: NOW)
            await handlers.on_lead_scored(event, ctx)
            emitted += ctx.emitted
    return emitted


async def _as_a_batch(sessions, events: list[Envelope]) -> list[Envelope]:
    async with sessions() as s, s.begin():
        ctx = BatchContext(session=s, outbox=db.outbox, emits=handlers.HANDLERS.emitted_types, clock=lambda: NOW)
        await on_lead_scored_batch(events, ctx)
    return [e for e, _ in ctx.staged]


async def _state(sessions) -> dict:
    async with sessions() as s:
        def rows(stmt):
            return s.execute(stmt)
        counters = (await rows(select(db.rep_counters).order_by("pool", "rep_id"))).all()
        pools = (await rows(select(db.pool_state).order_by("pool"))).all()
        assignments = (await rows(select(db.assignments.c.lead_id, db.assignments.c.rep_id, db.assignments.c.pool,
                                         db.assignments.c.outcome, db.assignments.c.attempt,
                                         db.assignments.c.released_at, db.assignments.c.close_outcome)
                                  .order_by(db.assignments.c.lead_id, db.assignments.c.id))).all()
        leads = (await rows(select(db.leads).order_by(db.leads.c.lead_id))).all()
    return {"counters": [tuple(r) for r in counters], "pools": [tuple(r) for r in pools],
            "assignments": [tuple(r) for r in assignments], "leads": [tuple(r) for r in leads]}


def _summary(events: list[Envelope]) -> list[tuple]:
    return [(e.lead_id, e.data.outcome, e.data.assignee_id, e.data.attempt, e.data.pool, e.data.reason)
            for e in events]


async def test_a_batch_has_the_effects_of_its_events_one_at_a_time_in_order(fresh_database_url, second_database_url):
    one_engine, one = await _database(fresh_database_url)
    batch_engine, batch = await _database(second_database_url)
    try:
        outcomes = set()
        for events in (first_batch(), second_batch()):
            expected = _summary(await _one_at_a_time(one, events))
            assert _summary(await _as_a_batch(batch, events)) == expected
            outcomes |= {outcome for _, outcome, *_ in expected}
        assert await _state(batch) == await _state(one)
    finally:
        await one_engine.dispose()
        await batch_engine.dispose()
    assert outcomes == {"assigned", "fallback_owner", "returned_to_nurture"}  # the batches cover each outcome
