"""The watcher consuming in batches over the real broker: per-lead order, each routing and touch applied
once (redeliveries too), and a connection lost in the middle of a batch retried to exactly that."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from leadbridge_contracts.topics import SLA_DEADLINES
from leadbridge_events.producer import EventProducer
from leadbridge_events.testing import lose_connection
from leadbridge_sla_watcher import batch_handlers, tables
from leadbridge_sla_watcher.app import SERVICE
from leadbridge_sla_watcher.settings import WatcherSettings
from sqlalchemy import select

from .sla_helpers import fast_config, new_lead_id, routed, touched

pytestmark = pytest.mark.integration


async def _deadlines(watcher, leads):
    async with watcher.runtime.sessions() as s:
        d = tables.deadlines
        rows = await s.execute(select(d.c.lead_id, d.c.attempt, d.c.status).where(d.c.lead_id.in_(leads))
                               .order_by(d.c.lead_id, d.c.attempt))
        return [tuple(r) for r in rows]


async def _announcements(watcher, leads):
    async with watcher.runtime.sessions() as s:
        ob = tables.outbox
        rows = await s.execute(select(ob.c.key, ob.c.headers).where(ob.c.key.in_(leads),
                                                                    ob.c.topic == SLA_DEADLINES.name)
                               .order_by(ob.c.id))
        return [(key, headers["ce_type"].removeprefix("io.leadbridge.")) for key, headers in rows]


async def _until(read, expected, timeout: float = 30.0) -> None:
    for _ in range(int(timeout * 10)):
        if sorted(await read()) == expected:
            return
        await asyncio.sleep(0.1)


async def test_batches_keep_order_and_survive_a_connection_lost_mid_batch(fresh_database_url, kafka_bootstrap,
                                                                          unique_name, monkeypatch):
    killed: list[int] = []
    save = batch_handlers._save

    async def save_after_losing_the_connection(session, saved, routing):
        if not killed and routing:  # every routing of the batch decided, nothing of it committed
            killed.append(await lose_connection(session, fresh_database_url))
        await save(session, saved, routing)

    monkeypatch.setattr(batch_handlers, "_save", save_after_losing_the_connection)
    settings = WatcherSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url,
                               SLA_TIMER_POLL_SECONDS=0.5, CONSUMER_BATCH_SIZE=200)
    async with SERVICE.running(settings, deps=fast_config(3600.0, at_risk=None), group_id=unique_name,
                               auto_offset_reset="latest") as runtime:
        watcher = SimpleNamespace(runtime=runtime)
        await runtime.kafka_ready.wait()
        await runtime.runner.wait_assigned()
        assert runtime.runner.handlers["lead-routed"].batch  # the batch handlers are in use
        leads = [new_lead_id() for _ in range(10)]
        t0 = datetime.now(UTC)
        events = []
        for lead in leads:  # each lead routed, then re-routed (in one batch: the order per lead matters)
            events += [routed(lead, at=t0), routed(lead, at=t0 + timedelta(seconds=1), attempt=2, assignee="rep-2")]
        touches = [touched(lead, at=t0 + timedelta(seconds=5)) for lead in leads[:5]]
        async with EventProducer(kafka_bootstrap) as producer:
            await producer.send_many_raw(("lead-routed", e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                         for e in events + events[::3])  # with redeliveries
            routed_twice = sorted([(lead, 1, "superseded") for lead in leads] + [(lead, 2, "open") for lead in leads])
            await _until(lambda: _deadlines(watcher, leads), routed_twice)
            await producer.send_many_raw(("follow-up-logged", e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                         for e in touches + touches[:2])
        expected = sorted([(lead, 1, "superseded") for lead in leads]
                          + [(lead, 2, "met" if lead in leads[:5] else "open") for lead in leads])
        await _until(lambda: _deadlines(watcher, leads), expected)
        await asyncio.sleep(0.5)
        got, announced = sorted(await _deadlines(watcher, leads)), await _announcements(watcher, leads)
    assert killed
    assert got == expected
    per_lead = Counter(announced)
    assert all(per_lead[(lead, "sla-deadlines-set")] == 2 for lead in leads)  # attempt 1, then 2: once each
    assert all(per_lead[(lead, "sla-deadline-met")] == 1 for lead in leads[:5])
    for lead in leads:  # in order per lead: the sets, then the met
        kinds = [k for key, k in announced if key == lead]
        assert kinds == ["sla-deadlines-set", "sla-deadlines-set"] + (["sla-deadline-met"] if lead in leads[:5] else [])
