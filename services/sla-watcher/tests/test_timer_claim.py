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
from leadbridge_sla_watcher import timer as timer_module
from leadbridge_sla_watcher.deadlines import Deadline, Firing, Status, fire
from leadbridge_sla_watcher.handlers import HANDLERS
from leadbridge_sla_watcher.timer import TimerLoop, claim_sql
from sqlalchemy import func, select, text

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
        claimed = (await s.execute(claim_sql(1000), {"now": NOW})).all()
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


def test_the_lean_event_path_builds_what_the_generic_one_does():
    """``event_id`` is ``uuid5``, ``firing_event`` is ``Envelope.of``, ``store.from_claimed`` is ``from_row``."""
    import uuid

    from leadbridge_contracts.envelope import Envelope
    from leadbridge_contracts.events import SlaAtRisk, SlaBreached
    from leadbridge_sla_watcher.timer import _EVENT_NS, SOURCE, event_id, firing_event

    for name in ("d0", "due-123", "ü-ß-€-😀", "x" * 200, ""):
        for firing in Firing:
            assert event_id(name, firing) == str(uuid.uuid5(_EVENT_NS, f"{name}:{firing.value}"))
    for d in due_rows()[:6] + [replace(due_rows()[0], assignee_id=None, team=None, escalate=False, attempt=3)]:
        for firing, model in ((Firing.AT_RISK, SlaAtRisk), (Firing.BREACH, SlaBreached)):
            common = dict(lead_id=d.lead_id, deadline_id=d.id, policy=d.policy, kind=d.kind,
                          assignee_id=d.assignee_id, team=d.team, due_at=d.due_at, fired_at=NOW,
                          routing_attempt=d.attempt)
            data = model(**common) if model is SlaAtRisk else model(**common, escalate=d.escalate)
            generic = Envelope.of(data, source=SOURCE, lead_id=d.lead_id, time=NOW,
                                  event_id=str(uuid.uuid5(_EVENT_NS, f"{d.id}:{firing.value}")))
            lean = firing_event(d, firing, NOW)
            assert lean == generic and type(lean) is type(generic)
            assert (lean.kafka_value(), lean.kafka_headers()) == (generic.kafka_value(), generic.kafka_headers())
        row = {c: getattr(d, c) if c != "next_fire_at" else NOW for c in store.CLAIMED}
        row["kind"], row["status"] = d.kind.value, d.status.value
        assert store.from_claimed(tuple(row.values())) == store.from_row(row) == d
    bad = tuple({**row, "kind": "bogus"}.values())
    with pytest.raises(ValueError):  # as from_row: the timer parks the row and counts a ValueError
        store.from_claimed(bad)


async def test_the_claim_walks_the_due_index_even_when_the_statistics_know_nothing_due(sessions):
    """Rows that came due since the last ANALYZE are invisible to the statistics; the claim must still read only
    ``limit`` rows (not every due row, sorted: O(due) per batch on a Monday)."""
    from leadbridge_sla_watcher.bench import _LOAD

    async with sessions() as s, s.begin():  # deadlines due in 1 to 30 days, analyzed; then 30,000 due now
        await s.execute(_LOAD, {"prefix": "far-", "n": 30000, "offset": 86400, "spread": 30 * 86400})
    async with sessions() as s, s.begin():
        await s.execute(text("ANALYZE sla_watcher.deadlines"))
    async with sessions() as s, s.begin():
        await s.execute(_LOAD, {"prefix": "due-", "n": 30000, "offset": -60, "spread": 1})
    loop = TimerLoop(transactions(sessions), batch_size=50)
    async with sessions() as s, s.begin():
        await s.execute(timer_module._PLAN)
        plan = "\n".join((await s.execute(text("EXPLAIN " + loop._claim.text), {"now": datetime.now(UTC)})).scalars())
    assert "Index Scan using ix_sla_deadlines_due" in plan and "Sort" not in plan and "Seq Scan" not in plan, plan
    assert await loop.fire_due() == 50


async def test_the_next_due_look_up_reads_one_entry_of_the_due_index(sessions):
    """The timer asks for the next fire time several times a second. It must read the due index's first entry
    only: under a generic plan (the driver's prepared statements get one after five executions) and with
    statistics taken while nothing was open (min() was then an aggregate over all 30,000 open entries)."""
    import re

    from leadbridge_sla_watcher.bench import _LOAD
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    async with sessions() as s, s.begin():  # 200 deadlines, all met: the statistics know of no open row
        await s.execute(_LOAD, {"prefix": "met-", "n": 200, "offset": -86400, "spread": 3600})
        await s.execute(text("UPDATE sla_watcher.deadlines SET status = 'met', next_fire_at = NULL"))
    async with sessions() as s, s.begin():
        await s.execute(text("ANALYZE sla_watcher.deadlines"))
    async with sessions() as s, s.begin():
        await s.execute(_LOAD, {"prefix": "far-", "n": 30000, "offset": 86400, "spread": 30 * 86400})
    compiled = timer_module._NEXT.compile(dialect=dialect())
    values = [compiled.params[name] for name in compiled.positiontup or []]
    types = ", ".join("text" if isinstance(v, str) else "int" for v in values)
    async with sessions() as s, s.begin():
        await s.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        await s.execute(text(f"PREPARE next_due {f'({types})' if values else ''} AS {compiled.string}"))
        arguments = f"({', '.join(repr(v) for v in values)})" if values else ""
        plan = "\n".join((await s.execute(text(f"EXPLAIN (ANALYZE, TIMING OFF) EXECUTE next_due{arguments}")))
                         .scalars())
        assert (await s.execute(timer_module._NEXT)).scalar() is not None
    read = re.search(r"Index (?:Only )?Scan using ix_sla_deadlines_due .*actual rows=(\d+)", plan)
    assert read and int(read[1]) == 1 and "Seq Scan" not in plan, plan
