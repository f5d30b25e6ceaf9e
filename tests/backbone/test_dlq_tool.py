"""`leadbridge-dlq` against the real broker and database: a dead letter listed, replayed after a fix, consumed;
another discarded with a reason; a parked outbox row republished."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_contracts.topics import Topic
from leadbridge_events.admin import ensure_topics
from leadbridge_events.consumer import PoisonEvent
from leadbridge_events.dlq import DLQ_ACTIONS
from leadbridge_events.dlq_cli import run
from leadbridge_events.outbox import add_to_outbox
from leadbridge_events.relay import OutboxRelay
from leadbridge_events.settings import BackboneSettings
from leadbridge_events.testing import collect_records
from sqlalchemy import select

from .test_consumer_runner import activity, count_effects, make_runner, wait_for

pytestmark = pytest.mark.integration


async def dlq(settings: BackboneSettings, *argv: str) -> list[str]:
    lines: list[str] = []
    assert await run(list(argv), settings=settings, out=lines.append) == 0
    return lines


async def test_a_dead_letter_is_listed_replayed_after_a_fix_and_consumed(
    backbone, producer, kafka_bootstrap, topic, unique_name, fresh_database_url
):
    settings = BackboneSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url)
    fixed = asyncio.Event()

    async def handler(event, ctx):
        if event.data.kind == "needs-fix" and not fixed.is_set():
            raise PoisonEvent("handler cannot apply kind needs-fix yet")
        await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id,
                                                                   seq=int(event.data.activity_id)))

    runner = make_runner(backbone, producer, kafka_bootstrap, topic, unique_name, handler)
    task = asyncio.create_task(runner.run())
    lead = f"lead-{uuid.uuid4()}"
    poisoned, unwanted = activity(lead, 1, kind="needs-fix"), activity(lead, 2, kind="needs-fix")
    try:
        await producer.send(poisoned, topic=topic.name)
        await producer.send(unwanted, topic=topic.name)
        await collect_records(kafka_bootstrap, [topic.dlq], until=lambda m: len(m) >= 2)

        listed = await dlq(settings, "list", topic.name)
        assert listed[0] == f"{topic.dlq}: 2 open"
        assert f"event={poisoned.id}" in listed[1] and "reason=poison" in listed[1]
        assert f"source={topic.name}/" in listed[1] and "type=lead-activity-recorded" in listed[1]
        assert "example.com" not in "\n".join(listed), "no personal data"
        shown = await dlq(settings, "show", topic.dlq, "0")
        assert f"ce_id: {poisoned.id}" in shown and "dlq_reason: poison" in shown and "status: open" in shown

        fixed.set()  # "the fix is deployed"
        replayed = await dlq(settings, "replay", topic.name, "--offset", "0")
        assert replayed[-1] == "1 replayed"
        await wait_for(lambda: _has(count_effects(backbone, event_id=poisoned.id)), timeout=30)

        discarded = await dlq(settings, "discard", topic.name, "--all", "--reason", "duplicate of a CRM import")
        assert discarded[-1] == "1 discarded"
        assert (await dlq(settings, "list", topic.name))[0] == f"{topic.dlq}: 0 open"
    finally:
        runner.stop()
        await task

    assert await count_effects(backbone, event_id=unwanted.id) == 0
    again = await collect_records(kafka_bootstrap, [topic.name], match=lambda r: dict(r.headers)["ce_id"]
                                  == poisoned.id.encode(), until=lambda m: len(m) >= 2)
    assert not any(k.startswith("dlq_") for k, _ in again[1].headers), "replayed without the dlq_* headers"
    assert again[1].value == again[0].value and again[1].key == again[0].key
    from leadbridge_events.db import make_engine

    engine = make_engine(fresh_database_url)
    async with engine.connect() as conn:
        actions = (await conn.execute(select(DLQ_ACTIONS.c.action, DLQ_ACTIONS.c.event_id, DLQ_ACTIONS.c.reason)
                                      .order_by(DLQ_ACTIONS.c.id))).all()
    await engine.dispose()
    assert [tuple(a) for a in actions] == [("replayed", poisoned.id, None),
                                          ("discarded", unwanted.id, "duplicate of a CRM import")]


async def test_a_parked_outbox_row_is_republished_after_its_topic_exists(
    backbone, producer, kafka_bootstrap, unique_name, fresh_database_url
):
    settings = BackboneSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url)
    late = Topic(f"{unique_name}-late", ("lead-activity-recorded",), partitions=1)
    event = activity(f"lead-{uuid.uuid4()}", 1)
    async with backbone.sessions() as session, session.begin():
        await add_to_outbox(session, backbone.outbox, event, topic=late.name)
    relay = OutboxRelay(backbone.engine, backbone.outbox, producer, retry_backoff=0.05, max_backoff=0.1,
                        park_after_attempts=2)
    task = asyncio.create_task(relay.run())
    try:
        async def parked() -> bool:
            return any(f"event={event.id}" in line for line in await dlq(settings, "parked", backbone.outbox.schema))

        await wait_for(parked, timeout=30)
        assert "unknown topic" in (await dlq(settings, "parked"))[-1]
        await ensure_topics(kafka_bootstrap, [late], with_dlq=False)  # "the fix"
        out = await dlq(settings, "republish-parked", backbone.outbox.schema, "--all")
        assert out[0].startswith("1 parked rows")
        [record] = await collect_records(kafka_bootstrap, [late.name], until=lambda m: len(m) >= 1)
        assert dict(record.headers)["ce_id"] == event.id.encode()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _has(coro) -> bool:
    return (await coro) == 1
