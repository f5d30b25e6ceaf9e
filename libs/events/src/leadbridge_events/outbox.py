"""The transactional outbox: write an event in the same transaction as the state change, relay it later.

``stage_events(session, outbox_table, events)`` inserts the events' rows inside the caller's transaction
(one multi-row insert, and a NOTIFY for the relay on commit); services reach it through ``ctx.emit`` /
``runtime.transaction()``. ``relay.OutboxRelay`` publishes unsent rows to Kafka in id order, and marks
them sent only after the broker acknowledged them.

Waking the relay. A NOTIFY costs more than it seems: PostgreSQL serialises every notifying transaction of the
cluster on one lock held through its commit's WAL flush, so with NOTIFY in every transaction that emits,
the services' durable commits happen one at a time (a probe on the durable cluster: 1,748 commits/s on 32
connections without NOTIFY, 586 with). So when the relay leading a schema runs in THIS process
(``lead_here``), staging leaves the NOTIFY out and the relay is woken in memory after the commit (a
session's ``after_commit``; ``wake_after_commit`` for a plain connection). A writer whose relay is elsewhere
(another replica leads) still sends the NOTIFY with its commit. Either way the relay also polls
(``poll_interval``, a second), so a wake lost to a change of leader delays a row, never loses it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.topics import topic_for
from pydantic import TypeAdapter
from sqlalchemy import Table, TextClause, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

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


_LEADERS: dict[tuple[str, str], Callable[[], None]] = {}  # (database URL, schema) -> wake its relay, here
_WAKES = "leadbridge_outbox_wakes"  # a session's info key: the relays to wake once it commits


def _leader_key(engine: AsyncEngine, schema: str) -> tuple[str, str]:
    return (engine.url.render_as_string(hide_password=False), schema)


def lead_here(engine: AsyncEngine, schema: str, wake: Callable[[], None]) -> None:
    """The relay of ``schema`` on ``engine``'s database leads in this process: wake it with ``wake``."""
    _LEADERS[_leader_key(engine, schema)] = wake


def not_leading_here(engine: AsyncEngine, schema: str, wake: Callable[[], None]) -> None:
    """That relay stopped leading: writers NOTIFY again."""
    if _LEADERS.get(key := _leader_key(engine, schema)) is wake:
        del _LEADERS[key]


def _local_wake(engine: AsyncEngine | None, schema: str) -> Callable[[], None] | None:
    return _LEADERS.get(_leader_key(engine, schema)) if engine is not None and _LEADERS else None


def wake_after_commit(engine: AsyncEngine, schema: str) -> None:
    """After a commit on a plain connection that staged with ``local=engine``: wake this process's relay."""
    if wake := _local_wake(engine, schema):
        wake()


@event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    for wake in session.info.pop(_WAKES, ()):
        wake()


@event.listens_for(Session, "after_rollback")
def _forget_wakes(session: Session) -> None:
    session.info.pop(_WAKES, None)


def _engine_of(session: AsyncSession) -> AsyncEngine | None:
    """The engine of a session bound to an engine or to a connection (tests); a connection always NOTIFYs."""
    bind = session.bind
    return bind.engine if isinstance(bind, AsyncConnection) else bind if isinstance(bind, AsyncEngine) else None


_HEADERS = TypeAdapter(dict[str, str])
_INSERT = ("INSERT INTO {table} (event_id, topic, key, value, headers) "
           "SELECT e, t, k, v, CAST(h AS jsonb) FROM unnest(CAST({} AS text[]), CAST({} AS text[]), CAST({} AS text[]), "
           "CAST({} AS bytea[]), CAST({} AS text[])) WITH ORDINALITY AS x(e, t, k, v, h, n) ORDER BY n")
_STAGE = f"WITH staged AS ({_INSERT} RETURNING id) SELECT pg_notify({{}}, '')"  # + the NOTIFY, for a relay elsewhere
_PARAMS = ("event_id", "topic", "key", "value", "headers", "channel")


async def stage_events(db: AsyncSession | AsyncConnection | Any, outbox: Table,
                       events: Iterable[Envelope[Any] | Staged], *, local: AsyncEngine | None = None) -> None:
    """Stage ``events`` for publication, atomically with whatever else ``db``'s transaction does.

    THE way events get into an outbox (consumers, HTTP handlers, timers and schedulers all end here, through
    ``transaction.Transaction``): one multi-row insert, in order, in one round trip, and the relay's wake-up:
    in memory after the commit when the relay leads in this process, else a ``pg_notify`` delivered on commit
    (module docstring). An item is an event (published to its type's topic) or an ``(event, topic)`` pair.
    ``db`` is a SQLAlchemy session (or connection: always NOTIFY), or a plain asyncpg connection in a
    transaction (intake's group commit) with ``local`` its engine: its owner calls ``wake_after_commit``.
    """
    rows = [outbox_row(*(item if isinstance(item, tuple) else (item, None))) for item in events]
    if not rows:
        return
    schema = outbox.schema or "public"
    wake = _local_wake(_engine_of(db) if isinstance(db, AsyncSession) else local, schema)
    # the headers as JSON text for jsonb, by pydantic's encoder: ~5x json.dumps (jsonb stores the same value)
    values = [*([r[c] for r in rows] for c in _PARAMS[:4]), [_HEADERS.dump_json(r["headers"]).decode() for r in rows],
              notify_channel(schema)][:5 if wake else 6]
    if isinstance(db, AsyncSession | AsyncConnection):
        await db.execute(_stage_statement(outbox.fullname, wake is None), dict(zip(_PARAMS, values, strict=False)))
        if wake and isinstance(db, AsyncSession):
            db.info.setdefault(_WAKES, []).append(wake)
    else:
        sql = (_INSERT if wake else _STAGE).format(*(f"${i}" for i in range(1, len(values) + 1)), table=outbox.fullname)
        await db.execute(sql, *values)


@functools.lru_cache(maxsize=512)
def _stage_statement(table: str, notify: bool) -> TextClause:
    """The staging for SQLAlchemy, parsed once per outbox table (``text()`` parses its bind parameters each time)."""
    return text((_STAGE if notify else _INSERT).format(*(f":{p}" for p in _PARAMS), table=table))


async def add_to_outbox(session: AsyncSession, outbox: Table, event: Envelope[Any], topic: str | None = None) -> None:
    """``stage_events`` for one event."""
    await stage_events(session, outbox, [(event, topic)])
