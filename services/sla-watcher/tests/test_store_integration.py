"""Handlers and the timer against a real PostgreSQL (no Kafka needed): the deadline lifecycle in SQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from leadbridge_contracts.events import SlaKind
from leadbridge_contracts.topics import SLA_BREACHED
from leadbridge_events.db import create_schema, make_engine, session_factory
from leadbridge_events.transaction import HandlerContext, open_transaction
from leadbridge_sla_watcher import tables
from leadbridge_sla_watcher.deadlines import Status
from leadbridge_sla_watcher.handlers import HANDLERS
from leadbridge_sla_watcher.timer import TimerLoop
from sqlalchemy import func, select

from .sla_helpers import fast_config, new_lead_id, routed, touched

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


@pytest.fixture
async def db(fresh_database_url):
    engine = make_engine(fresh_database_url, pool_size=4)
    await create_schema(engine, tables.metadata)
    yield engine, session_factory(engine)
    await engine.dispose()


async def handle(sessions, config, event):
    async with sessions() as s, s.begin():
        ctx = HandlerContext(session=s, record=None, outbox=tables.outbox, emits=HANDLERS.emitted_types, deps=config)
        await HANDLERS[event.type].handler(event, ctx)
        await ctx.flush()


def transactions(sessions):
    """What the service gives its timer (``runtime.transaction``), on this test's sessions."""
    return partial(open_transaction, sessions, tables.outbox, emits=HANDLERS.emitted_types)


async def deadlines_of(sessions, lead_id):
    async with sessions() as s:
        rows = await s.execute(select(tables.deadlines).where(tables.deadlines.c.lead_id == lead_id)
                               .order_by(tables.deadlines.c.attempt))
        return [r._mapping for r in rows]


async def outbox_types(sessions, lead_id):
    async with sessions() as s:
        rows = await s.execute(select(tables.outbox.c.headers).where(tables.outbox.c.key == lead_id)
                               .order_by(tables.outbox.c.id))
        return [r.headers["ce_type"].removeprefix("io.leadbridge.") for r in rows]


async def outbox_data(sessions, lead_id, event_type):
    """The data of the latest outbox event of this type for the lead."""
    async with sessions() as s:
        rows = (await s.execute(select(tables.outbox).where(tables.outbox.c.key == lead_id)
                                .order_by(tables.outbox.c.id))).all()
    values = [r.value for r in rows if r.headers["ce_type"] == f"io.leadbridge.{event_type}"]
    return json.loads(values[-1])


def clock_at(t):
    return lambda: t


async def test_route_then_timer_fires_at_risk_then_breach_once(db):
    _, sessions = db
    config = fast_config(60.0)
    lead = new_lead_id()
    await handle(sessions, config, routed(lead, at=T0))
    (d,) = await deadlines_of(sessions, lead)
    assert d["kind"] == SlaKind.FIRST_TOUCH and d["next_fire_at"] == T0 + timedelta(seconds=30)
    for t, expected in ((29, 0), (31, 1), (40, 0), (61, 1), (120, 0)):
        assert await TimerLoop(transactions(sessions), clock=clock_at(T0 + timedelta(seconds=t))).fire_due() == expected
    assert await outbox_types(sessions, lead) == ["sla-deadlines-set", "sla-at-risk", "sla-breached"]
    (d,) = await deadlines_of(sessions, lead)
    assert d["status"] == Status.BREACHED and d["next_fire_at"] is None


async def test_touch_in_time_prevents_breach_and_late_report_is_recorded_not_retracted(db):
    _, sessions = db
    config = fast_config(60.0, at_risk=None)
    kept, late = new_lead_id(), new_lead_id()
    await handle(sessions, config, routed(kept, at=T0))
    await handle(sessions, config, routed(late, at=T0))
    await handle(sessions, config, touched(kept, at=T0 + timedelta(seconds=20)))
    assert await TimerLoop(transactions(sessions), clock=clock_at(T0 + timedelta(minutes=5))).fire_due() == 1
    assert await outbox_types(sessions, kept) == ["sla-deadlines-set", "sla-deadline-met"]  # never fired
    assert (await deadlines_of(sessions, kept))[0]["status"] == Status.MET
    # the CRM reports a call that happened in time, after the breach was emitted
    await handle(sessions, config, touched(late, at=T0 + timedelta(seconds=50)))
    (d,) = await deadlines_of(sessions, late)
    assert d["status"] == Status.MET and d["breach_fired_at"] is not None
    # the breach stays; the deadline is announced met, in time (the call happened before it was due)
    assert await outbox_types(sessions, late) == ["sla-deadlines-set", "sla-breached", "sla-deadline-met"]
    met = await outbox_data(sessions, late, "sla-deadline-met")
    assert met["late"] is False and met["deadline_id"] == d["id"]


async def test_touch_before_lead_is_known_is_kept_and_applied(db):
    _, sessions = db
    config = fast_config(60.0)
    lead = new_lead_id()
    await handle(sessions, config, touched(lead, at=T0 + timedelta(seconds=10)))
    await handle(sessions, config, routed(lead, at=T0))
    (d,) = await deadlines_of(sessions, lead)
    assert d["status"] == Status.MET and d["met_at"] == T0 + timedelta(seconds=10)
    assert await outbox_types(sessions, lead) == ["sla-deadlines-set", "sla-deadline-met"]


