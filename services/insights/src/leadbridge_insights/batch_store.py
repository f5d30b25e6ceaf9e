"""Insights' statements for a batch of events (``handlers.project_many``): one statement per table, whatever
the batch's size. An adapter: no rules here.

Each takes its rows as one array per column (``INSERT ... SELECT ... FROM unnest(...)``): one statement,
one round trip and one query plan for any number of rows, and no SQL compiled per row. The rows are what
``store``'s one-event functions write (a test holds the two paths equal):

- ``append_timeline``: the timeline entries, in the batch's order (``seq``), skipping event ids already there;
- ``load_for_update``: the leads' facts and contact, their ``lead_facts`` rows locked in lead id order;
- ``save``: each lead's facts and its ``lead_views`` row, one row per lead (its state after the batch);
- ``record_breaches`` / ``record_overflows``: the breach and overflow rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from sqlalchemy import Column, Table, TextClause, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from .facts import LeadFacts
from .lead_row import row_of
from .store import CONTACT, lead_facts, lead_views, pool_overflows, sla_breaches, timeline

Contact = dict[str, str | None]
_PG = postgresql.dialect()
_NO_CONTACT = {"profile": {"contact"}}  # the timeline keeps no prospect contact details


def _array_type(column: Column[Any]) -> str:
    """The PostgreSQL array type of a column's values; JSONB travels as text (cast per element)."""
    if isinstance(column.type, postgresql.JSONB):
        return "text[]"
    return f"{column.type.compile(dialect=_PG)}[]"


def _unnest_insert(table: Table, columns: Sequence[str], conflict: str, *, returning: str = "") -> TextClause:
    """``INSERT INTO table (columns) SELECT * FROM unnest(:column, ...)`` in the arrays' order, + ``conflict``."""
    arrays = ", ".join(f"CAST(:{c} AS {_array_type(table.c[c])})" for c in columns)
    values = ", ".join(f"CAST(x.{c} AS jsonb)" if isinstance(table.c[c].type, postgresql.JSONB) else f"x.{c}"
                       for c in columns)
    return text(f"INSERT INTO {table.fullname} ({', '.join(columns)}) "
                f"SELECT {values} FROM unnest({arrays}) WITH ORDINALITY AS x({', '.join(columns)}, n) ORDER BY n "
                f"{conflict}{' RETURNING ' + returning if returning else ''}")


def _columns(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, list[Any]]:
    return {c: [r[c] for r in rows] for c in columns}


_TIMELINE = ("event_id", "lead_id", "event_type", "source", "occurred_at", "correlation_id", "causation_id",
             "explanation", "data")
_APPEND = _unnest_insert(timeline, _TIMELINE, "ON CONFLICT (event_id) DO NOTHING", returning="event_id")


async def append_timeline(session: AsyncSession, entries: list[tuple[Envelope[Any], str]]) -> set[str]:
    """``store.append_to_timeline`` for many events in one statement: the ids of those not there already."""
    if not entries:
        return set()
    rows = [dict(event_id=e.id, lead_id=e.lead_id, event_type=e.type, source=e.source, occurred_at=e.time,
                 correlation_id=e.correlation_id, causation_id=e.causation_id, explanation=explanation,
                 data=e.data.model_dump_json(exclude=_NO_CONTACT)) for e, explanation in entries]
    return set((await session.execute(_APPEND, _columns(rows, _TIMELINE))).scalars())


async def load_for_update(session: AsyncSession, lead_ids: list[str]) -> dict[str, tuple[LeadFacts, Contact]]:
    """Each lead's facts and contact (as ``store.load_facts_for_update``), the ``lead_facts`` rows locked in
    lead id order (a fixed order: concurrent replicas cannot deadlock); a lead not seen yet starts empty."""
    ordered = sorted(set(lead_ids))
    rows = (await session.execute(
        select(lead_facts.c.lead_id, lead_facts.c.facts, *(lead_views.c[k] for k in CONTACT))
        .select_from(lead_facts.outerjoin(lead_views, lead_views.c.lead_id == lead_facts.c.lead_id))
        .where(lead_facts.c.lead_id.in_(ordered)).order_by(lead_facts.c.lead_id).with_for_update(of=lead_facts)
    )).all()
    found = {r.lead_id: (LeadFacts.from_json(r.facts), {k: r._mapping[k] for k in CONTACT}) for r in rows}
    return {lead: found.get(lead) or (LeadFacts(lead_id=lead), dict.fromkeys(CONTACT)) for lead in ordered}


