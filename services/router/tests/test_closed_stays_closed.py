"""Closed stays closed: a won or lost lead is never routed again, whatever arrives after the close.

A CRM logs ``qualified`` and ``won`` within milliseconds: the router closes the lead on ``won`` (from
follow-up-logged) while scoring's SQL lead-scored (from ``qualified``) is still one hop away, so it arrives
after the close; or, in the other order, before it. Either way the lead ends closed with one lead-routed.
Counted in the router's own outbox (the lead-routed events it ever wrote), after each event was handled.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from leadbridge_contracts import Envelope, Stage
from leadbridge_contracts.events import FollowUpOutcome
from leadbridge_router import db
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the harness importable
from router_harness import (
    always_on_roster,
    breached,
    follow_up,
    lead_ids,
    lead_status,
    publish,
    routed,
    running_router,
    scored,
)

pytestmark = pytest.mark.integration
WON, LOST = FollowUpOutcome.WON, FollowUpOutcome.LOST


async def handled(runtime: Any, *events: Envelope[Any]) -> None:
    """Wait until the router's consumer committed its handling of each event (processed-event ids)."""
    ids = {e.id for e in events}
    for _ in range(600):
        async with runtime.sessions() as session:
            done = set((await session.execute(select(db.processed_events.c.event_id)
                                              .where(db.processed_events.c.event_id.in_(ids)))).scalars())
        if done == ids:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"events not handled: {ids - done}")


async def routes_written(runtime: Any, lead_id: str) -> int:
    async with runtime.sessions() as session:
        return (await session.execute(select(func.count()).select_from(db.outbox)
                                      .where(db.outbox.c.key == lead_id, db.outbox.c.topic == "lead-routed"))).scalar()


async def test_sql_after_won_and_before_won_both_end_closed_with_one_route(fresh_database_url, kafka_bootstrap,
                                                                          unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        roster = always_on_roster({"ann": None, "bob": None}, unique_name)
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        late_sql, early_sql = lead_ids(2)
        await publish(kafka_bootstrap, scored(late_sql, unique_name), scored(early_sql, unique_name))
        first = {e.lead_id: e.data for e in await routed(kafka_bootstrap, [late_sql, early_sql], 2)}

        # qualified then won: the close is handled first, scoring's SQL lead-scored one hop later
        won = follow_up(late_sql, WON, first[late_sql].assignee_id)
        await publish(kafka_bootstrap, won)
        await handled(runtime, won)
        sql = scored(late_sql, unique_name, stage=Stage.SQL, became_mql=False)
        # ... and a breach of the closed assignment asks for an escalation
        breach = breached(late_sql, first[late_sql].assignee_id, 1)
        await publish(kafka_bootstrap, sql, breach)
        await handled(runtime, sql, breach)

        # the other order: SQL first (already owned), then won
        sql_first = scored(early_sql, unique_name, stage=Stage.SQL, became_mql=False)
        won_after = follow_up(early_sql, WON, first[early_sql].assignee_id)
        await publish(kafka_bootstrap, sql_first, won_after)
        await handled(runtime, sql_first, won_after)

        # deactivating the reps re-routes open leads only: never a closed one
        for rep in ("ann", "bob"):
            resp = await client.patch(f"/reps/{rep}", json={"active": False})
            assert resp.status_code == 200 and resp.json()["rerouted_leads"] == []

        for lead in (late_sql, early_sql):
            status = await lead_status(client, lead)
            assert status["status"] == "closed" and status["closed_outcome"] == "won", status
            assert await routes_written(runtime, lead) == 1, f"{lead} was routed again after the close"


async def test_a_lead_closed_before_the_router_saw_it_is_never_routed(fresh_database_url, kafka_bootstrap,
                                                                     unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        roster = always_on_roster({"ann": None}, unique_name)
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        [lead] = lead_ids(1)
        lost = follow_up(lead, LOST)  # e.g. sales closed it in the CRM while it was still in nurture
        await publish(kafka_bootstrap, lost)
        await handled(runtime, lost)
        late = [scored(lead, unique_name), scored(lead, unique_name, stage=Stage.SQL, became_mql=False)]
        await publish(kafka_bootstrap, *late)
        await handled(runtime, *late)
        assert await routes_written(runtime, lead) == 0
        status = await lead_status(client, lead)
        assert status["status"] == "closed" and status["closed_outcome"] == "lost"


async def test_a_closed_lead_leaves_the_capacity_waiting_list(fresh_database_url, kafka_bootstrap, unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        roster = always_on_roster({"ann": 1}, unique_name, cap="max_open")
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        owned, waiting = lead_ids(2)
        await publish(kafka_bootstrap, scored(owned, unique_name))
        await routed(kafka_bootstrap, [owned], 1)
        await publish(kafka_bootstrap, scored(waiting, unique_name))
        [w] = [e.data for e in await routed(kafka_bootstrap, [waiting], 1)]
        assert w.reason_code == "capacity"
        closes = [follow_up(waiting, LOST), follow_up(owned, WON, "ann")]  # ann's slot frees after `waiting` closed
        await publish(kafka_bootstrap, closes[0])
        await handled(runtime, closes[0])
        await publish(kafka_bootstrap, closes[1])
        await handled(runtime, closes[1])
        assert await routes_written(runtime, waiting) == 1
        assert (await lead_status(client, waiting))["status"] == "closed"
