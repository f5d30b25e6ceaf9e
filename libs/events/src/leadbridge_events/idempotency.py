"""The idempotent consumer: record an event id in the same transaction as the handler's effects."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession


async def claim_event(session: AsyncSession, processed: Table, consumer: str, event_id: str) -> bool:
    """True if this consumer has not processed ``event_id`` yet (and now owns it in this transaction).

    A concurrent duplicate blocks on the primary key until the first transaction ends, then sees the
    conflict: so a redelivered event changes nothing, even under races.
    """
    stmt = (
        insert(processed)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
        .returning(processed.c.event_id)
    )
    return (await session.execute(stmt)).first() is not None
