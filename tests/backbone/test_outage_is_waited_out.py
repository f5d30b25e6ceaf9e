"""A database outage is waited out: never a dead letter, every event handled once.

One test crashes a PostgreSQL of its own (durable, as `make run` starts it) in the middle of a stream;
the other has a handler fail with ``57P03 cannot_connect_now`` (a server in recovery) for longer than
``max_attempts``, which used to dead-letter the record.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from asyncpg.exceptions import CannotConnectNowError
from leadbridge_devstack.postgres import PostgresCluster
from leadbridge_events.db import create_schema
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from .conftest import Backbone
from .test_consumer_runner import activity, make_runner, wait_for
from .test_failures import wrapped

pytestmark = pytest.mark.integration


async def dead_letters(kafka_bootstrap: str, dlq_topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(dlq_topic, 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def handled(bb: Backbone) -> int:
    """How many distinct events took effect; -1 while the test's own pool still holds a connection the crash
    dropped (SQLAlchemy invalidates it on that error, so the next call reconnects)."""
    try:
        async with bb.engine.connect() as conn:
            return (await conn.execute(select(func.count(func.distinct(bb.effects.c.event_id))))).scalar_one()
    except DBAPIError as exc:
        if exc.connection_invalidated:
            return -1
        raise


async def test_a_postgres_crash_mid_stream_dead_letters_nothing(own_postgres, producer, kafka_bootstrap, topic,
                                                               unique_name):
    bb = Backbone(own_postgres.url, unique_name)
    await create_schema(bb.engine, bb.metadata)

    async def handler(event, ctx):
        await ctx.session.execute(bb.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                             seq=int(event.data.activity_id)))

    runner = make_runner(bb, producer, kafka_bootstrap, topic, unique_name, handler, max_attempts=2,
                         max_backoff_seconds=0.5)
    task = asyncio.create_task(runner.run())
    try:
        await runner.wait_assigned()
        leads = [f"lead-{uuid.uuid4()}" for _ in range(20)]
        events = [activity(lead, seq) for seq in range(10) for lead in leads]
        for e in events[:100]:
            await producer.send(e, topic=topic.name)
        await wait_for(lambda: _at_least(handled(bb), 20))
        crash = asyncio.create_task(asyncio.to_thread(_crash_and_restart, own_postgres))
        for e in events[100:]:
            await producer.send(e, topic=topic.name)
            await asyncio.sleep(0.005)
        await crash
        await wait_for(lambda: _at_least(handled(bb), len(events)), timeout=60)
    finally:
        runner.stop()
        await task
    await bb.engine.dispose()  # drop any pooled connection the crash closed
    async with bb.engine.connect() as conn:
        rows = (await conn.execute(select(func.count()).select_from(bb.effects))).scalar_one()
    await bb.engine.dispose()
    assert rows == len(events), "every event applied exactly once"
    assert await dead_letters(kafka_bootstrap, topic.dlq) == 0


def _crash_and_restart(cluster: PostgresCluster) -> None:
    import time

    cluster.stop("immediate")  # as a crash: connections drop, recovery replays the WAL on start
    time.sleep(1.5)  # longer than max_attempts x backoff: the old runner dead-lettered records here
    cluster.restart()


async def _at_least(coro, n: int) -> bool:
    return (await coro) >= n


async def test_cannot_connect_now_for_longer_than_max_attempts_is_not_dead_lettered(
    backbone, producer, kafka_bootstrap, topic, unique_name
):
    failures_left = {"n": 8}
    attempts: list[str] = []

    async def handler(event, ctx):
        attempts.append(event.data.kind)
        if event.data.kind == "during-recovery" and failures_left["n"] > 0:
            failures_left["n"] -= 1
            raise wrapped(CannotConnectNowError("the database system is in recovery mode"))
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                   seq=int(event.data.activity_id)))

    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler, max_attempts=3,
                         max_backoff_seconds=0.1)
    task = asyncio.create_task(runner.run())
    lead = f"lead-{uuid.uuid4()}"
    await producer.send(activity(lead, 1, kind="during-recovery"), topic=topic.name)
    await producer.send(activity(lead, 2, kind="after"), topic=topic.name)
    try:
        await wait_for(lambda: _at_least(handled(backbone), 2))
    finally:
        runner.stop()
        await task
    assert attempts.count("during-recovery") == 9, "retried past max_attempts until the database was back"
    async with backbone.engine.connect() as conn:
        seqs = (await conn.execute(select(backbone.effects.c.seq).order_by(backbone.effects.c.id))).scalars().all()
    assert seqs == [1, 2], "handled once each, in partition order"
    assert await dead_letters(kafka_bootstrap, topic.dlq) == 0
