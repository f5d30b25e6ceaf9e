"""The transactional outbox across a broker outage: every row arrives; a deduplicating consumer applies each once."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest
from leadbridge_contracts.topics import Topic
from leadbridge_devstack.pytest_plugin import start_local_broker
from leadbridge_events import metrics
from leadbridge_events.admin import ensure_topics
from leadbridge_events.consumer import ConsumerRunner
from leadbridge_events.outbox import add_to_outbox
from leadbridge_events.producer import EventProducer
from leadbridge_events.relay import OutboxRelay
from sqlalchemy import func, select

from .samples import activity_handlers
from .test_consumer_runner import activity, wait_for
from .test_outbox_parking import parked_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker():
    """A broker of this test's own, so it can be stopped and started again."""
    broker, data = start_local_broker()
    yield broker
    broker.stop()
    shutil.rmtree(data, ignore_errors=True)


async def write_events(backbone, topic, lead, seqs):
    events = [activity(lead, s) for s in seqs]
    for e in events:
        async with backbone.sessions() as session, session.begin():  # state change + event, one transaction
            await session.execute(backbone.effects.insert().values(event_id=f"state-{e.id}", lead_id=lead, seq=-1))
            await add_to_outbox(session, backbone.outbox, e, topic=topic.name)
    return events


async def unsent(backbone) -> int:
    async with backbone.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(backbone.outbox)
                                   .where(backbone.outbox.c.sent_at.is_(None)))).scalar_one()


async def test_rows_wait_while_kafka_is_down_and_flow_when_it_returns(backbone, own_broker, unique_name):
    bootstrap = own_broker.bootstrap_servers
    topic = Topic(f"{unique_name}-outbox", ("lead-activity-recorded",), partitions=3)
    await ensure_topics(bootstrap, [topic])
    relay_producer = EventProducer(bootstrap, request_timeout_ms=3000, retry_backoff_ms=200)
    await relay_producer.start()
    relay = OutboxRelay(backbone.engine, backbone.outbox, relay_producer, retry_backoff=0.2, max_backoff=1.0)
    relay_task = asyncio.create_task(relay.run())
    leads = [f"lead-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    try:
        sent_before = [e for lead in leads for e in await write_events(backbone, topic, lead, range(0, 10))]

        async def drained():
            return await unsent(backbone) == 0

        await wait_for(drained)

        own_broker.stop()
        during = [e for lead in leads for e in await write_events(backbone, topic, lead, range(10, 30))]
        await asyncio.sleep(2.0)
        assert await unsent(backbone) == len(during), "rows wait in the outbox while Kafka is down"

        async def backlog_reported():  # what the outbox-backlog alert reads while Kafka is down
            return (metrics.OUTBOX_BACKLOG.labels(backbone.outbox.schema)._value.get() == len(during)
                    and metrics.OUTBOX_OLDEST_AGE.labels(backbone.outbox.schema)._value.get() > 0)

        await wait_for(backlog_reported, timeout=30)

        own_broker.start(log=lambda *_: None)
        await wait_for(drained, timeout=90)
        assert await parked_rows(backbone) == [], "Kafka being down is no row's fault: nothing is parked"
    finally:
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await relay_producer.stop()

    all_events = sent_before + during

    # a deduplicating consumer applies every event exactly once, in order per lead
    async def handler(event, ctx):
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                   seq=int(event.data.activity_id)))

    async with EventProducer(bootstrap) as producer:
        runner = ConsumerRunner(bootstrap_servers=bootstrap, group_id=unique_name, handlers=activity_handlers(handler),
                                topics=[topic.name],
                                sessions=backbone.sessions, processed=backbone.processed, producer=producer)
        task = asyncio.create_task(runner.run())

        async def all_applied():
            async with backbone.engine.connect() as conn:
                n = (await conn.execute(select(func.count()).select_from(backbone.effects)
                                        .where(backbone.effects.c.seq >= 0))).scalar_one()
            return n >= len(all_events)

        await wait_for(all_applied, timeout=60)
        await asyncio.sleep(0.5)
        runner.stop()
        await task

    async with backbone.engine.connect() as conn:
        rows = (await conn.execute(select(backbone.effects.c.event_id, backbone.effects.c.lead_id,
                                          backbone.effects.c.seq)
                                   .where(backbone.effects.c.seq >= 0).order_by(backbone.effects.c.id))).all()
    assert sorted(r.event_id for r in rows) == sorted(e.id for e in all_events), "every row arrived exactly once"
    for lead in leads:
        assert [r.seq for r in rows if r.lead_id == lead] == list(range(30)), "in order per lead"
