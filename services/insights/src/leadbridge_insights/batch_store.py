"""Insights' statements for a batch of events (``handlers.project_many``): three per batch, whatever its size,
constant SQL run on the driver itself (``db.driver_connection``: SQLAlchemy's per-execution work cost more
than PostgreSQL's). An adapter: no rules here.

Each takes its rows as one array per column (``INSERT ... SELECT ... FROM unnest(...)``): one statement,
one round trip and one query plan for any number of rows, and no SQL compiled per row. The rows are what
``store``'s one-event functions write (a test holds the two paths equal):

- ``append_timeline``: the timeline entries, in the batch's order (``seq``), skipping event ids already there;
- ``load_for_update``: the leads' facts and contact, their ``lead_facts`` rows locked in lead id order;
- ``save``: each lead's facts, its ``lead_views`` row and its search text (``lead_search``, rewritten only
  when the text changed), one row per lead (its state after the batch), and the batch's breach and overflow
  rows: one statement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_events.db import driver_connection
from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from .facts import LeadFacts
from .lead_row import row_of, search_text
from .store import CONTACT, lead_facts, lead_search, lead_views, pool_overflows, sla_breaches, timeline

Contact = dict[str, str | None]
_PG = postgresql.dialect()
_NO_CONTACT = {"profile": {"contact"}}  # the timeline keeps no prospect contact details


def _array_type(column: Column[Any]) -> str:
    """The PostgreSQL array type of a column's values; JSONB travels as text (cast per element)."""
    if isinstance(column.type, postgresql.JSONB):
        return "text[]"
    return f"{column.type.compile(dialect=_PG)}[]"


def _unnest_insert(table: Table, columns: Sequence[str], conflict: str, *, returning: str = "",
                   first: int = 1) -> str:
    """``INSERT INTO table (columns) SELECT * FROM unnest($first, ...)`` in the arrays' order, + ``conflict``:
    parameter ``$first + i`` is the array of ``columns[i]``."""
    arrays = ", ".join(f"${first + i}::{_array_type(table.c[c])}" for i, c in enumerate(columns))
    values = ", ".join(f"CAST(x.{c} AS jsonb)" if isinstance(table.c[c].type, postgresql.JSONB) else f"x.{c}"
                       for c in columns)
    return (f"INSERT INTO {table.fullname} ({', '.join(columns)}) "
            f"SELECT {values} FROM unnest({arrays}) WITH ORDINALITY AS x({', '.join(columns)}, n) ORDER BY n "
            f"{conflict}{' RETURNING ' + returning if returning else ''}")


