"""Baselines for `make bench`: the raw aiokafka producer rate and the raw PostgreSQL insert rate.

Both use the same durability LeadBridge asks for (idempotent producer with acks=all and every send
awaited; one committed transaction per insert), so the system's figures can be read as ratios of these.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

PAYLOAD = (b'{"lead_id": "x", "profile": {"channel": "paid", "campaign": "bench", "country": "DE", "custom": {"pad": "'
           + b"x" * 300 + b'"}}}')


async def kafka_producer_rate(bootstrap: str, n: int = 20000, concurrency: int = 64) -> float:
    """Messages/s, each awaited, `concurrency` in flight (as the outbox relay pipelines its batches)."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 6, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2)
    await producer.start()
    try:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await producer.send_and_wait(topic, PAYLOAD, key=str(i % 1000).encode())

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def postgres_insert_rate(database_url: str, n: int = 5000, concurrency: int = 8) -> float:
    """Rows/s, one committed transaction per row, `concurrency` connections."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    try:
        await pool.execute(f"CREATE TABLE {table} (id uuid primary key, body jsonb, created_at timestamptz default now())")
        per_worker = n // concurrency

        async def worker() -> None:
            async with pool.acquire() as conn:
                for _ in range(per_worker):
                    await conn.execute(f"INSERT INTO {table} (id, body) VALUES ($1, $2)", uuid.uuid4(),
                                       PAYLOAD.decode())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = per_worker * concurrency / (time.perf_counter() - started)
        await pool.execute(f"DROP TABLE {table}")
        return rate
    finally:
        await pool.close()
