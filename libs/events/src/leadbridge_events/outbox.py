"""The transactional outbox: write an event in the same transaction as the state change, relay it later.

``stage_events(session, outbox_table, events)`` inserts the events' rows inside the caller's transaction
(one multi-row insert, and a NOTIFY for the relay on commit); services reach it through ``ctx.emit`` /
``runtime.transaction()``. ``relay.OutboxRelay`` publishes unsent rows to Kafka in id order, and marks
them sent only after the broker acknowledged them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.topics import topic_for
from pydantic import TypeAdapter
from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .tracing import outbox_headers

log = logging.getLogger("leadbridge.outbox")


Staged = tuple[Envelope[Any], str | None]  # an event, and its topic when not its type's


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes a schema's relay."""
    return f"outbox_{schema}".replace("-", "_")


def outbox_row(event: Envelope[Any], topic: str | None = None) -> dict[str, Any]:
    """The outbox row of ``event``: the one place its topic, key, value and headers are decided."""
    return {"event_id": event.id, "topic": topic or topic_for(event.type).name, "key": event.lead_id,
            "value": event.kafka_value(), "headers": outbox_headers(event)}  # + the span's traceparent (tracing.py)


_HEADERS = TypeAdapter(dict[str, str])
_STAGE = ("WITH staged AS (INSERT INTO {table} (event_id, topic, key, value, headers) "
          "SELECT e, t, k, v, CAST(h AS jsonb) FROM unnest(CAST({} AS text[]), CAST({} AS text[]), CAST({} AS text[]), "
          "CAST({} AS bytea[]), CAST({} AS text[])) WITH ORDINALITY AS x(e, t, k, v, h, n) ORDER BY n RETURNING id) "
          "SELECT pg_notify({}, '')")
_PARAMS = ("event_id", "topic", "key", "value", "headers", "channel")


async def stage_events(db: AsyncSession | AsyncConnection | Any, outbox: Table,
                       events: Iterable[Envelope[Any] | Staged]) -> None:
    """Stage ``events`` for publication, atomically with whatever else ``db``'s transaction does.

    THE way events get into an outbox (consumers, HTTP handlers, timers and schedulers all end here, through
    ``transaction.Transaction``): one multi-row insert, in order, and the relay's wake-up (``pg_notify``,
    delivered on commit), in one round trip. An item is an event (published to its type's topic) or an
    ``(event, topic)`` pair. ``db`` is a SQLAlchemy session or connection, or a plain asyncpg connection
    (intake's group commit) in a transaction.
    """
    rows = [outbox_row(*(item if isinstance(item, tuple) else (item, None))) for item in events]
    if not rows:
        return
    # the headers as JSON text for jsonb, by pydantic's encoder: ~5x json.dumps (jsonb stores the same value)
    values = [*([r[c] for r in rows] for c in _PARAMS[:4]), [_HEADERS.dump_json(r["headers"]).decode() for r in rows],
              notify_channel(outbox.schema or "public")]
    if isinstance(db, AsyncSession | AsyncConnection):
        await db.execute(_stage_statement(outbox.fullname), dict(zip(_PARAMS, values, strict=True)))
    else:
        await db.execute(_STAGE.format(*(f"${i}" for i in range(1, 7)), table=outbox.fullname), *values)


@functools.lru_cache(maxsize=256)
def _stage_statement(table: str) -> TextClause:
    """``_STAGE`` for SQLAlchemy, parsed once per outbox table (``text()`` parses its bind parameters each time)."""
    return text(_STAGE.format(*(f":{p}" for p in _PARAMS), table=table))


async def add_to_outbox(session: AsyncSession, outbox: Table, event: Envelope[Any], topic: str | None = None) -> None:
    """``stage_events`` for one event."""
    await stage_events(session, outbox, [(event, topic)])
