"""Insights' own tables (PostgreSQL schema ``insights``) and the queries on them. An adapter: no rules here.

- ``timeline``: append-only, one row per event of a lead (event id unique), with its explanation and its
  data minus the prospect's contact details (they are not needed for reports);
- ``lead_facts``: the per-lead projection the funnel is computed from (``facts.LeadFacts`` as JSON), with
  the cohort time and the test flag as columns to filter on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Index, MetaData, String, Table, Text, func, select)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadbridge_events.db import add_backbone_tables
from leadbridge_events.envelope import Envelope

from .facts import LeadFacts

SCHEMA = "insights"

metadata = MetaData(schema=SCHEMA)
add_backbone_tables(metadata)

timeline = Table(
    "timeline", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("lead_id", String(200), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("source", String(100), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("correlation_id", String(64)),
    Column("causation_id", String(64)),
    Column("explanation", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index(f"ix_{SCHEMA}_timeline_lead", timeline.c.lead_id, timeline.c.occurred_at, timeline.c.seq)

lead_facts = Table(
    "lead_facts", metadata,
    Column("lead_id", String(200), primary_key=True),
    Column("cohort_at", DateTime(timezone=True), nullable=False),
    Column("is_test", Boolean, nullable=False, default=False),
    Column("facts", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()),
)
Index(f"ix_{SCHEMA}_lead_facts_cohort", lead_facts.c.cohort_at)


def _without_contact(data: dict[str, Any]) -> dict[str, Any]:
    profile = data.get("profile")
    if isinstance(profile, dict):
        data["profile"] = {k: v for k, v in profile.items() if k != "contact"}
    return data


async def append_to_timeline(session: AsyncSession, event: Envelope[Any], explanation: str) -> bool:
    """Store one timeline entry; False when this event id is there already."""
    result = await session.execute(insert(timeline).values(
        event_id=event.id, lead_id=event.lead_id, event_type=event.type, source=event.source,
        occurred_at=event.time, correlation_id=event.correlation_id, causation_id=event.causation_id,
        explanation=explanation, data=_without_contact(event.data.model_dump(mode="json")),
    ).on_conflict_do_nothing(index_elements=[timeline.c.event_id]))
    return bool(result.rowcount)


async def append_many_to_timeline(session: AsyncSession, entries: list[tuple[Envelope[Any], str]]) -> set[str]:
    """``append_to_timeline`` for many events in one statement: the ids of those not there already."""
    if not entries:
        return set()
    rows = [dict(event_id=e.id, lead_id=e.lead_id, event_type=e.type, source=e.source, occurred_at=e.time,
                 correlation_id=e.correlation_id, causation_id=e.causation_id, explanation=explanation,
                 data=_without_contact(e.data.model_dump(mode="json"))) for e, explanation in entries]
    stmt = insert(timeline).on_conflict_do_nothing(index_elements=[timeline.c.event_id]).returning(timeline.c.event_id)
    return set((await session.execute(stmt, rows)).scalars())


async def load_many_facts_for_update(session: AsyncSession, lead_ids: list[str]) -> dict[str, LeadFacts]:
    """Many leads' facts, locked in lead id order (a fixed order: concurrent replicas cannot deadlock)."""
    ordered = sorted(set(lead_ids))
    rows = (await session.execute(
        select(lead_facts.c.lead_id, lead_facts.c.facts).where(lead_facts.c.lead_id.in_(ordered))
        .order_by(lead_facts.c.lead_id).with_for_update()
    )).all()
    found = {r.lead_id: LeadFacts.from_json(r.facts) for r in rows}
    return {lead_id: found.get(lead_id) or LeadFacts(lead_id=lead_id) for lead_id in ordered}


async def save_many_facts(session: AsyncSession, many: list[LeadFacts]) -> None:
    if not many:
        return
    stmt = insert(lead_facts)
    await session.execute(stmt.on_conflict_do_update(index_elements=[lead_facts.c.lead_id], set_={
        "cohort_at": stmt.excluded.cohort_at, "is_test": stmt.excluded.is_test, "facts": stmt.excluded.facts,
        "updated_at": func.now()}), [
        {"lead_id": f.lead_id, "cohort_at": f.captured_at or f.first_seen_at, "is_test": f.is_test,
         "facts": f.to_json()} for f in many])


async def load_facts_for_update(session: AsyncSession, lead_id: str) -> LeadFacts:
    """The lead's facts, locked for this transaction (replicas may project the same lead concurrently)."""
    row = (await session.execute(
        select(lead_facts.c.facts).where(lead_facts.c.lead_id == lead_id).with_for_update()
    )).first()
    return LeadFacts.from_json(row.facts) if row else LeadFacts(lead_id=lead_id)


async def save_facts(session: AsyncSession, facts: LeadFacts) -> None:
    cohort_at = facts.captured_at or facts.first_seen_at
    values = {"cohort_at": cohort_at, "is_test": facts.is_test, "facts": facts.to_json()}
    await session.execute(insert(lead_facts).values(lead_id=facts.lead_id, **values).on_conflict_do_update(
        index_elements=[lead_facts.c.lead_id], set_={**values, "updated_at": func.now()}))


async def timeline_of(conn: AsyncConnection, lead_id: str) -> list[dict[str, Any]]:
    rows = (await conn.execute(
        select(timeline).where(timeline.c.lead_id == lead_id).order_by(timeline.c.occurred_at, timeline.c.seq)
    )).all()
    return [{
        "event_id": r.event_id, "type": r.event_type, "time": r.occurred_at.isoformat(), "source": r.source,
        "explanation": r.explanation, "caused_by": r.causation_id, "correlation_id": r.correlation_id,
    } for r in rows]


async def facts_in_window(conn: AsyncConnection, since: datetime | None, until: datetime | None) -> list[LeadFacts]:
    query = select(lead_facts.c.facts).where(lead_facts.c.is_test.is_(False))
    if since is not None:
        query = query.where(lead_facts.c.cohort_at >= since)
    if until is not None:
        query = query.where(lead_facts.c.cohort_at < until)
    return [LeadFacts.from_json(r.facts) for r in (await conn.execute(query)).all()]
