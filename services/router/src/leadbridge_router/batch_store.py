"""The multi-row statements of the router's batch path (``batch_routing``), as constant SQL over arrays.

Each statement's text is the same whatever the batch holds (the rows travel as one array per column,
``unnest``-ed by PostgreSQL), so it is compiled and prepared once per connection instead of once per batch:
a multi-row ``VALUES`` list built with SQLAlchemy costs more CPU to compile than the whole routing decision
of its rows. Adapter: no routing decisions here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from . import db

# The lead row's columns but lead_id, as ``assigner.plan`` fills them (every outcome the same keys).
LEAD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "text"), ("attempt", "int"), ("rule", "text"), ("pool", "text"), ("assignee", "text"),
    ("previous_assignees", "jsonb"), ("facts", "jsonb"), ("event", "jsonb"), ("reason", "text"),
    ("hold_until", "timestamptz"), ("closed_outcome", "text"), ("closed_at", "timestamptz"),
    ("waiting_since", "timestamptz"), ("waiting_pool", "text"), ("updated_at", "timestamptz"),
)
_ARRAY = {"text": "text[]", "int": "int[]", "jsonb": "text[]", "timestamptz": "timestamptz[]"}
_ASSIGNMENT_COLUMNS = ("lead_id", "rep_id", "pool", "rule", "outcome", "attempt", "assigned_at")


def _unnest(prefix: str, columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"CAST(:{prefix}_{name} AS {_ARRAY[kind]})" for name, kind in columns)


def _select_leads() -> str:
    cols = ", ".join(f"CAST(l.{n} AS jsonb)" if k == "jsonb" else f"l.{n}" for n, k in LEAD_COLUMNS)
    names = ", ".join(n for n, _ in LEAD_COLUMNS)
    return (f"SELECT l.lead_id, {cols} FROM unnest(CAST(:l_lead_id AS text[]), {_unnest('l', LEAD_COLUMNS)}) "
            f"WITH ORDINALITY AS l(lead_id, {names}, ord) ORDER BY l.ord")


_WRITE_ROUTINGS = text(f"""
WITH pools AS (
    UPDATE {db.pool_state.fullname} AS p SET vtime = v.vtime
    FROM unnest(CAST(:p_pool AS text[]), CAST(:p_vtime AS float8[])) AS v(pool, vtime)
    WHERE p.pool = v.pool
), counters AS (
    INSERT INTO {db.rep_counters.fullname} (pool, rep_id, "pass", assigned, last_assigned_at)
    SELECT * FROM unnest(CAST(:c_pool AS text[]), CAST(:c_rep_id AS text[]), CAST(:c_pass AS float8[]),
                         CAST(:c_assigned AS int[]), CAST(:c_last_assigned_at AS timestamptz[]))
    ON CONFLICT (pool, rep_id) DO UPDATE SET "pass" = excluded."pass", assigned = excluded.assigned,
        last_assigned_at = excluded.last_assigned_at
), assigned AS (
    INSERT INTO {db.assignments.fullname} ({", ".join(_ASSIGNMENT_COLUMNS)})
    SELECT {", ".join(f"a.{c}" for c in _ASSIGNMENT_COLUMNS)}
    FROM unnest(CAST(:a_lead_id AS text[]), CAST(:a_rep_id AS text[]), CAST(:a_pool AS text[]),
                CAST(:a_rule AS text[]), CAST(:a_outcome AS text[]), CAST(:a_attempt AS int[]),
                CAST(:a_assigned_at AS timestamptz[]))
        WITH ORDINALITY AS a({", ".join(_ASSIGNMENT_COLUMNS)}, ord)
    ORDER BY a.ord
)
INSERT INTO {db.leads.fullname} (lead_id, {", ".join(n for n, _ in LEAD_COLUMNS)})
{_select_leads()}
ON CONFLICT (lead_id) DO UPDATE SET {", ".join(f"{n} = excluded.{n}" for n, _ in LEAD_COLUMNS)}
""")


class JsonText(str):
    """A ``jsonb`` value already serialized (e.g. by pydantic's ``model_dump_json``): stored as it is."""


def _json(value: Any) -> str:
    return value if isinstance(value, JsonText) else json.dumps(value)


async def write_routings(session: AsyncSession, vtimes: dict[str, float], counters: list[dict[str, Any]],
                         assignments: list[dict[str, Any]], leads: list[dict[str, Any]]) -> None:
    """One round trip: the pools' new virtual times, the reps' counters (upserted), the new assignments (in
    order) and the lead rows (upserted; one row per lead). A ``jsonb`` value may be given as ``JsonText``."""
    params: dict[str, Any] = {"p_pool": list(vtimes), "p_vtime": list(vtimes.values())}
    for name in ("pool", "rep_id", "pass", "assigned", "last_assigned_at"):
        params[f"c_{name}"] = [c[name] for c in counters]
    for name in _ASSIGNMENT_COLUMNS:
        params[f"a_{name}"] = [a[name] for a in assignments]
    params["l_lead_id"] = [lead["lead_id"] for lead in leads]
    for name, kind in LEAD_COLUMNS:
        values = [lead[name] for lead in leads]
        params[f"l_{name}"] = [_json(v) for v in values] if kind == "jsonb" else values
    await session.execute(_WRITE_ROUTINGS, params)
