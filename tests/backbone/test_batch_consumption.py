"""Batch consumption keeps the runner's guarantees: per-lead order, exactly-once effects and outbox rows, a
poison record among good ones dead-lettered alone, a connection lost or a PostgreSQL crash mid-batch
retried to exactly one effect per event."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from aiokafka.partitioner import murmur2
from leadbridge_events.consumer import PoisonEvent
from leadbridge_events.db import create_schema
from leadbridge_events.testing import collect_records
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from .conftest import Backbone
from .test_consumer_runner import _ge, activity, count_effects, make_runner, wait_for
from .test_outage_is_waited_out import _crash_and_restart, dead_letters, handled

pytestmark = pytest.mark.integration


async def _publish_interleaved(producer, topic, leads: list[str], per_lead: int) -> list:
    events = [activity(lead, i) for i in range(per_lead) for lead in leads]
    await producer.send_many_raw((topic.name, e.lead_id.encode(), e.kafka_value(), e.kafka_headers()) for e in events)
    return events


def leads_on_partitions(topic, partitions: int, per_partition: int = 1) -> list[str]:
    """Lead ids whose records land on ``partitions`` different partitions of ``topic``, ``per_partition`` each
    (the producer's partitioner: murmur2 of the key), so that one fetch returns several partitions."""
    found: dict[int, list[str]] = {}
    while sum(len(v) for v in found.values()) < partitions * per_partition:
        lead = f"lead-{uuid.uuid4()}"
        p = (murmur2(lead.encode()) & 0x7FFFFFFF) % topic.partitions
        if len(found.get(p, [])) < per_partition and (p in found or len(found) < partitions):
            found.setdefault(p, []).append(lead)
    return [lead for leads in found.values() for lead in leads]


def partition_of(topic, lead: str) -> int:
    return (murmur2(lead.encode()) & 0x7FFFFFFF) % topic.partitions


async def _effects_by_lead(backbone) -> dict[str, list[int]]:
    async with backbone.engine.connect() as conn:
        rows = (await conn.execute(select(backbone.effects.c.lead_id, backbone.effects.c.seq)
                                   .order_by(backbone.effects.c.id))).all()
    out: dict[str, list[int]] = {}
    for lead, seq in rows:
        out.setdefault(lead, []).append(seq)
    return out


@pytest.mark.parametrize("with_batch_handler", [False, True])
async def test_batches_keep_order_per_lead_and_apply_each_event_once(
        backbone, producer, kafka_bootstrap, topic, unique_name, with_batch_handler):
    batch_sizes: list[int] = []
    partitions_per_batch: list[int] = []

    async def handler(event, ctx):
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                   seq=int(event.data.activity_id)))
        await ctx.emit(activity(event.lead_id, int(event.data.activity_id), kind="echo"), topic=topic.name + "-out")

    async def batch_handler(events, ctx):
        batch_sizes.append(len(events))
        partitions_per_batch.append(len({ctx.records[e.id].partition for e in events}))
        await ctx.session.execute(backbone.effects.insert(), [
            {"event_id": e.id, "lead_id": e.lead_id, "seq": int(e.data.activity_id)} for e in events])
        for e in events:
            await ctx.emit(activity(e.lead_id, int(e.data.activity_id), kind="echo"), topic=topic.name + "-out")

    leads = leads_on_partitions(topic, 3, per_partition=2)  # every fetch returns records of several partitions
    events = await _publish_interleaved(producer, topic, leads, per_lead=20)
    for e in events[::7]:  # redeliveries, some inside the same batch as the original
        await producer.send(e, topic=topic.name)
    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler, batch_size=50,
                         batch=batch_handler if with_batch_handler else None)
    task = asyncio.create_task(runner.run())
    await wait_for(lambda: _ge(count_effects(backbone), len(events)))
    await asyncio.sleep(0.5)
    runner.stop()
    await task
    assert await count_effects(backbone) == len(events)  # redeliveries changed nothing
    assert await _effects_by_lead(backbone) == {lead: list(range(20)) for lead in leads}
    async with backbone.engine.connect() as conn:
        staged = (await conn.execute(select(backbone.outbox.c.key, backbone.outbox.c.value)
                                     .order_by(backbone.outbox.c.id))).all()
    assert len(staged) == len(events)  # one outbox row per event handled, none for a redelivery
    for lead in leads:
        seqs = [int(json.loads(v)["activity_id"]) for k, v in staged if k == lead]
        assert seqs == list(range(20))  # in the outbox in the order handled
    if with_batch_handler:
        assert max(batch_sizes) > 1
        assert max(partitions_per_batch) > 1  # one transaction for the partitions of a fetch, not one each


async def test_a_poison_record_in_a_batch_is_dead_lettered_alone(backbone, producer, kafka_bootstrap, topic,
                                                                  unique_name):
    """Good records of two partitions and one poison record in one batch: only the poison one is dead-lettered,
    every other one applied once, in order."""
    async def handler(event, ctx):
        if event.data.kind == "poison":
            raise PoisonEvent("never applicable")
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                   seq=int(event.data.activity_id)))

    poisoned, other = leads_on_partitions(topic, 2)
    events = [activity(lead, i, kind="poison" if lead == poisoned and i == 5 else "visit")
              for i in range(12) for lead in (poisoned, other)]
    await producer.send_many_raw((topic.name, e.lead_id.encode(), e.kafka_value(), e.kafka_headers()) for e in events)
    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler, batch_size=100)
    task = asyncio.create_task(runner.run())
    dead = await collect_records(kafka_bootstrap, [topic.dlq], match=lambda r: r.key in (poisoned.encode(),
                                                                                           other.encode()),
                                 until=lambda m: len(m) >= 1)
    await wait_for(lambda: _ge(count_effects(backbone), 23))
    await asyncio.sleep(0.3)
    runner.stop()
    await task
    assert [dict(r.headers)["dlq_reason"] for r in dead] == [b"poison"]
    assert dict(dead[0].headers)["ce_id"] == events[10].id.encode()
    assert await _effects_by_lead(backbone) == {poisoned: [i for i in range(12) if i != 5], other: list(range(12))}
    assert await dead_letters(kafka_bootstrap, topic.dlq) == 1


