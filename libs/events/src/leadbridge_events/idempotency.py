"""The idempotent consumer: record an event id in the same transaction as the handler's effects."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert


@functools.lru_cache(maxsize=256)
def _claim(processed: Table) -> ReturningInsert[Any]:
    """The claim statement of a ``processed_events`` table, built once (building it costs more than running it)."""
    return (
        insert(processed)
        .values(consumer=bindparam("claim_consumer"), event_id=bindparam("claim_event_id"))
        .on_conflict_do_nothing()
        .returning(processed.c.event_id)
    )


async def claim_event(session: AsyncSession, processed: Table, consumer: str, event_id: str) -> bool:
    """True if this consumer has not processed ``event_id`` yet (and now owns it in this transaction).

    A concurrent duplicate blocks on the primary key until the first transaction ends, then sees the
    conflict: so a redelivered event changes nothing, even under races.
    """
    result = await session.execute(_claim(processed), {"claim_consumer": consumer, "claim_event_id": event_id})
    return result.first() is not None
