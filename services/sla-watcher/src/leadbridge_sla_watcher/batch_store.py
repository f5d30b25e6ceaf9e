"""The watcher's multi-row statements, as constant SQL run on the driver (``db.driver_connection``).

Each statement's text is the same whatever the batch holds (rows travel as one array per column,
``unnest``-ed by PostgreSQL), so it is parsed and planned once per connection, and no SQLAlchemy
statement is compiled or executed per batch: its per-execution work (cache keys, parameter processing,
result rows) cost more CPU than the watcher's own arithmetic. Adapter: no SLA decisions here.

- ``lock_leads``: the leads' rows created if missing and locked (lead id order), one statement;
- ``live_deadlines`` / ``lead_touches``: what the batch's events need, read (the deadlines locked) at once;
- ``add_touches``: the batch's new touches, one statement.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from leadbridge_contracts.events import FollowUpOutcome, TouchType
from leadbridge_events.db import driver_connection

from . import store
from .deadlines import LIVE, Deadline, Touch
from .tables import deadlines, leads, touches

_LIVE = [s.value for s in LIVE]

# existing rows locked in lead id order, the missing ones inserted (locked by that): one statement. A lead
# another transaction inserted after this statement's snapshot is in neither part: ``lock_leads`` locks it next.
LOCK_LEADS = f"""
WITH locked AS (
    SELECT lead_id, attempt FROM {leads.fullname} WHERE lead_id = ANY($1::text[]) ORDER BY lead_id FOR UPDATE
), created AS (
    INSERT INTO {leads.fullname} (lead_id, updated_at) SELECT id, $2::timestamptz FROM unnest($1::text[]) AS id
    ORDER BY id ON CONFLICT DO NOTHING RETURNING lead_id
)
SELECT lead_id, attempt FROM locked UNION ALL SELECT lead_id, NULL::int FROM created
"""
LOCK_EXISTING = (f"SELECT lead_id, attempt FROM {leads.fullname} WHERE lead_id = ANY($1::text[]) ORDER BY lead_id "
                 "FOR UPDATE")

LIVE_DEADLINES = (f"SELECT {', '.join(map(store.quoted, store.CLAIMED))} FROM {deadlines.fullname} "
                  "WHERE lead_id = ANY($1::text[]) AND status = ANY($2::text[]) ORDER BY lead_id, due_at FOR UPDATE")

LEAD_TOUCHES = (f"SELECT lead_id, follow_up_id, occurred_at, touch_type, outcome FROM {touches.fullname} "
                "WHERE lead_id = ANY($1::text[])")

ADD_TOUCHES = f"""
INSERT INTO {touches.fullname} (lead_id, follow_up_id, occurred_at, touch_type, outcome, logged_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::timestamptz[])
ON CONFLICT DO NOTHING RETURNING lead_id, follow_up_id
"""


async def lock_leads(session: Any, lead_ids: list[str], now: datetime) -> dict[str, int | None]:
    """Each lead's routing attempt (None: not routed yet), its row created if missing and locked."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    conn = await driver_connection(session)
    attempts: dict[str, int | None] = {r[0]: r[1] for r in await conn.fetch(LOCK_LEADS, ids, now)}
    if len(attempts) < len(ids):  # created meanwhile by a transaction that committed after our snapshot
        missing = [i for i in ids if i not in attempts]
        attempts.update((r[0], r[1]) for r in await conn.fetch(LOCK_EXISTING, missing))
    return attempts


async def live_deadlines(session: Any, lead_ids: list[str]) -> dict[str, list[Deadline]]:
    """Each lead's open and breached deadlines, locked (the timer skips them meanwhile), in due order."""
    out: dict[str, list[Deadline]] = defaultdict(list)
    if lead_ids:
        conn = await driver_connection(session)
        for r in await conn.fetch(LIVE_DEADLINES, sorted(set(lead_ids)), _LIVE):
            d = store.from_claimed(r)
            out[d.lead_id].append(d)
    return out


async def lead_touches(session: Any, lead_ids: list[str]) -> dict[str, list[Touch]]:
    out: dict[str, list[Touch]] = defaultdict(list)
    if lead_ids:
        conn = await driver_connection(session)
        for r in await conn.fetch(LEAD_TOUCHES, sorted(set(lead_ids))):
            out[r[0]].append(Touch(r[1], r[2], TouchType(r[3]), FollowUpOutcome(r[4]) if r[4] else None))
    return out


async def add_touches(session: Any, touches_: list[tuple[str, str, datetime, str, str | None, datetime | None]],
                      ) -> set[tuple[str, str]]:
    """Keep the touches (lead id, follow-up id, occurred_at, touch type, outcome, logged_at; each key once):
    the keys of those that were new."""
    if not touches_:
        return set()
    columns = [list(c) for c in zip(*touches_, strict=True)]
    rows = await (await driver_connection(session)).fetch(ADD_TOUCHES, *columns)
    return {(r[0], r[1]) for r in rows}
