"""Batch consumption: what the runner does with a partition's fetched records in ONE database transaction.

For a batch of records of one partition (in offset order):

1. one multi-row claim of the event ids (``processed_events``): the ones claimed already (redeliveries)
   and repeats inside the batch change nothing;
2. each run of consecutive fresh events whose types share a batch handler (``on(X, h, batch=...)``) goes to
   that batch handler (multi-row statements where it can, per-lead order kept); any other event to its
   type's one-event handler, in order, in the same transaction;
3. every emitted event in one multi-row outbox insert (``outbox.stage_events``, one NOTIFY), then one commit.

Any error rolls all of it back; the runner then retries the batch (a transient fault) or handles the
batch's records one by one (anything else), so a poison record is dead-lettered alone.
"""

from __future__ import annotations

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession

from .registry import BatchHandler
from .transaction import BatchContext

__all__ = ["BatchContext", "BatchHandler", "claim_events"]


async def claim_events(session: AsyncSession, processed: Table, consumer: str, event_ids: list[str]) -> set[str]:
    """The ids of ``event_ids`` this consumer had not processed yet (now claimed in this transaction)."""
    if not event_ids:
        return set()
    rows = await session.execute(text(
        f"INSERT INTO {processed.fullname} (consumer, event_id) SELECT :consumer, e "
        "FROM unnest(CAST(:ids AS text[])) AS e ON CONFLICT DO NOTHING RETURNING event_id"),
        {"consumer": consumer, "ids": list(dict.fromkeys(event_ids))})
    return set(rows.scalars())
