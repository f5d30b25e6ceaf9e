"""The runner commits offsets off the critical path: the next fetch is handled while the previous fetch's offset
commit is in flight, and still only offsets whose transactions committed are ever committed (issue 16)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from .test_consumer_runner import _ge, activity, count_effects, make_runner, wait_for

pytestmark = pytest.mark.integration


async def _committed(kafka_bootstrap: str, group: str, topic) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([(await consumer.committed(TopicPartition(topic.name, p))) or 0 for p in range(topic.partitions)])
    finally:
        await consumer.stop()


async def _handler(backbone):
    async def handler(event, ctx):
        await ctx.session.execute(backbone.effects.insert().values(
            event_id=event.id, lead_id=event.lead_id, seq=int(event.data.activity_id)))
    return handler


def _gate_commits(runner) -> tuple[asyncio.Event, list[dict]]:
    """Hold every offset commit of ``runner`` until the returned event is set; the offsets asked for, in order."""
    gate = asyncio.Event()
    asked: list[dict] = []
    commit = runner._consumer.commit

    async def gated(offsets=None):
        asked.append(dict(offsets or {}))
        await gate.wait()
        return await commit(offsets)

    runner._consumer.commit = gated
    return gate, asked


async def _publish(producer, topic, event) -> None:
    await producer.send_many_raw([(topic.name, event.lead_id.encode(), event.kafka_value(), event.kafka_headers())])


async def _running_with_gated_commits(backbone, producer, kafka_bootstrap, topic, unique_name):
    """A batching runner whose offset commits wait for the gate, running, and lead-a's event published."""
    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, await _handler(backbone),
                         batch_size=500, batch_wait_ms=50)
    gate, asked = _gate_commits(runner)
    task = asyncio.create_task(runner.run())
    await runner.wait_assigned()
    await _publish(producer, topic, activity("lead-a", 1))
    return runner, gate, asked, task


async def test_the_next_fetch_is_handled_while_an_offset_commit_is_in_flight(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    runner, gate, asked, task = await _running_with_gated_commits(backbone, producer, kafka_bootstrap, topic,
                                                                  unique_name)
    await wait_for(lambda: _ge(count_effects(backbone), 1))
    await wait_for(lambda: _ge(_len(asked), 1))  # its offset commit is in flight, held
    await _publish(producer, topic, activity("lead-b", 2))
    await wait_for(lambda: _ge(count_effects(backbone), 2), timeout=10)  # handled meanwhile: not behind the commit
    assert await _committed(kafka_bootstrap, unique_name, topic) == 0  # nothing committed yet: the gate holds it
    gate.set()
    await wait_for(lambda: _ge(_committed(kafka_bootstrap, unique_name, topic), 2))
    runner.stop()
    await task
    assert runner.stats.commits <= runner.stats.fetches
    # every commit asked only for offsets past records whose transaction had committed: 1, then both
    assert [sum(o.offset for o in offsets.values()) for offsets in asked][:2] == [1, 2]


async def test_stop_waits_for_the_commit_in_flight_and_commits_the_rest(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    runner, gate, asked, task = await _running_with_gated_commits(backbone, producer, kafka_bootstrap, topic,
                                                                  unique_name)
    await wait_for(lambda: _ge(_len(asked), 1))
    await _publish(producer, topic, activity("lead-b", 2))
    await wait_for(lambda: _ge(count_effects(backbone), 2))
    runner.stop()
    await asyncio.sleep(0.3)
    assert not task.done()  # still committing
    gate.set()
    await asyncio.wait_for(task, 15)
    assert await _committed(kafka_bootstrap, unique_name, topic) == 2


async def test_a_failed_offset_commit_still_stops_the_runner(backbone, producer, kafka_bootstrap, topic, unique_name):
    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, await _handler(backbone),
                         batch_size=500, batch_wait_ms=50)

    async def failing(offsets=None):
        raise KafkaConnectionError("broker away")

    runner._consumer.commit = failing
    task = asyncio.create_task(runner.run())
    await runner.wait_assigned()
    await _publish(producer, topic, activity("lead-a", 1))
    with pytest.raises(KafkaConnectionError):  # as an awaited commit raised it: the runtime restarts the runner
        await asyncio.wait_for(task, 15)
    assert await count_effects(backbone) == 1  # the transaction committed; its offset did not (redelivered, deduped)


async def _len(items: list) -> int:
    return len(items)


async def test_offset_commits_are_spaced_by_the_commit_interval_and_the_first_goes_at_once(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, await _handler(backbone),
                         batch_size=500, batch_wait_ms=20, commit_interval_ms=1000)
    gate, asked = _gate_commits(runner)
    gate.set()  # commits go through; only counted
    asked_at: list[float] = []
    counted = runner._consumer.commit

    async def timed(offsets=None):
        asked_at.append(asyncio.get_running_loop().time())
        return await counted(offsets)

    runner._consumer.commit = timed
    task = asyncio.create_task(runner.run())
    await runner.wait_assigned()
    for i in range(6):  # six fetches of one record each, 0.1 s apart: well within one interval
        await _publish(producer, topic, activity(f"lead-{i}", i))
        handled_at = asyncio.get_running_loop().time()
        await wait_for(lambda i=i: _ge(count_effects(backbone), i + 1))
        if i == 0:
            await wait_for(lambda: _ge(_len(asked_at), 1))
            assert asked_at[0] - handled_at < 0.9  # the first commit after a quiet spell is not held back
        await asyncio.sleep(0.1)
    assert len(asked) <= 2  # one at once, the next one an interval later: not one per fetch
    runner.stop()
    await task
    assert await _committed(kafka_bootstrap, unique_name, topic) == 6  # the close commits the rest at once
