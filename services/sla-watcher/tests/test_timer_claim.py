"""The timer's claim statement is ``deadlines.fire`` in SQL: for every kind of due row, both agree."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from leadbridge_contracts.events import SlaKind
from leadbridge_contracts.topics import SLA_BREACHED
from leadbridge_events.db import create_schema, make_engine, session_factory
from leadbridge_events.transaction import open_transaction
from leadbridge_sla_watcher import store, tables
from leadbridge_sla_watcher.deadlines import Deadline, Firing, Status, fire
from leadbridge_sla_watcher.handlers import HANDLERS
from leadbridge_sla_watcher.timer import TimerLoop, claim_sql
from sqlalchemy import func, select

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.fixture
async def sessions(fresh_database_url):
    engine = make_engine(fresh_database_url, pool_size=2)
    await create_schema(engine, tables.metadata)
    yield session_factory(engine)
    await engine.dispose()


def transactions(sessions):
    return partial(open_transaction, sessions, tables.outbox, emits=HANDLERS.emitted_types)


def due_rows() -> list[Deadline]:
    """Open deadlines around ``NOW``: due or not, with or without a pending, fired or useless at-risk point."""
    out = []
    dues = (NOW - 10 * S, NOW, NOW + 10 * S)
    at_risks = (None, NOW - 20 * S, NOW, NOW + 5 * S, NOW + 20 * S)
    fired = (None, NOW - 30 * S)
    for i, (due, at_risk, at_risk_fired) in enumerate(itertools.product(dues, at_risks, fired)):
        out.append(Deadline(id=f"d{i}", lead_id=f"lead-{i}", kind=SlaKind.FIRST_TOUCH, policy="standard", attempt=1,
                            assignee_id="rep-1", team="smb", starts_at=NOW - 60 * S, due_at=due, at_risk_at=at_risk,
                            at_risk_fired_at=at_risk_fired))
    return out


async def test_the_claim_changes_each_due_row_exactly_as_fire_does(sessions):
    rows = due_rows()
    async with sessions() as s, s.begin():
        await store.save(s, rows)
        # every row claimable, even the ones whose computed next fire time is later (a stale next_fire_at)
        await s.execute(tables.deadlines.update().values(next_fire_at=NOW - 60 * S))
    async with sessions() as s, s.begin():
        claimed = (await s.execute(claim_sql(), {"now": NOW, "n": 1000})).all()
    assert sorted(r.id for r in claimed) == sorted(d.id for d in rows)
    async with sessions() as s:
        after = {r.id: store.from_row(r) for r in await s.execute(select(tables.deadlines))}
        stored_next = dict((await s.execute(select(tables.deadlines.c.id, tables.deadlines.c.next_fire_at))).all())
    firings = set()
    for d in rows:
        expected, firing = fire(d, NOW)
        firings.add(firing)
        assert after[d.id] == expected, d
        assert stored_next[d.id] == expected.next_fire_at, d
    assert firings == {Firing.BREACH, Firing.AT_RISK, None}  # the matrix covers every outcome


async def test_a_row_claimed_early_fires_nothing_and_is_not_claimed_again_at_once(sessions):
    early = replace(due_rows()[0], id="early", due_at=NOW + 60 * S, at_risk_at=None)
    async with sessions() as s, s.begin():
        await store.save(s, [early])
        await s.execute(tables.deadlines.update().values(next_fire_at=NOW - S))  # stale: says due
    loop = TimerLoop(transactions(sessions), clock=lambda: NOW)
    assert await loop.fire_due() == 0 and loop.claimed == 1
    assert await loop.fire_due() == 0 and loop.claimed == 0  # its next fire time was put right


async def test_two_replicas_of_two_workers_each_fire_every_due_deadline_once(sessions, fresh_database_url):
    rows = [replace(due_rows()[0], id=f"r{i}", lead_id=f"lead-r{i}", at_risk_at=None) for i in range(400)]
    async with sessions() as s, s.begin():
        await store.save(s, rows)
    other = make_engine(fresh_database_url, pool_size=3)
    loops = [TimerLoop(transactions(sessions), batch_size=25, workers=2, clock=lambda: NOW),
             TimerLoop(transactions(session_factory(other)), batch_size=25, workers=2, clock=lambda: NOW)]
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        async with asyncio.timeout(30):
            while sum(loop.fired for loop in loops) < len(rows):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a double firing would show up now
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await other.dispose()
    assert sum(loop.fired for loop in loops) == len(rows)
    async with sessions() as s:
        total, distinct = (await s.execute(select(func.count(), func.count(func.distinct(tables.outbox.c.event_id)))
                                           .where(tables.outbox.c.topic == SLA_BREACHED.name))).one()
        statuses = set((await s.execute(select(tables.deadlines.c.status))).scalars())
    assert total == distinct == len(rows) and statuses == {Status.BREACHED}
