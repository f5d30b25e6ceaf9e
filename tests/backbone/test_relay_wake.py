"""Waking the relay: in memory when it leads in this process (no NOTIFY, which serialises the cluster's commits
through their WAL flushes), a NOTIFY with the commit when it leads elsewhere; a rolled-back write wakes nothing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from leadbridge_events.outbox import add_to_outbox, lead_here, not_leading_here, notify_channel
from leadbridge_events.relay import OutboxRelay
from sqlalchemy.ext.asyncio import async_sessionmaker

from .test_consumer_runner import activity, wait_for
from .test_outbox import unsent

pytestmark = pytest.mark.integration


async def listening(backbone) -> tuple[asyncpg.Connection, list[str]]:
    """A plain connection LISTENing on the outbox's channel, and the notifications it got."""
    url = backbone.engine.url.set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    got: list[str] = []
    await conn.add_listener(notify_channel(backbone.outbox.schema), lambda *args: got.append(args[2]))
    return conn, got


async def write(engine, backbone, topic, *, commit: bool = True) -> None:
    async with async_sessionmaker(engine)() as session:
        await add_to_outbox(session, backbone.outbox, activity(f"lead-{uuid.uuid4().hex[:6]}", 0), topic=topic.name)
        await (session.commit() if commit else session.rollback())


async def test_a_write_in_the_leaders_process_wakes_it_in_memory_without_a_notify(backbone, producer, topic):
    listener, notified = await listening(backbone)
    # polling every minute: only a wake-up can make it publish within the test
    relay = OutboxRelay(backbone.engine, backbone.outbox, producer, poll_interval=60)
    task = asyncio.create_task(relay.run())
    try:
        async def leading():
            return relay.is_leader

        await wait_for(leading)
        await asyncio.sleep(0.2)  # the relay's first pass found nothing; it now waits for a wake-up
        await write(backbone.engine, backbone, topic)

        async def sent():
            return await unsent(backbone) == 0

        await wait_for(sent, timeout=10)
        await write(backbone.engine, backbone, topic, commit=False)  # rolled back: nothing to wake for
        await asyncio.sleep(0.3)
        assert notified == [], "the leader is in this process: no NOTIFY (its lock would serialise commits)"

        # as a writer in another process sees it (this process's relay not leading here): a NOTIFY, which the
        # relay LISTENs to
        not_leading_here(backbone.engine, backbone.outbox.schema, relay._wake_here)
        try:
            await write(backbone.engine, backbone, topic)
            await wait_for(sent, timeout=10)
        finally:
            lead_here(backbone.engine, backbone.outbox.schema, relay._wake_here)

        async def notified_once():
            return len(notified) == 1

        await wait_for(notified_once, timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await listener.close()
    # once the relay stopped, this process's writers NOTIFY again
    listener, notified = await listening(backbone)
    try:
        await write(backbone.engine, backbone, topic)

        async def notified_again():
            return len(notified) == 1

        await wait_for(notified_again, timeout=5)
    finally:
        await listener.close()
