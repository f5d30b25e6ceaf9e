"""The multi-row statements of the router's batch path (``batch_routing``), as constant SQL over arrays.

Each statement's text is the same whatever the batch holds (the rows travel as one array per column,
``unnest``-ed by PostgreSQL), so it is compiled and prepared once per connection instead of once per batch:
a multi-row ``VALUES`` list built with SQLAlchemy costs more CPU to compile than the whole routing decision
of its rows. They run on the driver itself (``db.driver_connection``): SQLAlchemy's per-execution work
(cache keys, parameter and result processing) cost more than PostgreSQL's. A batch takes four of them:

- ``lock_and_read_leads``: the lead rows, locked in lead id order, and the roster's version;
- ``lock_pool_states``: the pools locked in name order, then their reps' counters (two statements);
- ``write_routings``: every write of the batch.

Adapter: no routing decisions here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from leadbridge_events.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from . import db
from .fairness import PoolState, RepCounter

# The lead row's columns but lead_id, as ``assigner.plan`` fills them (every outcome the same keys).
LEAD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "text"), ("attempt", "int"), ("rule", "text"), ("pool", "text"), ("assignee", "text"),
    ("previous_assignees", "jsonb"), ("facts", "jsonb"), ("event", "jsonb"), ("reason", "text"),
    ("hold_until", "timestamptz"), ("closed_outcome", "text"), ("closed_at", "timestamptz"),
    ("waiting_since", "timestamptz"), ("waiting_pool", "text"), ("updated_at", "timestamptz"),
)
_ARRAY = {"text": "text[]", "int": "int[]", "jsonb": "text[]", "timestamptz": "timestamptz[]", "float8": "float8[]"}
_ASSIGNMENT_TYPES = (("lead_id", "text"), ("rep_id", "text"), ("pool", "text"), ("rule", "text"),
                     ("outcome", "text"), ("attempt", "int"), ("assigned_at", "timestamptz"))
_ASSIGNMENT_COLUMNS = tuple(n for n, _ in _ASSIGNMENT_TYPES)
_COUNTER_COLUMNS = (("pool", "text"), ("rep_id", "text"), ("pass", "float8"), ("assigned", "int"),
                    ("last_assigned_at", "timestamptz"))


_PARAMS: list[str] = []  # the write's parameters in their order ($1, $2, ...): named as they are built


def _param(name: str) -> str:
    _PARAMS.append(name)
    return f"${len(_PARAMS)}"


def _unnest(prefix: str, columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"CAST({_param(f'{prefix}_{name}')} AS {_ARRAY[kind]})" for name, kind in columns)


def _select_leads() -> str:
    cols = ", ".join(f"CAST(l.{n} AS jsonb)" if k == "jsonb" else f"l.{n}" for n, k in LEAD_COLUMNS)
    names = ", ".join(n for n, _ in LEAD_COLUMNS)
    return (f"SELECT l.lead_id, {cols} FROM unnest(CAST({_param('l_lead_id')} AS text[]), {_unnest('l', LEAD_COLUMNS)}) "
            f"WITH ORDINALITY AS l(lead_id, {names}, ord) ORDER BY l.ord")


_WRITE_ROUTINGS = f"""
WITH pools AS (
    UPDATE {db.pool_state.fullname} AS p SET vtime = v.vtime
    FROM unnest({_unnest("p", (("pool", "text"), ("vtime", "float8")))}) AS v(pool, vtime)
    WHERE p.pool = v.pool
), counters AS (
    INSERT INTO {db.rep_counters.fullname} (pool, rep_id, "pass", assigned, last_assigned_at)
    SELECT * FROM unnest({_unnest("c", _COUNTER_COLUMNS)})
    ON CONFLICT (pool, rep_id) DO UPDATE SET "pass" = excluded."pass", assigned = excluded.assigned,
        last_assigned_at = excluded.last_assigned_at
), assigned AS (
    INSERT INTO {db.assignments.fullname} ({", ".join(_ASSIGNMENT_COLUMNS)})
    SELECT {", ".join(f"a.{c}" for c in _ASSIGNMENT_COLUMNS)}
    FROM unnest({_unnest("a", _ASSIGNMENT_TYPES)}) WITH ORDINALITY AS a({", ".join(_ASSIGNMENT_COLUMNS)}, ord)
    ORDER BY a.ord
)
INSERT INTO {db.leads.fullname} (lead_id, {", ".join(n for n, _ in LEAD_COLUMNS)})
{_select_leads()}
ON CONFLICT (lead_id) DO UPDATE SET {", ".join(f"{n} = excluded.{n}" for n, _ in LEAD_COLUMNS)}
"""
_WRITE_PARAMS = tuple(_PARAMS)


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
    await (await driver_connection(session)).execute(_WRITE_ROUTINGS, *(params[name] for name in _WRITE_PARAMS))


_LEAD_ROW = ", ".join(c.name for c in db.leads.columns)
_LOCK_LEADS = f"""
WITH locked AS (
    SELECT {_LEAD_ROW} FROM {db.leads.fullname} WHERE lead_id = ANY($1::text[]) ORDER BY lead_id FOR UPDATE
)
SELECT v.version, locked.* FROM (SELECT (SELECT version FROM {db.roster_version.fullname} WHERE id = 1) AS version) AS v
LEFT JOIN locked ON true
"""


async def lock_and_read_leads(session: AsyncSession, lead_ids: list[str]) -> tuple[str | None, dict[str, Any]]:
    """The roster's version (None: no roster stored yet), and the batch's lead rows (those that exist, as
    namespaces of their columns), locked in lead id order: one statement."""
    rows = await (await driver_connection(session)).fetch(_LOCK_LEADS, sorted(set(lead_ids)))
    version = rows[0][0] if rows else None
    leads: dict[str, Any] = {}
    for r in rows:
        if r[1] is not None:
            lead = dict(r.items())
            del lead["version"]
            leads[r[1]] = SimpleNamespace(**lead)
    return version, leads


_LOCK_POOLS = (f"SELECT pool, vtime FROM {db.pool_state.fullname} WHERE pool = ANY($1::text[]) ORDER BY pool "
               "FOR UPDATE")
# A statement of its own, after the lock: in READ COMMITTED a statement reads the rows committed when it
# started, and the one that took the locks may have waited for a transaction that changed the counters.
_COUNTERS = (f'SELECT pool, rep_id, "pass", assigned, last_assigned_at FROM {db.rep_counters.fullname} '
             "WHERE pool = ANY($1::text[])")


async def lock_pool_states(session: AsyncSession, pools: list[str]) -> dict[str, PoolState] | None:
    """``store.lock_pools`` then ``store.load_pool_states``: the pools row-locked in name order, then their
    reps' counters read (two statements: see ``_COUNTERS``). None when a pool has no row yet
    (``store.lock_pools`` creates it)."""
    wanted = sorted(set(pools))
    if not wanted:
        return {}
    conn = await driver_connection(session)
    vtimes: dict[str, float] = {pool: vtime for pool, vtime in await conn.fetch(_LOCK_POOLS, wanted)}
    if len(vtimes) < len(wanted):
        return None
    counters: dict[str, dict[str, RepCounter]] = {p: {} for p in wanted}
    for pool, rep_id, pass_, assigned, last in await conn.fetch(_COUNTERS, wanted):
        counters[pool][rep_id] = RepCounter(pass_, assigned, last)
    return {p: PoolState(vtime=vtimes[p], counters=counters[p]) for p in wanted}
