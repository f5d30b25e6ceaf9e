"""The batch path's combined statements (``batch_store``) against PostgreSQL: what they read, and that they
hold the locks the separate statements held (a second transaction cannot take them)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_router import batch_store, db, store
from leadbridge_router.fairness import RepCounter
from leadbridge_router.roster import Rep, Team
from sqlalchemy import text

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


async def _locked(url: str, sql: str, *args: object) -> bool:
    """True if another connection cannot take these row locks at once (NOWAIT fails with 55P03)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with conn.transaction():
            await conn.fetch(sql + " FOR UPDATE NOWAIT", *args)
        return False
    except asyncpg.LockNotAvailableError:
        return True
    finally:
        await conn.close()


@pytest.fixture
async def sessions(fresh_database_url):
    engine = make_engine(fresh_database_url)
    await migrate(engine, db.metadata, migrations_dir("leadbridge_router"))
    yield session_factory(engine)
    await engine.dispose()


async def test_leads_are_read_and_locked_with_the_roster_version(sessions, fresh_database_url):
    async with sessions() as s, s.begin():
        first = (await s.execute(text("SELECT version FROM router.roster_version"))).scalar()
        version, rows = await batch_store.lock_and_read_leads(s, ["lead-a"])
        assert version == first and rows == {}  # no lead rows: still the version
        await store.upsert_team(s, Team.model_validate({"id": "t1", "name": "T1"}))
        await store.upsert_rep(s, Rep(id="r1", team="t1"))
        for lead in ("lead-b", "lead-a"):
            await store.save_lead(s, lead, status="routed", attempt=1, assignee="r1", facts={"country": "DE"},
                                  event={"lead_id": lead}, previous_assignees=["r0"], updated_at=NOW)
    async with sessions() as s, s.begin():
        expected = (await s.execute(text("SELECT version FROM router.roster_version"))).scalar()
        version, rows = await batch_store.lock_and_read_leads(s, ["lead-b", "lead-a", "lead-b", "lead-x"])
        assert version == expected != first  # the roster's writes moved it
        assert list(rows) == ["lead-a", "lead-b"]  # lead id order, the missing one absent
        a = rows["lead-a"]
        assert (a.status, a.attempt, a.assignee, a.facts, a.event, a.previous_assignees) == (
            "routed", 1, "r1", {"country": "DE"}, {"lead_id": "lead-a"}, ["r0"])  # JSON decoded, as before
        assert vars(a).keys() == {c.name for c in db.leads.columns}
        assert await _locked(fresh_database_url, "SELECT 1 FROM router.leads WHERE lead_id = $1", "lead-b")
        assert (await store.roster_at(s, version)).reps[0].id == "r1"
    assert not await _locked(fresh_database_url, "SELECT 1 FROM router.leads WHERE lead_id = $1", "lead-b")


async def test_pools_are_locked_with_their_counters_and_created_when_missing(sessions, fresh_database_url):
    async with sessions() as s, s.begin():
        assert await batch_store.lock_pool_states(s, ["p1"]) is None  # no row yet: the caller creates it
        vtimes, states = await store.lock_pool_states(s, ["p2", "p1"])
        assert vtimes == {"p1": 0.0, "p2": 0.0} and all(not st.counters for st in states.values())
        await batch_store.write_routings(s, {"p1": 2.5}, [
            {"pool": "p1", "rep_id": "ann", "pass": 1.5, "assigned": 3, "last_assigned_at": NOW}], [], [])
    async with sessions() as s, s.begin():
        vtimes, states = await store.lock_pool_states(s, ["p2", "p1", "p1"])
        assert list(states) == ["p1", "p2"] and vtimes == {"p1": 2.5, "p2": 0.0}
        assert states["p1"].counters == {"ann": RepCounter(1.5, 3, NOW)}
        assert await _locked(fresh_database_url, "SELECT 1 FROM router.pool_state WHERE pool = $1", "p2")
        assert not await _locked(fresh_database_url, "SELECT 1 FROM router.rep_counters WHERE pool = $1", "p1")


async def test_a_batch_that_waited_for_a_pool_reads_the_counters_committed_meanwhile(sessions):
    """Locking the pools and reading their counters in ONE statement read the counters of the statement's
    start: a batch that waited for another's pool lock saw its counters from before that one's routings
    (unfair picks, and lost counter updates when it wrote them back). Fails with the combined statement."""
    async with sessions() as s, s.begin():
        await store.lock_pool_states(s, ["p1"])  # creates the pool's row
    async with sessions() as first:
        await first.begin()
        await store.lock_pool_states(first, ["p1"])
        async with sessions() as second, second.begin():
            waiting = asyncio.create_task(store.lock_pool_states(second, ["p1"]))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # waits for the first one's lock
            await batch_store.write_routings(first, {"p1": 1.0}, [
                {"pool": "p1", "rep_id": "ann", "pass": 1.0, "assigned": 1, "last_assigned_at": NOW}], [], [])
            await first.commit()
            vtimes, states = await asyncio.wait_for(waiting, 10)
    assert vtimes == {"p1": 1.0}
    assert states["p1"].counters == {"ann": RepCounter(1.0, 1, NOW)}