def _columns(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[list[Any]]:
    return [[r[c] for r in rows] for c in columns]


_TIMELINE = ("event_id", "lead_id", "event_type", "source", "occurred_at", "correlation_id", "causation_id",
             "explanation", "data")
_APPEND = _unnest_insert(timeline, _TIMELINE, "ON CONFLICT (event_id) DO NOTHING", returning="event_id")
assert _TIMELINE[-1] == "data" and len(_TIMELINE) == 9  # ``append_timeline`` builds its arrays in this order


async def append_timeline(session: AsyncSession, entries: list[tuple[Envelope[Any], str]]) -> set[str]:
    """``store.append_to_timeline`` for many events in one statement: the ids of those not there already."""
    if not entries:
        return set()
    events = [e for e, _ in entries]
    arrays = [[e.id for e in events], [e.lead_id for e in events], [e.type for e in events],
              [e.source for e in events], [e.time for e in events], [e.correlation_id for e in events],
              [e.causation_id for e in events], [explanation for _, explanation in entries],
              [e.data.model_dump_json(exclude=_NO_CONTACT) for e in events]]
    rows = await (await driver_connection(session)).fetch(_APPEND, *arrays)
    return {r[0] for r in rows}


_LOAD = (f"SELECT f.lead_id, f.facts, {', '.join(f'v.{k}' for k in CONTACT)} FROM {lead_facts.fullname} AS f "
         f"LEFT JOIN {lead_views.fullname} AS v ON v.lead_id = f.lead_id "
         "WHERE f.lead_id = ANY($1::text[]) ORDER BY f.lead_id FOR UPDATE OF f")


async def load_for_update(session: AsyncSession, lead_ids: list[str]) -> dict[str, tuple[LeadFacts, Contact]]:
    """Each lead's facts and contact (as ``store.load_facts_for_update``), the ``lead_facts`` rows locked in
    lead id order (a fixed order: concurrent replicas cannot deadlock); a lead not seen yet starts empty."""
    ordered = sorted(set(lead_ids))
    rows = await (await driver_connection(session)).fetch(_LOAD, ordered)
    found = {r[0]: (LeadFacts.from_json(r[1]), dict(zip(CONTACT, r[2:], strict=True))) for r in rows}
    return {lead: found.get(lead) or (LeadFacts(lead_id=lead), dict.fromkeys(CONTACT)) for lead in ordered}


_FACTS = ("lead_id", "cohort_at", "is_test", "facts")
_VIEW = tuple(c.name for c in lead_views.columns)
_BREACH = tuple(c.name for c in sla_breaches.columns)
_OVERFLOW = tuple(c.name for c in pool_overflows.columns)
_SEARCH = ("lead_id", "search")
_SAVE = f"""
WITH facts AS (
    {_unnest_insert(lead_facts, _FACTS, "ON CONFLICT (lead_id) DO UPDATE SET cohort_at = EXCLUDED.cohort_at, "
                    "is_test = EXCLUDED.is_test, facts = EXCLUDED.facts, updated_at = now()")}
), breaches AS (
    {_unnest_insert(sla_breaches, _BREACH, "ON CONFLICT DO NOTHING", first=len(_FACTS) + 1)}
), overflows AS (
    {_unnest_insert(pool_overflows, _OVERFLOW, "ON CONFLICT DO NOTHING", first=len(_FACTS) + len(_BREACH) + 1)}
), search AS (
    {_unnest_insert(lead_search, _SEARCH, "ON CONFLICT (lead_id) DO UPDATE SET search = EXCLUDED.search "
                    f"WHERE {lead_search.fullname}.search IS DISTINCT FROM EXCLUDED.search",
                    first=len(_FACTS) + len(_BREACH) + len(_OVERFLOW) + 1)}
)
{_unnest_insert(lead_views, _VIEW, "ON CONFLICT (lead_id) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in _VIEW if c != "lead_id"),
                first=len(_FACTS) + len(_BREACH) + len(_OVERFLOW) + len(_SEARCH) + 1)}
"""


def view_row(facts: LeadFacts, contact: Contact) -> dict[str, Any]:
    """The lead's ``lead_views`` row: the flat row of its facts and its contact."""
    return {"lead_id": facts.lead_id, "cohort_at": facts.captured_at or facts.first_seen_at,
            "is_test": facts.is_test, **row_of(facts), **contact}


Breach = tuple[str, str, Any]  # event id, lead id, the sla-breached data
Overflow = tuple[str, str, list[str], str, datetime]  # event id, lead id, pools, outcome, time


async def save(session: AsyncSession, leads: list[tuple[LeadFacts, Contact]], breaches: list[Breach] | None = None,
               overflows: list[Overflow] | None = None) -> None:
    """``store.save_facts`` for many leads (one each), in lead id order, with ``store.record_breach`` and
    ``store.record_overflows`` for the batch's breaches and overflows: one statement."""
    breaches, overflows = breaches or [], overflows or []
    if not leads and not breaches and not overflows:
        return
    leads = sorted(leads, key=lambda lead: lead[0].lead_id)
    facts = [f for f, _ in leads]
    ids = [f.lead_id for f in facts]
    arrays: list[list[Any]] = [ids, [f.captured_at or f.first_seen_at for f in facts],
                               [f.is_test for f in facts], [json.dumps(f.to_json()) for f in facts]]
    arrays += _columns([{"event_id": event_id, "lead_id": lead_id, "assignee_id": d.assignee_id, "team": d.team,
                         "kind": d.kind.value, "fired_at": d.fired_at} for event_id, lead_id, d in breaches], _BREACH)
    arrays += _columns([{"event_id": event_id, "pool": pool, "lead_id": lead_id, "outcome": outcome, "occurred_at": at}
                        for event_id, lead_id, pools, outcome, at in overflows for pool in dict.fromkeys(pools)],
                       _OVERFLOW)
    arrays += [ids, [search_text(f, contact) for f, contact in leads]]
    arrays += _columns([view_row(f, contact) for f, contact in leads], _VIEW)
    await (await driver_connection(session)).execute(_SAVE, *arrays)
