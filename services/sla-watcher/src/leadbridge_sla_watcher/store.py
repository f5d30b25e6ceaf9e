"""Adapter between the pure deadline model and PostgreSQL (inside the caller's transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from leadbridge_contracts.events import FollowUpOutcome, SlaKind, TouchType
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


async def lock_lead(session: AsyncSession, lead_id: str, now: datetime) -> Any:
    """The lead's row, created if missing and locked: handlers of one lead run one at a time."""
    await session.execute(insert(leads).values(lead_id=lead_id, updated_at=now).on_conflict_do_nothing())
    return (await session.execute(select(leads).where(leads.c.lead_id == lead_id).with_for_update())).one()


async def set_routing(session: AsyncSession, lead_id: str, **values: Any) -> None:
    await session.execute(leads.update().where(leads.c.lead_id == lead_id).values(**values))


async def live_deadlines(session: AsyncSession, lead_id: str) -> list[Deadline]:
    """Open and breached deadlines of a lead, locked (the timer skips them meanwhile)."""
    rows = await session.execute(
        select(deadlines).where(deadlines.c.lead_id == lead_id, deadlines.c.status.in_([s.value for s in LIVE]))
        .order_by(deadlines.c.due_at).with_for_update()
    )
    return [from_row(r) for r in rows]


async def save(session: AsyncSession, items: Iterable[Deadline]) -> None:
    rows = [to_row(d) for d in items]
    if not rows:
        return
    stmt = insert(deadlines)
    stmt = stmt.on_conflict_do_update(index_elements=[deadlines.c.id],
                                      set_={c: stmt.excluded[c] for c in rows[0] if c != "id"})
    await session.execute(stmt, rows)


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
