"""What becomes of an outbox row once the broker acknowledged it: deleted (the default), or kept and marked
``sent_at`` (``keep_sent``, ``OUTBOX_KEEP_SENT=true``). A parked row stays either way, for ``republish-parked``."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_contracts.topics import Topic
from leadbridge_events.admin import ensure_topics
from leadbridge_events.producer import EventProducer
from leadbridge_events.relay import OutboxRelay
from leadbridge_events.testing import collect_events
from sqlalchemy import func, select, update

from .test_consumer_runner import wait_for
from .test_outbox import write_events

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("keep_sent", [False, True], ids=["default-deletes", "keep-sent-marks"])
async def test_acknowledged_rows_are_deleted_unless_kept(backbone, kafka_bootstrap, unique_name, keep_sent):
    topic = Topic(f"{unique_name}-done", ("lead-activity-recorded",), partitions=2)
    await ensure_topics(kafka_bootstrap, [topic])
    ob = backbone.outbox
    leads = [f"lead-{i}-{uuid.uuid4().hex[:6]}" for i in range(2)]
    parked = (await write_events(backbone, topic, f"parked-{uuid.uuid4().hex[:6]}", [0]))[0]
    async with backbone.engine.begin() as conn:  # a row the relay gave up on: never published, never deleted
        await conn.execute(update(ob).where(ob.c.event_id == parked.id)
                           .values(parked_at=func.now(), park_reason="test"))
    events = [e for lead in leads for e in await write_events(backbone, topic, lead, range(3))]

    async def rows() -> list:
        async with backbone.engine.connect() as conn:
            return (await conn.execute(select(ob.c.event_id, ob.c.sent_at, ob.c.parked_at).order_by(ob.c.id))).all()

    async with EventProducer(kafka_bootstrap) as producer:
        relay = OutboxRelay(backbone.engine, ob, producer, keep_sent=keep_sent)
        task = asyncio.create_task(relay.run())
        try:
            async def done() -> bool:
                return all(r.sent_at is not None or r.parked_at is not None for r in await rows()) and (
                    keep_sent or len(await rows()) == 1)

            await wait_for(done, timeout=30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    published = await collect_events(kafka_bootstrap, [topic.name], lead_ids=leads, count=len(events))
    assert [e.id for e in published if e.lead_id == leads[0]] == [e.id for e in events[:3]], "in order per lead"
    assert sorted(e.id for e in published) == sorted(e.id for e in events), "every row published, once"
    left = await rows()
    assert [r.event_id for r in left if r.parked_at is not None] == [parked.id], "the parked row stays"
    if keep_sent:
        assert sorted(r.event_id for r in left if r.sent_at is not None) == sorted(e.id for e in events)
    else:
        assert len(left) == 1, "every acknowledged row is deleted"
