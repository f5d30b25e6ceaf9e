"""No head-of-line blocking in the relay: a row that fails for its own sake is parked, the rows after it go on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_events import metrics
from leadbridge_events.outbox import add_to_outbox
from leadbridge_events.relay import OutboxRelay
from leadbridge_events.testing import collect_records
from sqlalchemy import func, select

from .test_consumer_runner import activity, wait_for

pytestmark = pytest.mark.integration


async def parked_rows(backbone) -> list:
    ob = backbone.outbox
    async with backbone.engine.connect() as conn:
        return (await conn.execute(select(ob.c.id, ob.c.topic, ob.c.attempts, ob.c.park_reason)
                                   .where(ob.c.parked_at.is_not(None)).order_by(ob.c.id))).all()


async def waiting_rows(backbone) -> int:
    ob = backbone.outbox
    async with backbone.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(ob)
                                   .where(ob.c.sent_at.is_(None), ob.c.parked_at.is_(None)))).scalar_one()


async def test_an_oversized_row_and_an_unknown_topic_are_parked_and_the_rows_after_them_go_out_in_order(
    backbone, producer, kafka_bootstrap, topic
):
    lead = f"lead-{uuid.uuid4()}"
    good = [activity(lead, seq) for seq in range(10)]
    too_large = activity(lead, 100)
    lost_topic = activity(lead, 101)
    async with backbone.sessions() as session, session.begin():
        for e in good[:5]:
            await add_to_outbox(session, backbone.outbox, e, topic=topic.name)
        await add_to_outbox(session, backbone.outbox, too_large, topic=topic.name)
        await add_to_outbox(session, backbone.outbox, lost_topic, topic=f"{topic.name}-deleted")
        for e in good[5:]:
            await add_to_outbox(session, backbone.outbox, e, topic=topic.name)
        # bigger than the producer's max_request_size (1 MiB): it can never be published as it is
        await session.execute(backbone.outbox.update().where(backbone.outbox.c.event_id == too_large.id)
                              .values(value=b"x" * (2 * 1024 * 1024)))

    relay = OutboxRelay(backbone.engine, backbone.outbox, producer, retry_backoff=0.05, max_backoff=0.2,
                        park_after_attempts=3)
    task = asyncio.create_task(relay.run())
    try:
        await wait_for(lambda: _zero(waiting_rows(backbone)), timeout=60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    parked = await parked_rows(backbone)
    assert [(p.topic, p.attempts) for p in parked] == [(topic.name, 3), (f"{topic.name}-deleted", 3)]
    assert "MessageSizeTooLargeError" in parked[0].park_reason
    assert "unknown topic" in parked[1].park_reason
    records = await collect_records(kafka_bootstrap, [topic.name], match=lambda r: r.key == lead.encode(),
                                    until=lambda m: len(m) >= len(good))
    ids = [dict(r.headers)["ce_id"].decode() for r in records]
    assert ids == [e.id for e in good], "every good row published once, in order, around the parked ones"
    await relay._measure_backlog()
    assert metrics.OUTBOX_PARKED.labels(backbone.outbox.schema)._value.get() == 2
    assert metrics.OUTBOX_BACKLOG.labels(backbone.outbox.schema)._value.get() == 0


async def _zero(coro) -> bool:
    return (await coro) == 0