async def test_reroute_restarts_clock_and_stale_route_is_ignored(db):
    _, sessions = db
    config = fast_config(60.0, at_risk=None)
    lead = new_lead_id()
    await handle(sessions, config, routed(lead, at=T0))
    await handle(sessions, config, routed(lead, at=T0 + timedelta(seconds=30), attempt=2, assignee="rep-2"))
    await handle(sessions, config, routed(lead, at=T0 + timedelta(seconds=40), attempt=1))  # late duplicate
    first, second = await deadlines_of(sessions, lead)
    assert first["status"] == Status.SUPERSEDED and first["next_fire_at"] is None
    assert second["assignee_id"] == "rep-2" and second["due_at"] == T0 + timedelta(seconds=90)
    assert await outbox_types(sessions, lead) == ["sla-deadlines-set", "sla-deadlines-set"]  # not the stale one
    announced = await outbox_data(sessions, lead, "sla-deadlines-set")  # the latest
    assert announced["superseded_deadline_ids"] == [first["id"]] and announced["routing_attempt"] == 2
    assert [x["deadline_id"] for x in announced["deadlines"]] == [second["id"]]
    assert await TimerLoop(transactions(sessions), clock=clock_at(T0 + timedelta(seconds=80))).fire_due() == 0
    assert await TimerLoop(transactions(sessions), clock=clock_at(T0 + timedelta(seconds=95))).fire_due() == 1


async def test_an_unreadable_row_is_parked_and_reported_and_the_others_still_fire(db):
    from prometheus_client import REGISTRY

    def unreadable() -> float:
        return REGISTRY.get_sample_value("leadbridge_sla_unreadable_deadlines_total", {"error": "ValueError"}) or 0

    _, sessions = db
    config = fast_config(60.0, at_risk=None)
    corrupt, fine = new_lead_id(), new_lead_id()
    await handle(sessions, config, routed(corrupt, at=T0 - timedelta(seconds=10)))  # due first
    await handle(sessions, config, routed(fine, at=T0))
    async with sessions() as s, s.begin():  # a value no code path writes: the row cannot be read
        await s.execute(tables.deadlines.update().where(tables.deadlines.c.lead_id == corrupt).values(kind="bogus"))
    before = unreadable()
    loop = TimerLoop(transactions(sessions), clock=clock_at(T0 + timedelta(minutes=5)))
    assert await loop.fire_due() == 1  # the readable one fired
    assert await outbox_types(sessions, fine) == ["sla-deadlines-set", "sla-breached"]
    (parked,) = await deadlines_of(sessions, corrupt)
    assert parked["status"] == Status.UNREADABLE and parked["next_fire_at"] is None
    assert unreadable() == before + 1
    assert await loop.fire_due() == 0  # parked: not claimed (nor reported) again


async def test_two_timer_replicas_never_double_fire(db, fresh_database_url):
    engine, sessions = db
    config = fast_config(60.0, at_risk=None)
    leads = [new_lead_id() for _ in range(300)]
    for lead in leads:
        await handle(sessions, config, routed(lead, at=T0))
    other = make_engine(fresh_database_url, pool_size=2)
    try:
        later = clock_at(T0 + timedelta(hours=1))
        a = TimerLoop(transactions(sessions), batch_size=20, clock=later)
        b = TimerLoop(transactions(session_factory(other)), batch_size=20, clock=later)

        async def drain(loop):
            while await loop.fire_due():
                pass

        await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
    finally:
        await other.dispose()
    assert a.fired + b.fired == 300
    async with sessions() as s:
        total, distinct = (await s.execute(select(func.count(), func.count(func.distinct(tables.outbox.c.event_id)))
                                           .where(tables.outbox.c.topic == SLA_BREACHED.name))).one()
    assert total == distinct == 300


async def test_gauges_count_untouched_leads_by_team(db):
    from leadbridge_sla_watcher import gauges
    from prometheus_client import REGISTRY

    engine, sessions = db
    config = fast_config(60.0, at_risk=None)
    past = datetime.now(UTC) - timedelta(minutes=10)
    a, b, c = new_lead_id(), new_lead_id(), new_lead_id()
    await handle(sessions, config, routed(a, at=past, team="enterprise"))
    await handle(sessions, config, routed(b, at=past + timedelta(minutes=9, seconds=30), team="enterprise"))
    await handle(sessions, config, routed(c, at=past, team="enterprise"))
    await handle(sessions, config, touched(c, at=past + timedelta(seconds=5)))
    await gauges.refresh(engine)

    def sample(name):
        return REGISTRY.get_sample_value(name, {"team": "enterprise"})
    assert sample("leadbridge_sla_awaiting_first_touch") == 2
    assert sample("leadbridge_sla_awaiting_first_touch_past_due") == 1  # a is past its 60 s, b is not yet
    assert sample("leadbridge_sla_oldest_untouched_age_seconds") >= 600
    assert REGISTRY.get_sample_value("leadbridge_sla_time_to_first_touch_seconds_count", {"team": "enterprise"}) >= 1
