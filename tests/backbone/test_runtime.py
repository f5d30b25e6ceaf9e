"""ServiceRuntime against the real broker and database: a consumer that dies is rebuilt and carries on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_events.runtime import ServiceRuntime
from leadbridge_events.settings import BackboneSettings

from .samples import activity_handlers
from .test_consumer_runner import activity, count_effects, wait_for

pytestmark = pytest.mark.integration


async def test_a_crashed_consumer_is_restarted(backbone, producer, kafka_bootstrap, topic, unique_name,
                                               fresh_database_url, monkeypatch):
    built = 0
    original = ServiceRuntime._new_runner

    def first_one_crashes(self):
        nonlocal built
        runner = original(self)
        built += 1
        if built == 1:
            async def crash() -> None:
                raise RuntimeError("the Kafka client died")
            runner.run = crash
        return runner

    monkeypatch.setattr(ServiceRuntime, "_new_runner", first_one_crashes)

    async def handler(event, ctx):
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id))

    settings = BackboneSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url)
    runtime = ServiceRuntime(name=unique_name, settings=settings, metadata=backbone.metadata,
                             handlers=activity_handlers(handler), topics=[topic.name], group_id=unique_name, engine=backbone.engine)
    await runtime.start()
    try:
        await wait_for(lambda: _true(runtime.consumer_failures == 1 and built == 2))
        assert (await runtime.ready())["kafka"] == "ok", "the restarted consumer is running"
        lead = f"lead-{uuid.uuid4()}"
        await producer.send(activity(lead, 1), topic=topic.name)
        await wait_for(lambda: _ge(count_effects(backbone), 1))
    finally:
        await asyncio.wait_for(runtime.stop(), 30)


async def _true(value: bool) -> bool:
    return value


async def _ge(coro, n):
    return (await coro) >= n
