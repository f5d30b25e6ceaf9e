"""The router service with its express lane (spawned by the service wiring): with the main consumer paused,
a new lead's first lead-scored is routed at once; when the main consumer resumes it skips that event
(claimed under its group) and the lead's later lead-scored routes nothing more: one lead-routed (the lane
publishes it at once and the relay again from its outbox row: the same event id twice, which consumers skip)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from leadbridge_contracts import Stage
from leadbridge_events.express import ExpressSettings, first_of_lead
from leadbridge_router import db
from leadbridge_router.settings import RouterSettings
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the harness importable
from router_harness import always_on_roster, lead_ids, publish, routed, running_router, scored  # noqa: E402

pytestmark = pytest.mark.integration


async def _lane_assigned(kafka: str, group: str, timeout: float = 30.0) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            [described] = await admin.describe_consumer_groups([group])
            if any(g[2] == "Stable" and g[5] for g in described.groups):  # (error, id, state, type, protocol, members)
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{group} not assigned")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    await asyncio.sleep(1.0)  # its starting positions (latest) resolved


async def _count(runtime, table, *where) -> int:
    async with runtime.sessions() as s:
        return (await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def test_a_new_leads_first_score_is_routed_while_the_main_consumer_is_paused(
        fresh_database_url, kafka_bootstrap, unique_name):
    settings = RouterSettings(DATABASE_URL=fresh_database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                              ROUTER_HOLD_POLL_SECONDS=3600,  # the lane always takes a fresh first score:
                              express=ExpressSettings(min_lag=0, min_wait_seconds=0, max_age_seconds=10))
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name, settings=settings) as (runtime, client):
        roster = always_on_roster({"ann": None, "bob": None}, unique_name)
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        await _lane_assigned(kafka_bootstrap, f"{unique_name}-express")
        main = runtime.runner._consumer
        paused = main.assignment()
        main.pause(*paused)  # the main group is stuck behind (a backlog)
        try:
            [lead] = lead_ids(1)
            first = first_of_lead(scored(lead, unique_name))
            await publish(kafka_bootstrap, first)
            # published at once by the lane, and again by the relay from its outbox row: one event id
            [event] = {e.id: e for e in await routed(kafka_bootstrap, [lead], 1)}.values()
            assert event.data.outcome == "assigned" and event.data.assignee_id in ("ann", "bob")
            claimed = db.processed_events.c
            assert await _count(runtime, db.processed_events, claimed.event_id == first.id,
                                claimed.consumer == unique_name) == 1  # under the main group's id
            later = scored(lead, unique_name, stage=Stage.SQL, became_mql=False)  # not marked: in order
            await publish(kafka_bootstrap, later)
            await asyncio.sleep(1.0)
            assert await _count(runtime, db.processed_events, claimed.event_id == later.id) == 0
        finally:
            with contextlib.suppress(Exception):
                main.resume(*paused)
        deadline = asyncio.get_running_loop().time() + 30
        while not await _count(runtime, db.processed_events, claimed.event_id == later.id):
            assert asyncio.get_running_loop().time() < deadline, "the main consumer did not catch up"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        outbox = db.outbox.c
        assert await _count(runtime, db.outbox, outbox.key == lead,
                            outbox.headers["ce_type"].astext == "io.leadbridge.lead-routed") == 1
