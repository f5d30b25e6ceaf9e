"""The router over real Kafka and PostgreSQL: won/lost follow-ups close a lead's assignment, free the rep's
open slot, and the oldest lead waiting for capacity gets it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from leadbridge_contracts.events import FollowUpOutcome
from leadbridge_router import db, metrics
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the harness importable
from router_harness import always_on_roster, follow_up, lead_ids, lead_status, publish, routed, running_router, scored

pytestmark = pytest.mark.integration
WON, LOST, CALLED = FollowUpOutcome.WON, FollowUpOutcome.LOST, FollowUpOutcome.CONNECTED


def skipped(why: str) -> float:
    return metrics.SKIPPED.labels(why)._value.get()


async def test_won_and_lost_close_assignments_and_feed_the_waiting_list(fresh_database_url, kafka_bootstrap,
                                                                        unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        roster = always_on_roster({"ann": 1}, unique_name, cap="max_open")
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        first, second, third, stranger = lead_ids(4)

        await publish(kafka_bootstrap, scored(first, unique_name))
        [a] = [e.data for e in await routed(kafka_bootstrap, [first], 1)]
        assert a.assignee_id == "ann"
        await publish(kafka_bootstrap, scored(second, unique_name))  # ann is at max_open: it waits
        [b] = [e.data for e in await routed(kafka_bootstrap, [second], 1)]
        assert b.outcome == "returned_to_nurture" and b.reason_code == "capacity"

        # a follow-up without an outcome that closes changes nothing; one for a lead the router never saw is
        # recorded as closed (logged and counted), never a dead letter
        unknown_before = skipped("unknown_lead")
        await publish(kafka_bootstrap, follow_up(first, CALLED, "ann"), follow_up(stranger, WON))
        # won closes ann's lead: her slot frees and the waiting lead gets it in the same transaction
        await publish(kafka_bootstrap, follow_up(first, WON, "ann"))
        again = [e.data for e in await routed(kafka_bootstrap, [second], 2) if e.data.attempt == 2]
        assert again and again[0].assignee_id == "ann" and "capacity freed up" in again[0].reason
        closed = await lead_status(client, first)
        assert closed["status"] == "closed" and closed["closed_outcome"] == "won" and closed["closed_at"]
        # the stranger's event sits on its own partition: wait until it is handled. It is remembered as
        # closed, so that no later lead-scored routes a lead sales has closed already
        stranger_row = await lead_status(client, stranger, until=lambda body: body["status"] == "closed")
        assert stranger_row["closed_outcome"] == "won" and stranger_row["attempt"] == 0
        assert skipped("unknown_lead") > unknown_before

        # a second outcome for a closed lead changes nothing (idempotent); lost closes like won
        await publish(kafka_bootstrap, follow_up(first, LOST, "ann"), scored(third, unique_name))
        [c] = [e.data for e in await routed(kafka_bootstrap, [third], 1)]
        assert c.outcome == "returned_to_nurture"  # ann holds `second` now
        await lead_status(client, third, until=lambda body: body["waiting_since"] is not None)
        await publish(kafka_bootstrap, follow_up(second, LOST, "ann"))
        moved = [e.data for e in await routed(kafka_bootstrap, [third], 2) if e.data.attempt == 2]
        assert moved and moved[0].assignee_id == "ann"
        assert (await lead_status(client, first))["closed_outcome"] == "won"
        assert (await lead_status(client, second, until=lambda b: b["status"] == "closed"))["closed_outcome"] == "lost"

        async with runtime.sessions() as session:
            a_ = db.assignments
            rows = (await session.execute(select(a_.c.lead_id, a_.c.released_at, a_.c.close_outcome)
                                          .where(a_.c.lead_id.in_([first, second, third])))).all()
        by_lead = {r.lead_id: r for r in rows}
        assert by_lead[first].close_outcome == "won" and by_lead[first].released_at is not None
        assert by_lead[second].close_outcome == "lost"
        assert by_lead[third].released_at is None  # ann's one open lead


async def test_a_new_local_day_frees_daily_slots_for_waiting_leads(fresh_database_url, kafka_bootstrap, unique_name):
    from datetime import timedelta

    from leadbridge_router.scheduler import drain_waiting
    from router_harness import NOW

    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        roster = always_on_roster({"ann": 1}, unique_name)  # daily_cap 1
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        first, second = lead_ids(2)
        await publish(kafka_bootstrap, scored(first, unique_name))
        await routed(kafka_bootstrap, [first], 1)
        await publish(kafka_bootstrap, scored(second, unique_name))
        [b] = [e.data for e in await routed(kafka_bootstrap, [second], 1)]
        assert b.outcome == "returned_to_nurture" and "daily cap" in b.reason
        # won frees the open slot, but ann's daily cap counts the leads she got today, closed or not
        await publish(kafka_bootstrap, follow_up(first, WON, "ann"))
        await lead_status(client, first, until=lambda body: body["status"] == "closed")
        assert (await lead_status(client, second))["waiting_since"] is not None
        assert await drain_waiting(runtime.transaction, NOW()) == 0
        assert await drain_waiting(runtime.transaction, NOW() + timedelta(days=1)) == 1  # a new day in Berlin
        later = [e.data for e in await routed(kafka_bootstrap, [second], 2) if e.data.attempt == 2]
        assert later and later[0].assignee_id == "ann"
