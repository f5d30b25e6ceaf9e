"""Batch consumption: what the runner does with a partition's fetched records in ONE database transaction.

For a batch of records of one partition (in offset order):

1. one multi-row claim of the event ids (``processed_events``): the ones claimed already (redeliveries)
   and repeats inside the batch change nothing;
2. the topic's batch handler with every fresh event (``BatchHandler``: multi-row statements where it can,
   per-lead order kept), or else the topic's one-event handler for each, in order, in the same transaction;
3. every emitted event in one multi-row outbox insert (and one NOTIFY for the relay), then one commit.

Any error rolls all of it back; the runner then retries the batch (a transient fault) or handles the
batch's records one by one (anything else), so a poison record is dead-lettered alone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.topics import topic_for
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession


def _channel(outbox: Table) -> str:
    return f"outbox_{outbox.schema or 'public'}".replace("-", "_")


async def claim_events(session: AsyncSession, processed: Table, consumer: str, event_ids: list[str]) -> set[str]:
    """The ids of ``event_ids`` this consumer had not processed yet (now claimed in this transaction)."""
    if not event_ids:
        return set()
    rows = await session.execute(text(
        f"INSERT INTO {processed.fullname} (consumer, event_id) SELECT :consumer, e "
        "FROM unnest(CAST(:ids AS text[])) AS e ON CONFLICT DO NOTHING RETURNING event_id"),
        {"consumer": consumer, "ids": list(dict.fromkeys(event_ids))})
    return set(rows.scalars())


async def stage_events(session: AsyncSession, outbox: Table, staged: list[tuple[Envelope[Any], str | None]]) -> None:
    """Many events into the outbox in one statement, in order, with one NOTIFY (delivered on commit)."""
    if not staged:
        return
    events = [e for e, _ in staged]
    await session.execute(text(
        f"WITH staged AS (INSERT INTO {outbox.fullname} (event_id, topic, key, value, headers) "
        "SELECT e, t, k, v, CAST(h AS jsonb) FROM unnest(CAST(:e AS text[]), CAST(:t AS text[]), CAST(:k AS text[]), "
        "CAST(:v AS bytea[]), CAST(:h AS text[])) WITH ORDINALITY AS x(e, t, k, v, h, n) ORDER BY n RETURNING id) "
        "SELECT pg_notify(:channel, '')"),
        {"e": [e.id for e in events], "t": [t or topic_for(e.type).name for e, t in staged],
         "k": [e.lead_id for e in events], "v": [e.kafka_value() for e in events],
         "h": [json.dumps({k: v.decode() for k, v in e.kafka_headers()}) for e in events],
         "channel": _channel(outbox)})


@dataclass
class BatchContext:
    """What a batch handler gets: the batch's transaction, and ``emit`` (staged, written with the batch)."""

    session: AsyncSession
    outbox: Table | None
    records: dict[str, ConsumerRecord] = field(default_factory=dict)  # event id -> its record
    staged: list[tuple[Envelope[Any], str | None]] = field(default_factory=list)

    async def emit(self, event: Envelope[Any], topic: str | None = None) -> None:
        if self.outbox is None:
            raise RuntimeError("this consumer has no outbox table; pass outbox= to ConsumerRunner")
        self.staged.append((event, topic))

    def for_event(self, event: Envelope[Any]) -> Any:
        """A one-event ``HandlerContext`` inside this batch (its emits join the batch's outbox insert)."""
        from .consumer import HandlerContext  # the runner imports this module

        ctx = HandlerContext(session=self.session, record=self.records.get(event.id), outbox=self.outbox)  # type: ignore[arg-type]
        batch = self

        async def emit(ev: Envelope[Any], topic: str | None = None) -> None:
            await batch.emit(ev, topic)
            ctx.emitted.append(ev)

        ctx.emit = emit  # type: ignore[method-assign]
        return ctx


BatchHandler = Callable[[list[Envelope[Any]], BatchContext], Awaitable[None]]
