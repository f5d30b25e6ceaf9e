"""How a runtime stops: on SIGTERM, on cancellation of its task, with a record in flight (issue 13's report).

A consumer written from docs/backbone.md got its event but, once its task was cancelled, logged "task did
not stop within 10 s", failed its offset commit and then ignored SIGTERM. A stop request of any kind --
SIGTERM, or the task cancelled, once or again while it stops -- must let the record in flight finish,
commit its offset, leave the group, and leave the process's signal handling as it found it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from leadbridge_events.runtime import ServiceRuntime
from leadbridge_events.settings import BackboneSettings

from .samples import activity_handlers
from .test_consumer_runner import activity

pytestmark = pytest.mark.integration


async def committed_offsets(bootstrap: str, group: str, topic: str) -> int:
    """The sum of the group's committed offsets over the topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # a fresh client knows no topic yet
            partitions = consumer.partitions_for_topic(topic) or set()
        from aiokafka.structs import TopicPartition

        total = 0
        for p in partitions:
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


def stuck_or_failed(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "did not stop" in r.getMessage() or "commit" in r.getMessage() and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("cancels", [1, 2], ids=["cancelled", "cancelled-twice"])
async def test_a_cancelled_runtime_finishes_the_record_in_flight_commits_and_restores_signals(
        backbone, producer, kafka_bootstrap, topic, unique_name, fresh_database_url, caplog, cancels):
    started, finished = asyncio.Event(), []

    async def slow_handler(event, ctx):  # e.g. a call to Slack that takes a second
        started.set()
        await asyncio.sleep(1.0)
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id))
        finished.append(event.id)

    settings = BackboneSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url)
    runtime = ServiceRuntime(name=unique_name, settings=settings, metadata=backbone.metadata,
                             handlers=activity_handlers(slow_handler), topics=[topic.name], group_id=unique_name,
                             engine=backbone.engine)
    before = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(runtime.run_forever())
    await producer.send(activity(f"lead-{uuid.uuid4()}", 1), topic=topic.name)
    await asyncio.wait_for(started.wait(), 60)

    began = time.monotonic()
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0.1)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    took = time.monotonic() - began

    assert finished, "the record in flight was finished, not cut off"
    assert await committed_offsets(kafka_bootstrap, unique_name, topic.name) == 1, "its offset is committed"
    assert took < 8, f"stopped in {took:.1f} s"
    assert not stuck_or_failed(caplog)
    assert signal.getsignal(signal.SIGTERM) == before, "SIGTERM is handled as before the runtime ran"
    assert signal.SIGTERM not in getattr(asyncio.get_running_loop(), "_signal_handlers", {})
