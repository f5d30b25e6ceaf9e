"""Dead letters: what the consumer runner writes to ``<topic>.dlq``, and how they are brought back.

A dead letter is the original record (key, value and headers byte for byte, so its CloudEvents id is kept)
plus ``dlq_*`` headers saying why and where from. The error text is ``failures.describe``'d: exception type,
SQLSTATE and constraint names, never values -- dead letters carry no personal data beyond the record itself.

What an operator did with a dead letter (replayed, discarded with a reason) and with a parked outbox row
(republished) is recorded in ``backbone.dlq_actions``, one row per record and action, with who and when:
``leadbridge-dlq list`` shows only the dead letters without an action, and the table is the audit trail.
The DLQ topics themselves are never rewritten (and keep their records: ``retention.ms=-1``).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from leadbridge_contracts.topics import DLQ_SUFFIX
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from .logs import redact
from .outbox import notify_channel
from .producer import EventProducer

DLQ_HEADER_PREFIX = "dlq_"

actions_metadata = MetaData(schema="backbone")
DLQ_ACTIONS = Table(
    "dlq_actions", actions_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("acted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("action", String(20), nullable=False),  # replayed | discarded | republished
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
    Column("dlq_topic", String(250)),
    Column("dlq_partition", Integer),
    Column("dlq_offset", BigInteger),
    Column("source_topic", String(250)),
    Column("event_id", String(64)),
    Column("event_type", String(200)),
    Column("replayed_partition", Integer),
    Column("replayed_offset", BigInteger),
    Column("outbox_schema", String(100)),
    Column("outbox_id", BigInteger),
)


def dead_letter_headers(record: ConsumerRecord, *, reason: str, error: str, group: str, attempts: int,
                        now: datetime | None = None) -> list[tuple[str, bytes]]:
    """The record's own headers (minus any earlier ``dlq_*``) and the ``dlq_*`` headers of this failure."""
    failed_at = (now or datetime.now(UTC)).isoformat()
    return without_dlq_headers(record.headers or ()) + [
        ("dlq_reason", reason.encode()),
        ("dlq_error", redact(error)[:4000].encode()),  # and, to be sure, no email or phone number
        ("dlq_source_topic", record.topic.encode()),
        ("dlq_source_partition", str(record.partition).encode()),
        ("dlq_source_offset", str(record.offset).encode()),
        ("dlq_consumer_group", group.encode()),
        ("dlq_attempts", str(attempts).encode()),
        ("dlq_failed_at", failed_at.encode()),
    ]


