"""What the end-to-end tests share: a database of their own, the services as processes, reading topics."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.topics import Topic
from leadbridge_devstack.ports import free_port
from leadbridge_devstack.system import System, replica_names, start_system


@contextlib.contextmanager
def own_database(stack) -> Iterator[str]:
    """A new database on the test server for one module's services; dropped afterwards."""
    import asyncpg

    name = f"e2e_{uuid.uuid4().hex[:8]}"
    admin_dsn = stack.database_url.replace("postgresql+asyncpg://", "postgresql://")

    async def sql(statement):
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    try:
        yield stack.database_url.rpartition("/")[0] + f"/{name}"
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def running_system(env: dict[str, str], log_dir: Path, *, replicas: int = 1) -> Iterator[System]:
    """Every service as processes on free ports; on the way out, the tail of any log with a traceback."""
    running = start_system(env, {name: free_port() for name in replica_names(replicas)}, log_dir=log_dir,
                           replicas=replicas, ready_timeout=180.0)
    try:
        yield running
    finally:
        running.stop()
        for log in sorted(log_dir.glob("*.log")):
            tail = log.read_text(errors="replace")[-1500:]
            if "Traceback" in tail:
                print(f"--- {log.name} ---\n{tail}")


async def events_so_far(bootstrap: str, topic: Topic, lead_ids: set[str]) -> list[Envelope]:
    """Every event of ``lead_ids`` on ``topic`` up to its end now (records, duplicates included)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        wanted = {lead.encode() for lead in lead_ids}
        found: list[Envelope] = []
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                found += [Envelope.from_kafka(r.key, r.value, r.headers) for r in records if r.key in wanted]
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return found
    finally:
        await consumer.stop()
