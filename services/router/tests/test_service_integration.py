"""The router over the real Kafka and PostgreSQL: routing, caps, escalation, deactivation, replicas."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from leadbridge_contracts import Stage
from leadbridge_router import db
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the harness importable
from datetime import UTC

from router_harness import always_on_roster, breached, lead_ids, publish, routed, running_router, scored

pytestmark = pytest.mark.integration


async def test_routes_mqls_escalates_and_reroutes_on_deactivation(fresh_database_url, kafka_bootstrap, unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        resp = await client.post("/roster/import", content=json.dumps(always_on_roster({"ann": None, "bob": None,
                                                                                         "cyd": None}, unique_name)))
        assert resp.status_code == 200, resp.text
        mql, nurture, sql = lead_ids(3)
        first = scored(mql, unique_name)
        await publish(kafka_bootstrap, first, first,
                      scored(nurture, unique_name, stage=Stage.NURTURE, became_mql=False),
                      scored(sql, unique_name, stage=Stage.SQL, became_mql=False),
                      scored(mql, unique_name, stage=Stage.SQL, became_mql=False))  # already owned: not routed again
        events = await routed(kafka_bootstrap, [mql, nurture, sql], 2)
        by_lead = {e.lead_id: e.data for e in events}
        assert set(by_lead) == {mql, sql}
        a = by_lead[mql]
        assert a.outcome == "assigned" and a.attempt == 1 and a.sla_policy == "standard" and a.team == "inbound"
        assert a.rule == "this-test" and "weighted round robin" in a.reason
        assert a.assignee_timezone == "Europe/Berlin"
        assert a.assignee_crm_owner_ids == {"hubspot": f"hs-{a.assignee_id}", "salesforce": f"005-{a.assignee_id}"}
        assert by_lead[sql].assignee_id != a.assignee_id  # round robin

        # escalation: never back to the previous assignee
        await publish(kafka_bootstrap, breached(mql, a.assignee_id, 1))
        again = [e.data for e in await routed(kafka_bootstrap, [mql], 2) if e.data.attempt == 2]
        assert again and again[0].assignee_id != a.assignee_id
        assert again[0].previous_assignees == [a.assignee_id] and again[0].reason.startswith("escalation")

        # deactivating a rep with open leads re-routes them at once
        owner = by_lead[sql].assignee_id
        resp = await client.patch(f"/reps/{owner}", json={"active": False})
        assert resp.status_code == 200 and resp.json()["rerouted_leads"] == [sql]
        moved = [e.data for e in await routed(kafka_bootstrap, [sql], 2) if e.data.attempt == 2]
        assert moved[0].assignee_id not in (owner, None) and "deactivated" in moved[0].reason

        status = (await client.get(f"/leads/{sql}")).json()
        assert status["assignee"] == moved[0].assignee_id and status["previous_assignees"] == [owner]
        assert (await client.get(f"/leads/{nurture}")).status_code == 404
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/readyz")).json() == {"database": "ok", "kafka": "ok"}


async def test_caps_then_overflow_back_to_nurture(fresh_database_url, kafka_bootstrap, unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        roster = always_on_roster({"ann": 1, "bob": 1}, unique_name, cap="max_open")
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        ids = lead_ids(3)
        await publish(kafka_bootstrap, *(scored(i, unique_name) for i in ids))
        events = [e.data for e in await routed(kafka_bootstrap, ids, 3)]
        outcomes = Counter(e.outcome for e in events)
        assert outcomes == {"assigned": 2, "returned_to_nurture": 1}
        nurtured = next(e for e in events if e.outcome == "returned_to_nurture")
        assert nurtured.reason_code == "capacity" and nurtured.reason.startswith("capacity")
        assert nurtured.assignee_id is None
        assert (await client.get(f"/leads/{nurtured.lead_id}")).json()["waiting_since"] is not None

        # sales sends one assigned lead back to nurture: its rep's open slot frees, and the lead that was
        # waiting for capacity gets it at once (not forgotten until its next MQL crossing)
        back = next(e for e in events if e.outcome == "assigned")
        await publish(kafka_bootstrap, scored(back.lead_id, unique_name, stage=Stage.NURTURE, became_mql=False))
        later = [e.data for e in await routed(kafka_bootstrap, [nurtured.lead_id], 2) if e.data.attempt == 2]
        assert later and later[0].outcome == "assigned" and later[0].assignee_id == back.assignee_id
        assert "capacity freed up" in later[0].reason
        assert (await client.get(f"/leads/{back.lead_id}")).json()["status"] == "recycled"
        assert (await client.get(f"/leads/{nurtured.lead_id}")).json()["waiting_since"] is None


async def test_roster_api_validates_and_round_trips(fresh_database_url, kafka_bootstrap, unique_name):
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name) as (runtime, client):
        with open(__file__.replace("tests/test_service_integration.py", "roster.example.yaml")) as f:
            assert (await client.post("/roster/import", content=f.read())).status_code == 200
        roster = (await client.get("/roster")).json()
        assert {t["id"] for t in roster["teams"]} == {"dach", "enterprise", "general"}
        assert roster["rules"][0]["id"] == "enterprise-hot"
        bad = await client.put("/reps/zed", json={"id": "zed", "team": "nope"})
        assert bad.status_code == 422
        bad = await client.put("/reps/zed", json={"id": "zed", "team": "general", "timezone": "Mars/Base"})
        assert bad.status_code == 422
        ok = await client.put("/reps/zed", json={"id": "zed", "team": "general", "weight": 3})
        assert ok.status_code == 200 and (await client.get("/reps/zed")).json()["weight"] == 3
        assert (await client.delete("/teams/general")).status_code == 409
        assert (await client.put("/rules", json={"rules": [], "fallback_pool": "general"})).status_code == 200
        assert (await client.get("/rules")).json()["rules"] == []
        assert (await client.get("/reps")).status_code == 200  # a read announces nothing
        async with runtime.sessions() as session:  # each change announced the whole roster, in its transaction
            o = db.outbox
            values = (await session.execute(select(o.c.value).where(o.c.topic == "roster").order_by(o.c.id))).scalars()
            announced = [json.loads(v) for v in values]
        assert len(announced) == 3  # the import, rep zed, the rules (failed changes announce nothing)
        zed = [r for r in announced[1]["reps"] if r["id"] == "zed"]
        assert zed[0]["weight"] == 3 and zed[0]["team"] == "general"
        assert {t["id"] for t in announced[-1]["teams"]} == {"dach", "enterprise", "general"}


def router_partitions() -> int:
    """All partitions of the topics the router consumes (its HANDLERS map)."""
    from leadbridge_contracts.topics import ALL_TOPICS
    from leadbridge_router.handlers import HANDLERS

    return sum(t.partitions for t in ALL_TOPICS if t.name in HANDLERS.topics)


async def settled(*consumers, partitions: int | None = None, quiet: float = 3.0) -> None:
    """Wait until the replicas own all partitions between them, unchanged for ``quiet`` seconds, and have
    resolved their start positions (with auto_offset_reset=latest a late reset would skip our events)."""
    partitions = partitions or router_partitions()
    loop = asyncio.get_running_loop()
    stable_since, last = None, None
    deadline = loop.time() + 60
    while loop.time() < deadline:
        owned = [frozenset(c.assignment()) for c in consumers]
        union = frozenset().union(*owned)
        ok = all(owned) and len(union) == partitions and sum(map(len, owned)) == partitions
        if ok and owned == last:
            stable_since = stable_since or loop.time()
            if loop.time() - stable_since >= quiet:
                for c, tps in zip(consumers, owned, strict=False):
                    for tp in tps:
                        await c.position(tp)
                return
        else:
            stable_since = None
        last = owned
        await asyncio.sleep(0.1)
    pytest.fail("the replicas never settled into one group")


async def test_two_replicas_never_exceed_caps_or_assign_twice(fresh_database_url, kafka_bootstrap, unique_name):
    handled: dict[str, list[str]] = {"one": [], "two": []}
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name,
                              on_committed=lambda r: handled["one"].append(r.key.decode())) as (one, client):
        caps = {"ann": 4, "bob": 4, "cyd": 4}
        roster = json.dumps(always_on_roster(caps, unique_name))
        assert (await client.post("/roster/import", content=roster)).status_code == 200
        async with running_router(fresh_database_url, kafka_bootstrap, unique_name,
                                  on_committed=lambda r: handled["two"].append(r.key.decode())) as (two, _):
            await settled(one.runner._consumer, two.runner._consumer)
            ids = lead_ids(20)
            await publish(kafka_bootstrap, *(scored(i, unique_name) for i in ids))
            events = [e.data for e in await routed(kafka_bootstrap, ids, 20)]
        assert len(events) == 20 and len({e.lead_id for e in events}) == 20  # one decision per lead
        mine = set(ids)
        assert mine & set(handled["one"]) and mine & set(handled["two"])  # both replicas did routing
        per_rep = Counter(e.assignee_id for e in events if e.outcome == "assigned")
        assert per_rep == {"ann": 4, "bob": 4, "cyd": 4}
        assert Counter(e.outcome for e in events)["returned_to_nurture"] == 8
        async with one.sessions() as session:
            a = db.assignments
            doubles = (await session.execute(select(a.c.lead_id).where(a.c.released_at.is_(None))
                                             .group_by(a.c.lead_id).having(func.count() > 1))).all()
            assert doubles == []
            o = db.outbox  # every lead-routed event ever emitted is in the outbox: exactly one per lead
            emitted = Counter((await session.execute(select(o.c.key).where(o.c.key.in_(ids)))).scalars())
            assert emitted == {i: 1 for i in ids}


async def test_held_off_hours_lead_is_routed_when_the_shift_starts(fresh_database_url, kafka_bootstrap, unique_name):
    from datetime import datetime

    from leadbridge_router.scheduler import route_due_held

    saturday = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    roster = always_on_roster({"ann": None}, unique_name)
    roster["teams"][0]["off_hours"] = "hold"
    roster["reps"][0]["working_hours"] = {"mon": ["09:00-17:00"]}
    async with running_router(fresh_database_url, kafka_bootstrap, unique_name, clock=lambda: saturday) as (
            runtime, client):
        assert (await client.post("/roster/import", content=json.dumps(roster))).status_code == 200
        [lead] = lead_ids(1)
        await publish(kafka_bootstrap, scored(lead, unique_name))
        for _ in range(200):
            status = await client.get(f"/leads/{lead}")
            if status.status_code == 200:
                break
            await asyncio.sleep(0.1)
        body = status.json()
        assert body["status"] == "held" and body["hold_until"].startswith("2026-03-09T08:00:00")  # 09:00 Berlin
        assert await route_due_held(runtime.transaction, saturday) == 0  # not due yet
        assert await route_due_held(runtime.transaction, datetime(2026, 3, 9, 8, 5, tzinfo=UTC)) == 1
        [event] = await routed(kafka_bootstrap, [lead], 1)
        assert event.data.assignee_id == "ann" and event.data.attempt == 1 and "shift started" in event.data.reason
