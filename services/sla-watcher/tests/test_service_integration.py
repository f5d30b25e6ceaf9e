"""The watcher end to end over the real Kafka broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace

import pytest
from leadbridge_contracts.topics import SLA_AT_RISK, SLA_BREACHED, SLA_DEADLINES
from leadbridge_events.producer import EventProducer
from leadbridge_events.testing import collect_events
from leadbridge_sla_watcher import tables
from leadbridge_sla_watcher.app import SERVICE
from leadbridge_sla_watcher.settings import WatcherSettings
from sqlalchemy import select

from .sla_helpers import fast_config, new_lead_id, routed, touched

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(fresh_database_url, kafka_bootstrap):
    return WatcherSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url,
                           SLA_TIMER_POLL_SECONDS=0.1, SLA_GAUGE_REFRESH_SECONDS=0.5)


async def start(settings, group, config) -> SimpleNamespace:
    """The watcher started in-process (timer and gauges included); ``.stop()`` stops it."""
    stack = contextlib.AsyncExitStack()
    runtime = await stack.enter_async_context(
        SERVICE.running(settings, deps=config, group_id=group, auto_offset_reset="latest"))
    watcher = SimpleNamespace(runtime=runtime, stop=stack.aclose)
    await watcher.runtime.kafka_ready.wait()
    await watcher.runtime.runner.wait_assigned()
    return watcher


async def send(bootstrap, *events):
    async with EventProducer(bootstrap) as producer:
        for event in events:
            await producer.send(event)


async def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.1)


async def rows(watcher, table, **where):
    async with watcher.runtime.sessions() as s:
        q = select(table).where(*[table.c[k] == v for k, v in where.items()])
        return [r._mapping for r in await s.execute(q)]


async def fired_types(watcher, lead_id):
    """The at-risk and breach events the timer fired for the lead (not the deadline announcements)."""
    return sorted(r["headers"]["ce_type"].removeprefix("io.leadbridge.")
                  for r in await rows(watcher, tables.outbox, key=lead_id) if r["topic"] != SLA_DEADLINES.name)


async def test_breach_fires_and_touch_in_time_prevents_it(settings, kafka_bootstrap, unique_name):
    watcher = await start(settings, unique_name, fast_config(3.0, at_risk=0.5))
    try:
        ignored, kept = new_lead_id(), new_lead_id()
        await send(kafka_bootstrap, routed(kept), touched(kept), routed(ignored))
        events = await collect_events(kafka_bootstrap, [SLA_AT_RISK.name, SLA_BREACHED.name], lead_ids=[ignored],
                                      count=2, timeout=30)
        assert sorted(e.type for e in events) == ["sla-at-risk", "sla-breached"]
        breach = next(e for e in events if e.type == "sla-breached")
        assert breach.data.kind == "first_touch" and breach.data.team == "smb" and breach.data.assignee_id == "rep-1"
        assert breach.data.fired_at >= breach.data.due_at

        async def kept_met():
            return [r["status"] for r in await rows(watcher, tables.deadlines, lead_id=kept)] == ["met"]
        await wait_for(kept_met)
        assert await fired_types(watcher, kept) == []  # met deadlines never fire
    finally:
        await watcher.stop()


async def test_restart_with_pending_deadlines_loses_none_and_fires_none_twice(settings, kafka_bootstrap, unique_name):
    early, pending = new_lead_id(), new_lead_id()
    first = await start(settings, unique_name, fast_config(1.0, at_risk=None))
    try:
        await send(kafka_bootstrap, routed(early))

        async def early_fired():
            return await fired_types(first, early) == ["sla-breached"]
        await wait_for(early_fired)
    finally:
        await first.stop()
    # while the watcher is down, a routing with a longer deadline arrives
    second = await start(settings, unique_name, fast_config(4.0, at_risk=None))
    try:
        await send(kafka_bootstrap, routed(pending))

        async def pending_stored():
            return len(await rows(second, tables.deadlines, lead_id=pending)) == 1
        await wait_for(pending_stored)
    finally:
        await second.stop()  # stopped before the pending deadline is due
    assert await _status(settings, pending) == "open"
    third = await start(settings, unique_name, fast_config(4.0, at_risk=None))
    try:
        events = await collect_events(kafka_bootstrap, [SLA_BREACHED.name], lead_ids=[pending], count=1, timeout=30)
        assert events[0].data.lead_id == pending
        assert await fired_types(third, early) == ["sla-breached"]  # not fired again after two restarts
        assert await fired_types(third, pending) == ["sla-breached"]
    finally:
        await third.stop()


async def _status(settings, lead_id):
    from leadbridge_events.db import make_engine, session_factory

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with session_factory(engine)() as s:
            return (await s.execute(select(tables.deadlines.c.status)
                                    .where(tables.deadlines.c.lead_id == lead_id))).scalar_one()
    finally:
        await engine.dispose()


async def test_two_replicas_fire_each_deadline_once(settings, kafka_bootstrap, unique_name):
    config = fast_config(2.0, at_risk=None)
    a = await start(settings, unique_name, config)
    b = await start(settings, unique_name, config)
    try:
        async def balanced():  # the group settled: each replica owns its share, nothing is mid-rebalance
            parts = [w.runtime.runner._consumer.assignment() for w in (a, b)]
            return all(parts) and not (parts[0] & parts[1]) and len(parts[0] | parts[1]) == 12
        await wait_for(balanced, timeout=30)
        for w in (a, b):  # starting offsets resolved: nothing published from here on is skipped
            await w.runtime.runner.wait_assigned()
        leads = [new_lead_id() for _ in range(30)]
        await send(kafka_bootstrap, *(routed(lead) for lead in leads))
        events = await collect_events(kafka_bootstrap, [SLA_BREACHED.name], lead_ids=leads, count=30, timeout=30)
        assert {e.data.lead_id for e in events} == set(leads)
        # (other tests' routings on the shared topic fire too: count only ours)
        outbox = [r for r in await rows(a, tables.outbox, topic=SLA_BREACHED.name) if r["key"] in set(leads)]
        assert len(outbox) == len({r["event_id"] for r in outbox}) == 30
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_deadlines_set_superseded_and_met_are_announced(settings, kafka_bootstrap, unique_name):
    watcher = await start(settings, unique_name, fast_config(600.0, at_risk=0.75))
    try:
        lead = new_lead_id()
        await send(kafka_bootstrap, routed(lead))
        (first,) = await collect_events(kafka_bootstrap, [SLA_DEADLINES.name], lead_ids=[lead], count=1, timeout=30)
        assert first.type == "sla-deadlines-set" and first.source == "sla-watcher"
        (d1,) = first.data.deadlines
        assert (first.data.assignee_id, first.data.team, first.data.policy, first.data.routing_attempt) == (
            "rep-1", "smb", "standard", 1)
        assert d1.kind == "first_touch" and d1.at_risk_at < d1.due_at
        await send(kafka_bootstrap, routed(lead, attempt=2, assignee="rep-2"))
        await collect_events(kafka_bootstrap, [SLA_DEADLINES.name], lead_ids=[lead], count=2, timeout=30)
        await send(kafka_bootstrap, touched(lead))  # after the re-route: it meets the new deadline
        events = await collect_events(kafka_bootstrap, [SLA_DEADLINES.name], lead_ids=[lead], count=3, timeout=30)
        assert len(events) == 3
        by_type = {e.type: e for e in events if e.id != first.id}
        again = by_type["sla-deadlines-set"]
        assert again.data.superseded_deadline_ids == [d1.deadline_id] and again.data.assignee_id == "rep-2"
        met = by_type["sla-deadline-met"]
        assert met.data.deadline_id == again.data.deadlines[0].deadline_id and met.data.late is False
        assert met.data.kind == "first_touch" and met.data.routing_attempt == 2
    finally:
        await watcher.stop()