_FACTS = ("lead_id", "cohort_at", "is_test", "facts")
_SAVE_FACTS = _unnest_insert(lead_facts, _FACTS, "ON CONFLICT (lead_id) DO UPDATE SET cohort_at = EXCLUDED.cohort_at, "
                             "is_test = EXCLUDED.is_test, facts = EXCLUDED.facts, updated_at = now()")
_VIEW = tuple(c.name for c in lead_views.columns)
_SAVE_VIEW = _unnest_insert(lead_views, _VIEW, "ON CONFLICT (lead_id) DO UPDATE SET "
                            + ", ".join(f"{c} = EXCLUDED.{c}" for c in _VIEW if c != "lead_id"))


def view_row(facts: LeadFacts, contact: Contact) -> dict[str, Any]:
    """The lead's ``lead_views`` row: the flat row of its facts, its contact, what the search matches."""
    owner = (facts.rep, facts.rep_name)
    search = " ".join(x for x in (facts.lead_id, *contact.values(), *owner) if x).lower()
    return {"lead_id": facts.lead_id, "cohort_at": facts.captured_at or facts.first_seen_at,
            "is_test": facts.is_test, **row_of(facts), **contact, "search": search}


async def save(session: AsyncSession, leads: list[tuple[LeadFacts, Contact]]) -> None:
    """``store.save_facts`` for many leads (one each) in two statements, in lead id order."""
    if not leads:
        return
    leads = sorted(leads, key=lambda lead: lead[0].lead_id)
    facts = [{"lead_id": f.lead_id, "cohort_at": f.captured_at or f.first_seen_at, "is_test": f.is_test,
              "facts": json.dumps(f.to_json())} for f, _ in leads]
    await session.execute(_SAVE_FACTS, _columns(facts, _FACTS))
    await session.execute(_SAVE_VIEW, _columns([view_row(f, contact) for f, contact in leads], _VIEW))


_BREACH = tuple(c.name for c in sla_breaches.columns)
_RECORD_BREACHES = _unnest_insert(sla_breaches, _BREACH, "ON CONFLICT DO NOTHING")
_OVERFLOW = tuple(c.name for c in pool_overflows.columns)
_RECORD_OVERFLOWS = _unnest_insert(pool_overflows, _OVERFLOW, "ON CONFLICT DO NOTHING")


async def record_breaches(session: AsyncSession, breaches: list[tuple[str, str, Any]]) -> None:
    """``store.record_breach`` for many (event id, lead id, sla-breached data) in one statement."""
    if breaches:
        rows = [{"event_id": event_id, "lead_id": lead_id, "assignee_id": d.assignee_id, "team": d.team,
                 "kind": d.kind.value, "fired_at": d.fired_at} for event_id, lead_id, d in breaches]
        await session.execute(_RECORD_BREACHES, _columns(rows, _BREACH))


async def record_overflows(session: AsyncSession, overflows: list[tuple[str, str, list[str], str, datetime]]) -> None:
    """``store.record_overflows`` for many (event id, lead id, pools, outcome, time) in one statement."""
    rows = [{"event_id": event_id, "pool": pool, "lead_id": lead_id, "outcome": outcome, "occurred_at": at}
            for event_id, lead_id, pools, outcome, at in overflows for pool in dict.fromkeys(pools)]
    if rows:
        await session.execute(_RECORD_OVERFLOWS, _columns(rows, _OVERFLOW))
