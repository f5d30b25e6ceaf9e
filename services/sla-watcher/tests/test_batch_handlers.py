"""The batch handlers have exactly the one-event handlers' effects, in order: the same deadlines, lead rows,
touches and outbox events -- re-routes, a stale routing, a return to nurture, touches before the routing,
a follow-up sent twice in one batch (two event ids), several touches of one lead in one batch. Real PostgreSQL, no Kafka."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpOutcome, LeadRouted, TouchType
from leadbridge_events.db import create_schema, make_engine, session_factory
from leadbridge_events.transaction import BatchContext, HandlerContext
from leadbridge_sla_watcher import handlers, tables
from leadbridge_sla_watcher.policies import SlaConfig
from sqlalchemy import select

from .sla_helpers import routed, touched

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
CONFIG = SlaConfig.model_validate({"policies": {"standard": {
    "first_touch": {"minutes": 5, "clock": "wall"}, "disposition": {"minutes": 60, "clock": "wall"},
    "cadence": {"touches": 2, "days": 1}, "at_risk_fraction": 0.5}}})


def nurtured(lead_id: str, attempt: int) -> Envelope:
    data = LeadRouted(lead_id=lead_id, routed_at=T0 + timedelta(minutes=2), outcome="returned_to_nurture",
                      reason="test", attempt=attempt, sla_policy="standard")
    return Envelope.of(data, source="router", lead_id=lead_id)


def batches() -> list[list[Envelope]]:
    a, b, c, d, e = (f"lead-{x}-{uuid.uuid4().hex[:6]}" for x in "abcde")
    call_a = touched(a, at=T0 + timedelta(minutes=3))
    return [
        [touched(d, at=T0 + timedelta(minutes=1)), touched(e, at=T0)],  # before their routing / never routed
        [routed(a, at=T0), routed(b, at=T0), routed(a, at=T0 + timedelta(minutes=1), attempt=2, assignee="rep-2"),
         routed(a, at=T0, attempt=1), nurtured(c, 1), routed(d, at=T0), routed(c, at=T0, attempt=2)],
        [call_a, Envelope.of(call_a.data, source="intake", lead_id=a), touched(a, at=T0 + timedelta(minutes=4), kind=TouchType.EMAIL),
         touched(a, at=T0 + timedelta(minutes=30), outcome=FollowUpOutcome.WON),
         touched(b, at=T0 + timedelta(minutes=9), kind=TouchType.NOTE), touched(b, at=T0 + timedelta(minutes=8)),
         touched(b, at=T0 + timedelta(minutes=20), outcome=FollowUpOutcome.LOST),
         touched(e, at=T0 + timedelta(minutes=1))],
        [routed(b, at=T0 + timedelta(minutes=10), attempt=2, assignee="rep-3"), nurtured(a, 3)],
    ]


async def _sessions(url: str):
    engine = make_engine(url, pool_size=2)
    await create_schema(engine, tables.metadata)
    return engine, session_factory(engine)


CONTEXT = dict(outbox=tables.outbox, emits=handlers.HANDLERS.emitted_types, deps=CONFIG)


async def _one_at_a_time(sessions, events):
    for event in events:
        async with sessions() as s, s.begin():
            ctx = HandlerContext(session=s, **CONTEXT)
            await handlers.HANDLERS[event.type].handler(event, ctx)
            await ctx.flush()


async def _as_a_batch(sessions, events):
    async with sessions() as s, s.begin():
        ctx = BatchContext(session=s, **CONTEXT)
        batch = handlers.HANDLERS[events[0].type].batch
        assert batch is not None
        await batch(events, ctx)
        await ctx.flush()  # as the runner does after the batch handler


async def _state(sessions) -> dict:
    async with sessions() as s:
        d = tables.deadlines
        deadlines = [tuple(r) for r in await s.execute(select(d).order_by(d.c.id))]
        leads = [tuple(r) for r in await s.execute(select(tables.leads).order_by(tables.leads.c.lead_id))]
        touches = [tuple(r) for r in await s.execute(select(tables.touches).order_by(
            tables.touches.c.lead_id, tables.touches.c.follow_up_id))]
        ob = tables.outbox
        outbox = [tuple(r) for r in await s.execute(select(ob.c.topic, ob.c.key, ob.c.event_id, ob.c.value)
                                                    .order_by(ob.c.id))]
    strip = [c.name for c in tables.leads.columns].index("updated_at")
    return {"deadlines": deadlines, "leads": [r[:strip] + r[strip + 1:] for r in leads], "touches": touches,
            "outbox": outbox}


async def test_batches_have_the_effects_of_their_events_one_at_a_time(fresh_database_url, second_database_url,
                                                                     monkeypatch):
    one_engine, one = await _sessions(fresh_database_url)
    batch_engine, batch = await _sessions(second_database_url)
    try:
        counters = {_one_at_a_time: itertools.count(), _as_a_batch: itertools.count()}  # the same ids on both
        for events in batches():
            for path, sessions in ((_one_at_a_time, one), (_as_a_batch, batch)):
                ids = counters[path]
                monkeypatch.setattr(handlers, "_new_id", lambda: f"d-{next(ids)}")  # noqa: B023
                await path(sessions, events)
        expected, got = await _state(one), await _state(batch)
    finally:
        await one_engine.dispose()
        await batch_engine.dispose()
    for key in expected:
        assert got[key] == expected[key], key
    statuses = {r[[c.name for c in tables.deadlines.columns].index("status")] for r in got["deadlines"]}
    assert statuses >= {"open", "met", "superseded", "closed"}  # the batches exercise each transition
    assert {t for t, *_ in got["outbox"]} == {"sla-deadlines"} and len(got["outbox"]) > 8
