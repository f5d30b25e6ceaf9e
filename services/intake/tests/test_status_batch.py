"""Intake's lead status follows scoring and routing; in batches it ends exactly where one event at a time ends:
a lead scored then routed, routed back to nurture then scored again, scored twice, re-routed, a late score of a
routed lead (ignored), an event of a lead intake never captured (ignored), leads interleaved in one batch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadRouted, LeadScored, Stage
from leadbridge_events.batching import BatchContext
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_intake.handlers import HANDLERS, on_status_events
from leadbridge_intake.tables import leads, metadata, outbox
from sqlalchemy import insert, select

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


def scored(lead: str, stage: Stage, score: int) -> Envelope:
    return Envelope.of(LeadScored(lead_id=lead, scored_at=NOW, score=score, grade="B", stage=stage, model_version="t",
                                  reason=f"score {score}"), source="scoring", lead_id=lead)


def routed(lead: str, rep: str | None, attempt: int = 1) -> Envelope:
    outcome = {} if rep else {"outcome": "returned_to_nurture"}
    return Envelope.of(LeadRouted(lead_id=lead, routed_at=NOW, assignee_id=rep, team="emea", reason="rr",
                                  attempt=attempt, **outcome), source="router", lead_id=lead)


def plan(a: str, b: str, c: str, d: str) -> list[list[Envelope]]:
    return [
        [scored(a, Stage.MQL, 70), scored(b, Stage.MQL, 60), routed(a, "rep-1"), scored(c, Stage.NURTURE, 10),
         routed(b, None), scored(b, Stage.SQL, 90), scored(c, Stage.MQL, 55), routed(f"unknown-{a}", "rep-x")],
        [scored(a, Stage.SQL, 99), routed(d, "rep-3"), routed(a, "rep-2", attempt=2), scored(d, Stage.MQL, 80)],
    ]


async def _statuses(engine, ids: list[str]) -> dict[str, tuple]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(leads.c.id, leads.c.status, leads.c.status_detail)
                                  .where(leads.c.id.in_(ids)))
        return {r.id: (r.status, r.status_detail) for r in rows}


async def test_batched_statuses_equal_one_by_one(fresh_database_url, second_database_url):
    ids = [str(uuid.uuid4()) for _ in range(4)]
    batches = plan(*ids)
    results = []
    for url, batched in ((fresh_database_url, False), (second_database_url, True)):
        engine = make_engine(url)
        try:
            await migrate(engine, metadata, migrations_dir("leadbridge_intake"))
            async with engine.begin() as conn:
                await conn.execute(insert(leads), [{"id": i, "created_at": NOW, "last_activity_at": NOW, "profile": {},
                                                    "status": "captured", "status_detail": {}} for i in ids])
            for batch in batches:
                async with session_factory(engine)() as session, session.begin():
                    ctx = BatchContext(session=session, outbox=outbox)
                    if batched:
                        await on_status_events(batch, ctx)
                    else:
                        for e in batch:
                            await HANDLERS[e.type].handler(e, ctx.for_event(e))
            results.append(await _statuses(engine, ids))
        finally:
            await engine.dispose()
    expected, got = results
    a, b, c, d = ids
    assert expected[a] == ("routed", {"assignee_id": "rep-2", "team": "emea", "routing_reason": "rr", "attempt": 2})
    assert expected[b][0] == "sql" and expected[c][0] == "mql" and expected[d][0] == "routed"
    assert got == expected
