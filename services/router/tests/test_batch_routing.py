"""Routing a batch: many leads' lead-scored events in one transaction still respect caps and route each
lead exactly once, redeliveries in the same batch included."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the harness importable
from leadbridge_events.producer import EventProducer  # noqa: E402
from leadbridge_events.testing import collect_records, lose_connection  # noqa: E402
from leadbridge_router.batch_routing import BatchRouting  # noqa: E402
from router_harness import always_on_roster, lead_ids, routed, running_router, scored  # noqa: E402

pytestmark = pytest.mark.integration


async def test_a_batch_of_leads_respects_caps_and_routes_each_once(fresh_database_url, kafka_bootstrap, unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name, batch_size=200) as (runtime, client):
        assert runtime.runner.handlers["lead-scored"].batch  # the router's batch handler is in use
        resp = await client.post("/roster/import", content=json.dumps(
            always_on_roster({"ann": 3, "bob": 2}, unique_name)))
        assert resp.status_code == 200, resp.text
        ids = lead_ids(12)
        events = [scored(i, unique_name) for i in ids]
        async with EventProducer(kafka_bootstrap, client_id="router-batch-test") as producer:
            await producer.send_many_raw(("lead-scored", e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                         for e in [*events, *events[:4]])  # with redeliveries
        got = await routed(kafka_bootstrap, ids, 12)
        await asyncio.sleep(1)  # a second routing of any lead would be in the outbox by now
        async with runtime.sessions() as session:
            staged = (await session.execute(select(runtime.outbox.c.key, func.count()).where(
                runtime.outbox.c.key.in_(ids), runtime.outbox.c.topic == "lead-routed")
                .group_by(runtime.outbox.c.key))).all()
    assert dict(staged) == {i: 1 for i in ids}  # each lead routed exactly once
    assigned = Counter(e.data.assignee_id for e in got if e.data.outcome == "assigned")
    assert assigned == {"ann": 3, "bob": 2}  # caps held inside one transaction
    assert sum(1 for e in got if e.data.outcome == "returned_to_nurture") == 7


async def _send(kafka_bootstrap, events):
    async with EventProducer(kafka_bootstrap, client_id="router-batch-test") as producer:
        await producer.send_many_raw(("lead-scored", e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                     for e in events)


async def _routings_staged(runtime, ids) -> dict[str, int]:
    async with runtime.sessions() as session:
        return dict((await session.execute(select(runtime.outbox.c.key, func.count()).where(
            runtime.outbox.c.key.in_(ids), runtime.outbox.c.topic == "lead-routed")
            .group_by(runtime.outbox.c.key))).all())


async def test_a_poison_record_in_a_batch_is_dead_lettered_alone(fresh_database_url, kafka_bootstrap, unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name, batch_size=200) as (runtime, client):
        resp = await client.post("/roster/import", content=json.dumps(always_on_roster({"ann": 3, "bob": 2},
                                                                                       unique_name)))
        assert resp.status_code == 200, resp.text
        ids = lead_ids(6)
        events = [scored(i, unique_name) for i in ids]
        poison = scored("lead-" + "x" * 250, unique_name)  # longer than router.leads.lead_id: fails in SQL
        await _send(kafka_bootstrap, [*events[:3], poison, *events[3:]])
        dead = await collect_records(kafka_bootstrap, ["lead-scored.dlq"], match=lambda r: r.key == poison.lead_id.encode(),
                                     until=lambda m: len(m) >= 1, timeout=60)
        got = await routed(kafka_bootstrap, ids, 6)
        await asyncio.sleep(1)
        staged = await _routings_staged(runtime, ids)
    assert [dict(r.headers)["ce_id"] for r in dead] == [poison.id.encode()]
    assert staged == {i: 1 for i in ids}  # the batch was rolled back, then each good one routed once
    assert Counter(e.data.assignee_id for e in got if e.data.outcome == "assigned") == {"ann": 3, "bob": 2}


async def test_a_connection_lost_mid_batch_routes_each_lead_once(fresh_database_url, kafka_bootstrap, unique_name,
                                                                  monkeypatch):
    killed: list[int] = []
    flush = BatchRouting.flush

    async def flush_after_losing_the_connection(self):
        if not killed and self._assignments:  # decided, nothing written yet: the server drops the session
            killed.append(await lose_connection(self._session, fresh_database_url))
        await flush(self)

    monkeypatch.setattr(BatchRouting, "flush", flush_after_losing_the_connection)
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name, batch_size=200) as (runtime, client):
        resp = await client.post("/roster/import", content=json.dumps(always_on_roster({"ann": 3, "bob": 2},
                                                                                       unique_name)))
        assert resp.status_code == 200, resp.text
        ids = lead_ids(8)
        await _send(kafka_bootstrap, [scored(i, unique_name) for i in ids])
        got = await routed(kafka_bootstrap, ids, 8)
        await asyncio.sleep(1)
        staged = await _routings_staged(runtime, ids)
    assert killed
    assert staged == {i: 1 for i in ids}  # the retried batch applied each lead once
    assert len({e.lead_id for e in got}) == 8
    assert Counter(e.data.assignee_id for e in got if e.data.outcome == "assigned") == {"ann": 3, "bob": 2}
