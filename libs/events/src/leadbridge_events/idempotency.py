"""The idempotent consumer: record an event id in the same transaction as the handler's effects."""

from __future__ import annotations

import functools

from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession


async def claim_event(session: AsyncSession, processed: Table, consumer: str, event_id: str) -> bool:
    """True if this consumer has not processed ``event_id`` yet (and now owns it in this transaction).

    A concurrent duplicate blocks on the primary key until the first transaction ends, then sees the
    conflict: so a redelivered event changes nothing, even under races.
    """
    return bool(await claim_events(session, processed, consumer, [event_id]))


async def claim_events(session: AsyncSession, processed: Table, consumer: str, event_ids: list[str]) -> set[str]:
    """The ids of ``event_ids`` this consumer had not processed yet (now claimed in this transaction)."""
    if not event_ids:
        return set()
    rows = await session.execute(_claim_statement(processed.fullname),
                                 {"consumer": consumer, "ids": list(dict.fromkeys(event_ids))})
    return set(rows.scalars())


@functools.lru_cache(maxsize=256)
def _claim_statement(table: str) -> TextClause:
    """The multi-row claim of a ``processed_events`` table, parsed once (``text()`` parses it each time)."""
    return text(f"INSERT INTO {table} (consumer, event_id) SELECT :consumer, e "
                "FROM unnest(CAST(:ids AS text[])) AS e ON CONFLICT DO NOTHING RETURNING event_id")
