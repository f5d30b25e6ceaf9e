"""Rebalances against the real broker: a revoked partition's records are never handled or committed by the old owner."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_contracts.topics import Topic
from leadbridge_events.admin import ensure_topics

from .test_consumer_runner import activity, count_effects, make_runner, wait_for

pytestmark = pytest.mark.integration


async def test_no_record_is_handled_between_a_revoke_and_the_next_assignment(
    backbone, producer, kafka_bootstrap, unique_name
):
    topic = Topic(f"{unique_name}-one", ("lead-activity-recorded",), partitions=1)
    await ensure_topics(kafka_bootstrap, [topic])
    first_started, release = asyncio.Event(), asyncio.Event()
    handled_while_revoked: list[str] = []
    runners = {}

    def handler_for(name):
        async def handler(event, ctx):
            runner = runners[name]
            if runner._consumer._subscription.reassignment_in_progress and event.data.activity_id != "1":
                handled_while_revoked.append(f"{name}:{event.data.activity_id}")
            if name == "a" and event.data.activity_id == "1":
                first_started.set()
                await release.wait()
            await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                       seq=int(event.data.activity_id)))
        return handler

    opts = dict(heartbeat_interval_ms=300, session_timeout_ms=10000)
    runners["a"] = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler_for("a"), **opts)
    runners["b"] = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler_for("b"), **opts)
    lead = f"lead-{uuid.uuid4()}"
    for seq in range(1, 6):  # sent first, so that "a" fetches them all in one batch
        await producer.send(activity(lead, seq), topic=topic.name)
    task_a = asyncio.create_task(runners["a"].run())
    await asyncio.wait_for(first_started.wait(), 30)
    task_b = asyncio.create_task(runners["b"].run())  # a rebalance starts while "a" handles record 1
    try:
        async def a_is_rejoining():
            return runners["a"]._consumer._subscription.reassignment_in_progress

        await wait_for(a_is_rejoining)
        await asyncio.sleep(0.2)  # the revoke callback now waits for the record in flight
        release.set()

        async def all_applied():
            return await count_effects(backbone) >= 5

        await wait_for(all_applied, timeout=60)
    finally:
        release.set()
        for r in runners.values():
            r.stop()
        await asyncio.gather(task_a, task_b)
    assert handled_while_revoked == [], "records of a revoked partition were handled before it was reassigned"