async def test_a_fetch_across_partitions_is_one_transaction_and_one_offset_commit(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    seen: list[set[int]] = []

    async def batch_handler(events, ctx):
        seen.append({ctx.records[e.id].partition for e in events})
        await ctx.session.execute(backbone.effects.insert(), [
            {"event_id": e.id, "lead_id": e.lead_id, "seq": int(e.data.activity_id)} for e in events])

    async def handler(event, ctx):
        raise AssertionError("the batch handler handles every event here")

    leads = leads_on_partitions(topic, 4, per_partition=3)
    events = await _publish_interleaved(producer, topic, leads, per_lead=25)  # 300 records, all partitions
    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler, batch=batch_handler,
                         batch_size=1000)
    task = asyncio.create_task(runner.run())
    await wait_for(lambda: _ge(count_effects(backbone), len(events)))
    runner.stop()
    await task
    assert await _effects_by_lead(backbone) == {lead: list(range(25)) for lead in leads}
    assert max(len(partitions) for partitions in seen) > 1  # a batch handler call spans partitions
    stats = runner.stats
    # a fetch (at most 1,000 records here) is one batch transaction and one offset commit, whatever its partitions
    assert stats.transactions == len(seen) <= stats.fetches
    assert 1 <= stats.commits <= stats.fetches
    # and /metrics shows them: one observation per batch transaction, of its size
    sample = REGISTRY.get_sample_value
    assert sample("leadbridge_consumer_batch_events_count", {"group": unique_name}) == len(seen)
    assert sample("leadbridge_consumer_batch_events_sum", {"group": unique_name}) == len(events)
    committed = await _committed_offsets(kafka_bootstrap, unique_name, topic)
    assert sum(committed.values()) == len(events)  # every partition's offset committed, to its end
    assert {p for p, off in committed.items() if off} == {partition_of(topic, lead) for lead in leads}


async def _committed_offsets(kafka_bootstrap: str, group: str, topic) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: (await consumer.committed(TopicPartition(topic.name, p))) or 0 for p in range(topic.partitions)}
    finally:
        await consumer.stop()


async def test_a_connection_lost_mid_batch_is_retried_to_exactly_one_effect(
        backbone, producer, kafka_bootstrap, topic, unique_name, fresh_database_url):
    killed = []
    admin = await asyncpg.connect(fresh_database_url.replace("postgresql+asyncpg://", "postgresql://"))

    async def handler(event, ctx):
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                   seq=int(event.data.activity_id)))
        if event.data.activity_id == "3" and not killed:  # halfway through the batch: the server goes away
            pid = (await ctx.session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            killed.append(pid)
            await admin.execute("SELECT pg_terminate_backend($1)", pid)

    lead = f"lead-{uuid.uuid4()}"
    events = [activity(lead, i) for i in range(8)]
    await producer.send_many_raw((topic.name, e.lead_id.encode(), e.kafka_value(), e.kafka_headers()) for e in events)
    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler, batch_size=100)
    task = asyncio.create_task(runner.run())
    try:
        await wait_for(lambda: _ge(count_effects(backbone), 8))
        await asyncio.sleep(0.5)
    finally:
        runner.stop()
        await task
        await admin.close()
    assert killed
    assert (await _effects_by_lead(backbone))[lead] == list(range(8))
    async with backbone.engine.connect() as conn:
        assert (await conn.execute(select(backbone.processed.c.event_id))).scalars().all().__len__() == 8


async def test_a_postgres_restart_mid_batch_applies_every_event_once(own_postgres, producer, kafka_bootstrap, topic,
                                                                      unique_name):
    bb = Backbone(own_postgres.url, unique_name)
    await create_schema(bb.engine, bb.metadata)
    crash: list[asyncio.Task] = []

    async def handler(event, ctx):
        await ctx.session.execute(bb.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                             seq=int(event.data.activity_id)))
        if event.data.activity_id == "4" and not crash:  # in the middle of a batch: the server crashes
            crash.append(asyncio.create_task(asyncio.to_thread(_crash_and_restart, own_postgres)))
            await asyncio.sleep(0.5)

    leads = leads_on_partitions(topic, 3, per_partition=2)  # the crashed batch spans partitions: each one waits
    events = await _publish_interleaved(producer, topic, leads, per_lead=10)
    runner = make_runner(bb, producer, kafka_bootstrap, topic, unique_name, handler, batch_size=100,
                         max_backoff_seconds=0.5)
    task = asyncio.create_task(runner.run())
    try:
        await wait_for(lambda: _handled_at_least(bb, len(events)), timeout=90)
        await crash[0]
    finally:
        runner.stop()
        await task
    by_lead = await _effects_by_lead(bb)
    await bb.engine.dispose()
    assert by_lead == {lead: list(range(10)) for lead in leads}  # once each, in order
    assert await dead_letters(kafka_bootstrap, topic.dlq) == 0


async def _handled_at_least(bb, n: int) -> bool:
    try:
        return await handled(bb) >= n
    except Exception:  # the test's own look is refused while the server is down
        return False
