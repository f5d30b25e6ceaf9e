"""Adapter between the pure deadline model and PostgreSQL (inside the caller's transaction).

``save`` is one constant statement on the driver (``db.driver_connection``): the deadlines as one array per
column, upserted, with the leads' new routing; the batch path's reads are in ``batch_store``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from leadbridge_contracts.events import FollowUpOutcome, SlaKind, TouchType
from leadbridge_events.db import driver_connection
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .deadlines import LIVE, Deadline, Status, Touch
from .tables import deadlines, leads, touches

_FIELDS = [c.name for c in deadlines.columns if c.name != "next_fire_at"]


def to_row(d: Deadline) -> dict[str, Any]:
    row = {name: getattr(d, name) for name in _FIELDS}
    row["kind"], row["status"] = d.kind.value, d.status.value
    row["next_fire_at"] = d.next_fire_at
    return row


def from_row(row: Any) -> Deadline:
    m = row._mapping if hasattr(row, "_mapping") else row
    values = {name: m[name] for name in _FIELDS}
    values["kind"], values["status"] = SlaKind(m["kind"]), Status(m["status"])
    return Deadline(**values)


CLAIMED = (*(f.name for f in fields(Deadline)), "next_fire_at")
"""The columns the timer's claim returns, in this order: the ``Deadline``'s fields, then the stored fire time."""
_KIND_AT, _STATUS_AT = CLAIMED.index("kind"), CLAIMED.index("status")
_KINDS, _STATUSES = {k.value: k for k in SlaKind}, {s.value: s for s in Status}


def from_claimed(row: Sequence[Any]) -> Deadline:
    """``from_row`` of a row of the columns ``CLAIMED``, by position (the timer reads 100,000 a second). A value
    no code path writes raises ``ValueError``, as ``from_row`` does."""
    values = list(row[:-1])
    kind, status = values[_KIND_AT], values[_STATUS_AT]
    values[_KIND_AT] = _KINDS.get(kind) or SlaKind(kind)
    values[_STATUS_AT] = _STATUSES.get(status) or Status(status)
    return Deadline(*values)


# every column of ``deadlines`` in table order, with the array type its values travel as
_DEADLINE_TYPES = {"id": "text", "lead_id": "text", "kind": "text", "policy": "text", "attempt": "int",
                   "assignee_id": "text", "team": "text", "starts_at": "timestamptz", "due_at": "timestamptz",
                   "at_risk_at": "timestamptz", "next_fire_at": "timestamptz", "required": "int", "count": "int",
                   "late_count": "int", "escalate": "boolean", "status": "text", "at_risk_fired_at": "timestamptz",
                   "breach_fired_at": "timestamptz", "met_at": "timestamptz"}
DEADLINE_COLUMNS = tuple(c.name for c in deadlines.columns)
assert set(DEADLINE_COLUMNS) == set(_DEADLINE_TYPES), "a deadlines column is missing from _DEADLINE_TYPES"
_ROUTING = (("lead_id", "text"), ("attempt", "int"), ("assignee_id", "text"), ("team", "text"),
            ("policy", "text"), ("routed_at", "timestamptz"), ("updated_at", "timestamptz"))


def quoted(name: str) -> str:
    return f'"{name}"'


_D_ARRAYS = ", ".join(f"${i}::{_DEADLINE_TYPES[c]}[]" for i, c in enumerate(DEADLINE_COLUMNS, 1))
_N = len(DEADLINE_COLUMNS)
_R_ARRAYS = ", ".join(f"${_N + i}::{kind}[]" for i, (_, kind) in enumerate(_ROUTING, 1))

# the deadlines upserted (each id once per batch), then the leads' routing: one round trip
SAVE = f"""
WITH saved AS (
    INSERT INTO {deadlines.fullname} ({", ".join(map(quoted, DEADLINE_COLUMNS))})
    SELECT * FROM unnest({_D_ARRAYS})
    ON CONFLICT (id) DO UPDATE SET {", ".join(f"{quoted(c)} = EXCLUDED.{quoted(c)}" for c in DEADLINE_COLUMNS if c != "id")}
)
UPDATE {leads.fullname} AS l SET attempt = r.attempt, assignee_id = r.assignee_id, team = r.team,
    policy = r.policy, routed_at = r.routed_at, updated_at = r.updated_at
FROM unnest({_R_ARRAYS}) AS r({", ".join(n for n, _ in _ROUTING)})
WHERE l.lead_id = r.lead_id
"""


async def lock_lead(session: AsyncSession, lead_id: str, now: datetime) -> Any:
    """The lead's row, created if missing and locked: handlers of one lead run one at a time."""
    await session.execute(insert(leads).values(lead_id=lead_id, updated_at=now).on_conflict_do_nothing())
    return (await session.execute(select(leads).where(leads.c.lead_id == lead_id).with_for_update())).one()


async def live_deadlines(session: AsyncSession, lead_id: str) -> list[Deadline]:
    """Open and breached deadlines of a lead, locked (the timer skips them meanwhile)."""
    rows = await session.execute(
        select(deadlines).where(deadlines.c.lead_id == lead_id, deadlines.c.status.in_([s.value for s in LIVE]))
        .order_by(deadlines.c.due_at).with_for_update()
    )
    return [from_row(r) for r in rows]


def _deadline_arrays(items: list[Deadline]) -> list[list[Any]]:
    arrays: list[list[Any]] = []
    for c in DEADLINE_COLUMNS:
        if c in ("kind", "status"):
            arrays.append([getattr(d, c).value for d in items])
        else:
            arrays.append([getattr(d, c) for d in items])
    return arrays


async def save(session: AsyncSession, items: Iterable[Deadline], routing: dict[str, dict[str, Any]] | None = None) -> None:
    """Upsert the deadlines (one row per id: give each once) and set the leads' routing (lead id -> attempt,
    assignee_id, team, policy, routed_at, updated_at), in one statement."""
    rows = list(items)
    routes = routing or {}
    if not rows and not routes:
        return
    params = _deadline_arrays(rows)
    params.append(list(routes))
    for name, _ in _ROUTING[1:]:
        params.append([r[name] for r in routes.values()])
    await (await driver_connection(session)).execute(SAVE, *params)


async def add_touch(session: AsyncSession, lead_id: str, touch: Touch, logged_at: datetime | None) -> bool:
    """Keep the touch; False if this follow-up id was seen already (a CRM re-sending it)."""
    result = await session.execute(
        insert(touches).values(lead_id=lead_id, follow_up_id=touch.follow_up_id, occurred_at=touch.occurred_at,
                               touch_type=touch.touch_type.value,
                               outcome=touch.outcome.value if touch.outcome else None, logged_at=logged_at)
        .on_conflict_do_nothing().returning(touches.c.follow_up_id)
    )
    return result.first() is not None


async def lead_touches(session: AsyncSession, lead_id: str) -> list[Touch]:
    rows = await session.execute(select(touches).where(touches.c.lead_id == lead_id))
    return [Touch(r.follow_up_id, r.occurred_at, TouchType(r.touch_type),
                  FollowUpOutcome(r.outcome) if r.outcome else None) for r in rows]
