"""The raw baselines `make bench` prints LeadBridge's figures against, measured in the same run.

Each is the best simple use of the library, not a straw man:

- Kafka: one aiokafka producer (idempotent, ``acks=all``) handed records without awaiting each send
  (``linger_ms`` and ``max_batch_size`` set), all acknowledgements awaited at the end;
- PostgreSQL, single-row commits: ``concurrency`` asyncpg connections, each committing one row per
  transaction in a loop (what a request-per-transaction service can at best reach);
- PostgreSQL, multi-row commits: the same connections, each committing ``rows_per_commit`` rows per
  transaction in one statement (what group commit and batch consumption can at best reach).

The database is whatever ``database_url`` points at: `make bench` gives it a durable one (fsync and
synchronous_commit on).
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


def plain_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


async def kafka_batched_rate(bootstrap: str, n: int = 200_000) -> float:
    """Messages/s of `n` records sent without a per-send await; the clock stops when the last ack is in."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 6, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        pending = []
        for i in range(n):
            pending.append(await producer.send(topic, PAYLOAD, key=str(i % 1000).encode()))
            if len(pending) >= 10_000:  # bound the futures held, not the pipeline
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def postgres_commit_rate(database_url: str, *, concurrency: int = 32, rows_per_commit: int = 1,
                               seconds: float = 5.0) -> float:
    """Rows/s committed by `concurrency` connections for `seconds`, `rows_per_commit` rows per transaction."""
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(plain_dsn(database_url), min_size=concurrency, max_size=concurrency)
    try:
        await pool.execute(f"CREATE TABLE {table} (id uuid primary key, body jsonb, created_at timestamptz default now())")
        single = f"INSERT INTO {table} (id, body) VALUES ($1, $2)"
        multi = f"INSERT INTO {table} (id, body) SELECT * FROM unnest($1::uuid[], $2::jsonb[])"
        body = PAYLOAD.decode()
        stop_at = time.perf_counter() + seconds
        committed = 0

        async def worker() -> None:
            nonlocal committed
            async with pool.acquire() as conn:
                while time.perf_counter() < stop_at:
                    if rows_per_commit == 1:
                        await conn.execute(single, uuid.uuid4(), body)
                    else:
                        await conn.execute(multi, [uuid.uuid4() for _ in range(rows_per_commit)],
                                           [body] * rows_per_commit)
                    committed += rows_per_commit

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = committed / (time.perf_counter() - started)
        await pool.execute(f"DROP TABLE {table}")
        return rate
    finally:
        await pool.close()
