"""Insights' own tables (PostgreSQL schema ``insights``) and the queries on them. An adapter: no rules here.

- ``timeline``: append-only, one row per event of a lead (event id unique), with its explanation and its
  data minus the prospect's contact details (they are not needed for reports);
- ``lead_facts``: the per-lead projection the funnel is computed from (``facts.LeadFacts`` as JSON), with
  the cohort time and the test flag as columns to filter on;
- ``lead_views``: the same lead as the flat row of ``lead_row.row_of``, which the managers' views filter
  and aggregate in SQL, and the lead's name, email and company (nowhere else);
- ``lead_search``: the text the lead search matches (``lead_row.search_text``), under a trigram index, in a
  table of its own: ``lead_views`` is rewritten several times per lead, mostly not as HOT updates (its ten
  indexes), and each new row version put every trigram of the text into the index again; here the row is
  written only when the text changes (at capture, when the owner or the contact changes);
- ``sla_breaches`` and ``pool_overflows``: one row per breach / per pool a routing overflowed from, for
  the per-rep and per-pool counts of a week;
- ``roster``: the latest roster the router announced (``roster-changed``), for the rep-load view.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_events.db import ROOM_FOR_UPDATES, add_backbone_tables
from leadbridge_events.migrations import Migrations
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from .facts import LeadFacts
from .lead_row import row_of, search_text

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
    postgresql_with=ROOM_FOR_UPDATES,  # updated in place: HOT updates
)
Index(f"ix_{SCHEMA}_lead_facts_cohort", lead_facts.c.cohort_at)

# narrow on purpose (no JSON): the views scan it, so every byte per row costs at 100,000 leads
lead_views = Table(
    "lead_views", metadata,
    Column("lead_id", String(200), primary_key=True),
    Column("cohort_at", DateTime(timezone=True), nullable=False),
    Column("is_test", Boolean, nullable=False),
    *(Column(name, String(200)) for name in ("channel", "campaign", "source", "team", "rep", "waiting_pool",
                                             "alert_owner")),
    Column("status", String(20)), Column("alert_state", String(20)), Column("alert_kind", String(20)),
    *(Column(name, DateTime(timezone=True)) for name in ("mql_at", "routed_at", "assigned_at", "first_touch_at",
                                                         "waiting_since", "alert_due_at")),
    Column("touch_secs", Float), Column("route_secs", Float), Column("won_amount", Float),
    Column("touch_bucket", SmallInteger, doc="speed.BUCKETS index of touch_secs"),
    Column("route_bucket", SmallInteger, doc="speed.BUCKETS index of route_secs"),
    *(Column(name, Boolean) for name in ("mql", "nurtured", "sla_at_risk")), Column("touches", Integer),
    *(Column(name, Boolean) for name in ("routed", "within_sla", "breached", "accepted", "rejected", "qualified",
                                         "won", "lost", "is_open", "unowned")),
    # free text from CRMs and forms: TEXT, so no value the contracts accept can fail the projection
    *(Column(name, Text) for name in ("rep_name", "rejected_reason", "lost_reason", "name", "email", "company")),
)
Index(f"ix_{SCHEMA}_lead_views_cohort", lead_views.c.cohort_at)
Index(f"ix_{SCHEMA}_lead_views_open", lead_views.c.rep, postgresql_where=text("is_open"))
Index(f"ix_{SCHEMA}_lead_views_assigned", lead_views.c.assigned_at)
Index(f"ix_{SCHEMA}_lead_views_unowned", lead_views.c.cohort_at, postgresql_where=text("unowned"))
Index(f"ix_{SCHEMA}_lead_views_waiting", lead_views.c.waiting_pool, postgresql_where=text("waiting_pool IS NOT NULL"))
Index(f"ix_{SCHEMA}_lead_views_alert", lead_views.c.alert_due_at, postgresql_where=text("alert_state IS NOT NULL"))
# the speed view's percentiles: index-only scans of a duration in value order, whatever the filters
FILTERED_BY = ["is_test", "cohort_at", "channel", "campaign", "source", "team", "rep"]
for _duration in ("touch_secs", "route_secs"):
    Index(f"ix_{SCHEMA}_lead_views_{_duration}", lead_views.c[_duration], postgresql_include=FILTERED_BY,
          postgresql_where=text(f"{_duration} IS NOT NULL"))
# the closed-loop funnel's reasons: an index-only scan of the rejected and lost leads
Index(f"ix_{SCHEMA}_lead_views_closed", lead_views.c.rejected_reason, lead_views.c.lost_reason,
      postgresql_include=FILTERED_BY, postgresql_where=text("rejected IS true OR lost IS true"))

lead_search = Table(
    "lead_search", metadata,
    Column("lead_id", String(200), primary_key=True),
    Column("search", Text, nullable=False,
           doc="lower-cased id, name, email, company and owner: what the lead search matches"),
)
Index(f"ix_{SCHEMA}_lead_search_search", lead_search.c.search, postgresql_using="gin",
      postgresql_ops={"search": "gin_trgm_ops"})

sla_breaches = Table(
    "sla_breaches", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("lead_id", String(200), nullable=False),
    Column("assignee_id", String(200)),
    Column("team", String(200)),
    Column("kind", String(20), nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False),
)
Index(f"ix_{SCHEMA}_sla_breaches_fired", sla_breaches.c.fired_at)

pool_overflows = Table(
    "pool_overflows", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("pool", String(200), primary_key=True),
    Column("lead_id", String(200), nullable=False),
    Column("outcome", String(40), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)
Index(f"ix_{SCHEMA}_pool_overflows_at", pool_overflows.c.occurred_at)

roster = Table(
    "roster", metadata,
    Column("id", Integer, primary_key=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("data", JSONB, nullable=False),
)


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


CONTACT = ("name", "email", "company")


async def load_facts_for_update(session: AsyncSession, lead_id: str) -> tuple[LeadFacts, dict[str, str | None]]:
    """The lead's facts and contact, locked for this transaction (replicas may project one lead concurrently)."""
    row = (await session.execute(
        select(lead_facts.c.facts, *(lead_views.c[k] for k in CONTACT))
        .select_from(lead_facts.outerjoin(lead_views, lead_views.c.lead_id == lead_facts.c.lead_id))
        .where(lead_facts.c.lead_id == lead_id).with_for_update(of=lead_facts)
    )).first()
    if row is None:
        return LeadFacts(lead_id=lead_id), dict.fromkeys(CONTACT)
    return LeadFacts.from_json(row.facts), {k: row._mapping[k] for k in CONTACT}