def without_dlq_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The headers a replayed record goes back with: everything but the ``dlq_*`` ones."""
    return [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]


def dlq_name(topic: str) -> str:
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


def operator() -> str:
    return os.environ.get("LEADBRIDGE_OPERATOR") or getpass.getuser()


@dataclass(frozen=True)
class DeadLetter:
    record: ConsumerRecord

    def header(self, name: str) -> str:
        for k, v in self.record.headers or ():
            if k == name:
                value: bytes = v
                return value.decode(errors="replace")
        return ""

    @property
    def offset(self) -> int:
        offset: int = self.record.offset  # aiokafka is untyped
        return offset

    @property
    def source_topic(self) -> str:
        topic: str = self.record.topic
        return self.header("dlq_source_topic") or topic.removesuffix(DLQ_SUFFIX)

    @property
    def event_type(self) -> str:
        return self.header("ce_type").removeprefix("io.leadbridge.")

    def age_seconds(self, now: datetime) -> float:
        timestamp_ms: int = self.record.timestamp
        return max(now.timestamp() - timestamp_ms / 1000, 0.0)


async def read_dead_letters(bootstrap_servers: str, topic: str) -> list[DeadLetter]:
    """Every record on ``topic``'s DLQ, oldest first (read without a consumer group: nothing is committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(dlq_name(topic)) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # a topic not in the first metadata yet
            partitions = consumer.partitions_for_topic(dlq_name(topic)) or set()
        tps = [TopicPartition(dlq_name(topic), p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                letters.extend(DeadLetter(r) for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return sorted(letters, key=lambda d: (d.record.partition, d.offset))
    finally:
        await consumer.stop()


async def ensure_actions_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text('CREATE SCHEMA IF NOT EXISTS "backbone"'))
        await conn.run_sync(actions_metadata.create_all)


async def handled_offsets(engine: AsyncEngine, topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) -> the action taken, for the dead letters of ``topic`` that were handled."""
    t = DLQ_ACTIONS
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.c.dlq_partition, t.c.dlq_offset, t.c.action)
                                   .where(t.c.dlq_topic == dlq_name(topic)).order_by(t.c.id))).all()
    return {(r.dlq_partition, r.dlq_offset): r.action for r in rows}


async def replay(engine: AsyncEngine, producer: EventProducer, letters: Sequence[DeadLetter]) -> list[tuple[int, int]]:
    """Publish each dead letter to its source topic as it was (same key, value, CloudEvents id; no ``dlq_*``
    headers) and record it; returns the (partition, offset) each landed at."""
    landed = []
    for letter in letters:
        r = letter.record
        meta = await producer.send_raw(letter.source_topic, r.value, key=r.key,
                                       headers=without_dlq_headers(r.headers or ()))
        await record_action(engine, "replayed", letter, replayed=(meta.partition, meta.offset))
        landed.append((meta.partition, meta.offset))
    return landed


async def record_action(engine: AsyncEngine, action: str, letter: DeadLetter, *, reason: str | None = None,
                        replayed: tuple[int, int] | None = None) -> None:
    async with engine.begin() as conn:
        await conn.execute(DLQ_ACTIONS.insert().values(
            action=action, actor=operator(), reason=reason, dlq_topic=letter.record.topic,
            dlq_partition=letter.record.partition, dlq_offset=letter.offset, source_topic=letter.source_topic,
            event_id=letter.header("ce_id") or None, event_type=letter.event_type or None,
            replayed_partition=replayed[0] if replayed else None, replayed_offset=replayed[1] if replayed else None))


# -- parked outbox rows ------------------------------------------------------------------------------

async def outbox_schemas(engine: AsyncEngine) -> list[str]:
    """Every schema whose outbox can park rows (each service's, whatever services this database has)."""
    async with engine.connect() as conn:
        return list((await conn.execute(text(
            "SELECT table_schema FROM information_schema.columns WHERE table_name = 'outbox' "
            "AND column_name = 'parked_at' ORDER BY table_schema"))).scalars())


def _outbox(schema: str) -> Table:
    return Table("outbox", MetaData(schema=schema), Column("id", BigInteger, primary_key=True),
                 Column("event_id", String), Column("topic", String), Column("created_at", DateTime(timezone=True)),
                 Column("sent_at", DateTime(timezone=True)), Column("attempts", Integer),
                 Column("parked_at", DateTime(timezone=True)), Column("park_reason", Text))


async def parked_rows(engine: AsyncEngine, schema: str) -> list[Row[*tuple[Any, ...]]]:
    ob = _outbox(schema)
    async with engine.connect() as conn:
        return list((await conn.execute(
            select(ob.c.id, ob.c.event_id, ob.c.topic, ob.c.attempts, ob.c.parked_at, ob.c.park_reason)
            .where(ob.c.sent_at.is_(None), ob.c.parked_at.is_not(None)).order_by(ob.c.id))).all())


async def republish_parked(engine: AsyncEngine, schema: str, ids: Sequence[int] | None) -> list[int]:
    """Un-park rows (all parked rows if ``ids`` is None): the schema's relay publishes them next. Recorded."""
    ob = _outbox(schema)
    where = [ob.c.sent_at.is_(None), ob.c.parked_at.is_not(None)]
    if ids is not None:
        where.append(ob.c.id.in_(list(ids)))
    async with engine.begin() as conn:
        rows = (await conn.execute(update(ob).where(*where).values(parked_at=None, attempts=0, park_reason=None)
                                   .returning(ob.c.id, ob.c.event_id, ob.c.topic))).all()
        for row in rows:
            await conn.execute(DLQ_ACTIONS.insert().values(
                action="republished", actor=operator(), outbox_schema=schema, outbox_id=row.id,
                event_id=row.event_id, source_topic=row.topic))
        await conn.execute(select(func.pg_notify(notify_channel(schema), "")))  # wake the schema's relay
    return sorted(r.id for r in rows)
