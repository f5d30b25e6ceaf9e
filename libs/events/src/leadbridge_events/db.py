"""PostgreSQL plumbing shared by the services: engines, per-service schemas, and the backbone tables.

Each service owns one PostgreSQL schema. Its ``MetaData(schema=...)`` holds the service's own tables
plus two backbone tables added by ``add_backbone_tables``: the transactional outbox and the
processed-event ids of the idempotent consumer.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, DateTime, Index, LargeBinary, MetaData, String, Table, func, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    # hide_parameters: a database error (in a log, an exception text, a dead letter) never carries the
    # emails and phones of a statement's parameters
    return create_async_engine(database_url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True,
                               hide_parameters=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
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
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": f"schema:{metadata.schema}"})
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)