async def save_facts(session: AsyncSession, facts: LeadFacts, contact: dict[str, str | None] | None = None) -> None:
    """Write the facts, their flat row, and the contact (name, email, company) the search matches."""
    contact = contact or dict.fromkeys(CONTACT)
    base = {"cohort_at": facts.captured_at or facts.first_seen_at, "is_test": facts.is_test}
    values = {**base, "facts": facts.to_json()}
    await session.execute(insert(lead_facts).values(lead_id=facts.lead_id, **values).on_conflict_do_update(
        index_elements=[lead_facts.c.lead_id], set_={**values, "updated_at": func.now()}))
    view = {**base, **row_of(facts), **contact}
    await session.execute(insert(lead_views).values(lead_id=facts.lead_id, **view).on_conflict_do_update(
        index_elements=[lead_views.c.lead_id], set_=view))
    search = insert(lead_search).values(lead_id=facts.lead_id, search=search_text(facts, contact))
    await session.execute(search.on_conflict_do_update(  # an unchanged text writes no row version
        index_elements=[lead_search.c.lead_id], set_={"search": search.excluded.search},
        where=lead_search.c.search.is_distinct_from(search.excluded.search)))


async def record_breach(session: AsyncSession, event_id: str, lead_id: str, data: Any) -> None:
    await session.execute(insert(sla_breaches).values(
        event_id=event_id, lead_id=lead_id, assignee_id=data.assignee_id, team=data.team, kind=data.kind.value,
        fired_at=data.fired_at).on_conflict_do_nothing())


async def record_overflows(session: AsyncSession, event_id: str, lead_id: str, pools: list[str], outcome: str,
                           at: datetime) -> None:
    if pools:
        await session.execute(insert(pool_overflows).values([
            {"event_id": event_id, "pool": p, "lead_id": lead_id, "outcome": outcome, "occurred_at": at}
            for p in dict.fromkeys(pools)]).on_conflict_do_nothing())


async def save_roster(session: AsyncSession, changed_at: datetime, data: dict[str, Any]) -> None:
    """Keep the latest roster by its change time (announcements may arrive out of order)."""
    stmt = insert(roster).values(id=1, changed_at=changed_at, data=data)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[roster.c.id], set_={"changed_at": changed_at, "data": data},
        where=roster.c.changed_at <= changed_at))


async def gather_on_one_snapshot(engine: AsyncEngine, *queries: tuple[Any, ...]) -> list[Any]:
    """Run ``(query, *args)`` tuples (``await query(conn, *args)``) concurrently, each on a pooled connection
    of its own, all on the first one's snapshot (exported, as parallel pg_dump does): the numbers of one view
    are of one moment even while events are being projected. PostgreSQL runs no ordered-set aggregate in
    parallel workers; this spreads a view's queries over the cores."""
    async with engine.connect() as first:
        await first.execution_options(isolation_level="REPEATABLE READ")
        snapshot = (await first.execute(text("SELECT pg_export_snapshot()"))).scalar_one()

        async def on_the_snapshot(query: Any, *args: Any) -> Any:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="REPEATABLE READ")
                await conn.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))  # an id the server made
                return await query(conn, *args)

        (query, *args), *rest = queries
        return list(await asyncio.gather(query(first, *args), *(on_the_snapshot(*q) for q in rest)))


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

# registered in pyproject.toml (entry point group "leadbridge.migrations"); the runtime migrates with it too
MIGRATIONS = Migrations(metadata, "leadbridge_insights")
