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
