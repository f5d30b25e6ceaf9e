"""The batch path's combined statements against PostgreSQL: the leads' rows created and locked in one
statement (a second transaction cannot take them), deadlines and routing written in one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from leadbridge_contracts.events import SlaKind
from leadbridge_events.db import create_schema, make_engine, session_factory
from leadbridge_sla_watcher import batch_store, store, tables
from leadbridge_sla_watcher.deadlines import Deadline, Status
from sqlalchemy import select

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(fresh_database_url):
    engine = make_engine(fresh_database_url, pool_size=4)
    await create_schema(engine, tables.metadata)
    yield session_factory(engine)
    await engine.dispose()


async def _locked(url: str, lead_id: str) -> bool:
    """True if another connection cannot write the lead's row within 0.2 s (55P03): a row locked, or inserted
    by a transaction not committed yet (invisible to others, but its key is taken)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    probe = conn.transaction()
    await probe.start()
    try:
        await conn.execute("SET LOCAL lock_timeout = '200ms'")
        await conn.execute("INSERT INTO sla_watcher.leads (lead_id, updated_at) VALUES ($1, now()) "
                           "ON CONFLICT (lead_id) DO UPDATE SET updated_at = excluded.updated_at", lead_id)
        return False
    except asyncpg.LockNotAvailableError:
        return True
    finally:
        await probe.rollback()  # never keep what the probe wrote
        await conn.close()


def _deadline(lead: str, i: int, **kw: object) -> Deadline:
    return Deadline(id=f"{lead}-d{i}", lead_id=lead, kind=SlaKind.FIRST_TOUCH, policy="standard", attempt=1,
                    assignee_id="rep-1", team="smb", starts_at=T0, due_at=T0 + timedelta(minutes=i),
                    at_risk_at=T0 + timedelta(seconds=30 * i), **kw)  # type: ignore[arg-type]


async def test_leads_are_created_and_locked_in_one_statement(sessions, fresh_database_url):
    async with sessions() as s, s.begin():
        await store.save(s, [], {})  # nothing to write: no statement
        assert await batch_store.lock_leads(s, ["old"], T0) == {"old": None}  # created
        await store.save(s, [], {"old": dict(attempt=3, assignee_id="rep-1", team="smb", policy="standard",
                                            routed_at=T0, updated_at=T0)})
    async with sessions() as s, s.begin():
        attempts = await batch_store.lock_leads(s, ["new-b", "old", "new-a", "old"], T0)
        assert attempts == {"old": 3, "new-a": None, "new-b": None}
        for lead in ("old", "new-a", "new-b"):  # existing and created rows alike held to the transaction's end
            assert await _locked(fresh_database_url, lead)
        rows = (await s.execute(select(tables.leads.c.lead_id, tables.leads.c.updated_at)
                                .order_by(tables.leads.c.lead_id))).all()
        assert [tuple(r) for r in rows] == [("new-a", T0), ("new-b", T0), ("old", T0)]
    assert not await _locked(fresh_database_url, "old")


async def test_deadlines_and_routing_are_written_together_and_read_back_live(sessions):
    first = [_deadline("l1", 1), _deadline("l1", 2), _deadline("l2", 1)]
    async with sessions() as s, s.begin():
        await batch_store.lock_leads(s, ["l1", "l2"], T0)
        await store.save(s, first, {"l1": dict(attempt=1, assignee_id="rep-1", team="smb", policy="standard",
                                               routed_at=T0, updated_at=T0)})
    met = Deadline(**{**vars(first[0]), "status": Status.MET, "met_at": T0 + timedelta(seconds=5)})
    async with sessions() as s, s.begin():
        await store.save(s, [met], {})  # an upsert: the same row, changed
        live = await batch_store.live_deadlines(s, ["l2", "l1"])
        leads = {r.lead_id: r.attempt for r in await s.execute(select(tables.leads))}
        stored = {r.id: r.next_fire_at for r in await s.execute(select(tables.deadlines))}
    assert {k: [d.id for d in v] for k, v in live.items()} == {"l1": ["l1-d2"], "l2": ["l2-d1"]}  # due order
    assert live["l1"][0] == first[1]  # read back as it was written
    assert leads == {"l1": 1, "l2": None}
    assert stored == {"l1-d1": None, "l1-d2": first[1].next_fire_at, "l2-d1": first[2].next_fire_at}
