"""A consumer killed after its database commit but before its offset commit: the redelivery changes nothing."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from pathlib import Path

import pytest
from leadbridge_events import metrics
from leadbridge_events.consumer import ConsumerRunner
from sqlalchemy import func, select

from .samples import activity_handlers
from .test_consumer_runner import activity, count_effects, wait_for

pytestmark = pytest.mark.integration


async def test_redelivery_after_a_crash_between_db_commit_and_offset_commit(
    backbone, producer, kafka_bootstrap, topic, unique_name, fresh_database_url
):
    lead = f"lead-{uuid.uuid4()}"
    first, second = activity(lead, 1), activity(lead, 2)
    await producer.send(first, topic=topic.name)
    await producer.send(second, topic=topic.name)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("crashing_consumer.py")),
        kafka_bootstrap, fresh_database_url, unique_name, topic.name, unique_name,
    )
    returncode = await asyncio.wait_for(proc.wait(), timeout=60)
    assert returncode == -signal.SIGKILL
    assert await count_effects(backbone) == 1, "the first event was applied before the crash"

    async def handler(event, ctx):
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id))

    duplicates = metrics.EVENTS_DUPLICATE.labels(unique_name, topic.name)
    before = duplicates._value.get()
    runner = ConsumerRunner(bootstrap_servers=kafka_bootstrap, group_id=unique_name, handlers=activity_handlers(handler),
                            topics=[topic.name],
                            sessions=backbone.sessions, processed=backbone.processed, outbox=backbone.outbox,
                            producer=producer)
    task = asyncio.create_task(runner.run())

    async def both_applied():
        return await count_effects(backbone) >= 2

    await wait_for(both_applied)
    await asyncio.sleep(0.5)
    runner.stop()
    await task
    assert await count_effects(backbone, event_id=first.id) == 1, "redelivered event changed nothing"
    assert await count_effects(backbone, event_id=second.id) == 1
    assert duplicates._value.get() - before == 1, "the first event was redelivered and skipped"
    async with backbone.engine.connect() as conn:
        claimed = (await conn.execute(select(func.count()).select_from(backbone.processed))).scalar_one()
    assert claimed == 2
