"""PostgreSQL plumbing shared by the services: engines, per-service schemas, and the backbone tables.

Each service owns one PostgreSQL schema. Its ``MetaData(schema=...)`` holds the service's own tables
plus two backbone tables added by ``add_backbone_tables``: the transactional outbox and the
processed-event ids of the idempotent consumer.

Every engine is made by ``make_engine``: ``hide_parameters`` (a database error's text never carries the
emails and phones bound to a statement), and bounded waits on every connection -- ``lock_timeout`` (a
lock not had within it raises 55P03) and ``statement_timeout`` (57014); both are transient failures
(``failures.py``), retried rather than dead-lettered. Migrations raise both for their own transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .locks import LockClass, xact_lock

DEFAULT_LOCK_TIMEOUT_MS = 10_000
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
# ``Table(..., postgresql_with=ROOM_FOR_UPDATES)`` for a table whose rows are updated in place after their insert
# (a lead's status as it moves on): each page keeps half its space free, so an update's new version fits beside
# the old one and is a HOT update, with no new entry in any index. A batch updates rows it inserted together,
# whole pages at once: intake's status update of 300 leads was HOT for none with packed pages, for 250 with half
# of each page free, and the next update for all 300 (test_migrations). Only for updates that change no indexed
# column. A revision applies it to an existing table (``backbone_revisions.leave_room_for_updates``): to pages
# written from then on.
ROOM_FOR_UPDATES = {"fillfactor": 50}


def make_engine(database_url: str, *, pool_size: int = 10, max_overflow: int = 10, pre_ping: bool = False,
                lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
                statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS) -> AsyncEngine:
    """An engine whose errors hide bound parameters and whose sessions never wait without bound.

    No pre-ping by default: it costs a round trip on every session checkout (~23% of a consumer batch's CPU
    with small fetches, 8% of crm-sync's). A pooled connection found dead (the database restarted) raises a
    disconnect error once; SQLAlchemy then invalidates the whole pool, and the caller's failure is transient
    (``failures.is_transient``): the consumer pauses and retries, an API answers 503 with Retry-After."""
    server_settings = {"lock_timeout": str(lock_timeout_ms), "statement_timeout": str(statement_timeout_ms)}
    return create_async_engine(database_url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pre_ping,
                               hide_parameters=True, connect_args={"server_settings": server_settings})


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def add_backbone_tables(metadata: MetaData) -> tuple[Table, Table]:
    """Add the ``outbox`` and ``processed_events`` tables to a service's schema; returns both."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        # a row that failed for its own sake (too large, unknown topic): counted, then parked with the reason
        Column("attempts", SmallInteger, nullable=False, server_default=text("0")),
        Column("parked_at", DateTime(timezone=True)),
        Column("park_reason", Text),
    )
    Index(f"ix_{metadata.schema}_outbox_unsent", outbox.c.id, postgresql_where=outbox.c.sent_at.is_(None))
    processed = Table(
        "processed_events",
        metadata,
        Column("consumer", String(200), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return outbox, processed


async def create_schema(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create the service's schema and tables if missing (idempotent; safe with concurrent starters)."""
    async with engine.begin() as conn:
        # serialize concurrent first starts of replicas of the same service
        await xact_lock(conn, LockClass.SCHEMA_MIGRATION, metadata.schema or "public")
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under ``session``, inside its transaction: for constant statements of a hot path
    run on the driver itself (``$1``-style parameters), without SQLAlchemy's per-execution work. Its errors
    are asyncpg's own (``failures.classify`` reads both). SQLAlchemy begins the transaction at its first
    statement; if none ran yet, one trivial statement does it, so nothing here ever runs outside it."""
    conn = await session.connection()
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None  # an open connection always has its asyncpg connection
    if not driver.is_in_transaction():
        await conn.execute(text("SELECT 1"))
    return driver
