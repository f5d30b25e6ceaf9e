"""The relay's leadership rides on one database connection: when that connection dies, leadership goes with it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from leadbridge_events.relay import OutboxRelay
from sqlalchemy import text

from .test_consumer_runner import wait_for
from .test_outbox import unsent, write_events

pytestmark = pytest.mark.integration


async def kill_lock_holders(backbone) -> int:
    """Terminate the backends holding advisory locks in this test's database (as a failover or a DBA would)."""
    async with backbone.engine.connect() as conn:
        pids = (await conn.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ))).scalars().all()
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await conn.commit()
    return len(pids)


async def test_a_relay_whose_leader_connection_dies_leads_again_and_listens_again(backbone, producer, topic):
    # a long poll interval: rows written after the failover only go out promptly if NOTIFY is listened to again
    relay = OutboxRelay(backbone.engine, backbone.outbox, producer, poll_interval=120, retry_backoff=0.1)
    task = asyncio.create_task(relay.run())
    try:
        async def leading():
            return relay.is_leader

        await wait_for(leading)
        await asyncio.sleep(0.2)  # listening
        assert await kill_lock_holders(backbone) == 1

        async def lock_held_again():
            async with backbone.engine.connect() as conn:
                return bool((await conn.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ))).scalar())

        await wait_for(lock_held_again, timeout=20)
        await asyncio.sleep(0.3)
        await write_events(backbone, topic, f"lead-{uuid.uuid4()}", range(3))

        async def drained():
            return await unsent(backbone) == 0

        await wait_for(drained, timeout=20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_relay_that_lost_its_lock_stops_relaying_so_only_one_relay_is_active(backbone, producer):
    first = OutboxRelay(backbone.engine, backbone.outbox, producer, poll_interval=0.2, retry_backoff=0.1)
    first_task = asyncio.create_task(first.run())
    second_task = None
    try:
        async def first_leads():
            return first.is_leader

        await wait_for(first_leads)
        await kill_lock_holders(backbone)
        second = OutboxRelay(backbone.engine, backbone.outbox, producer, poll_interval=0.2, retry_backoff=0.1)
        second_task = asyncio.create_task(second.run())
        both_seen = False
        for _ in range(40):  # 4 s: the first either regains the lock or the second takes it; never both
            await asyncio.sleep(0.1)
            both_seen = both_seen or (first.is_leader and second.is_leader)
        assert not both_seen, "two relays of one schema were active at once"
        assert first.is_leader or second.is_leader
    finally:
        for t in (first_task, second_task):
            if t is not None:
                t.cancel()
        await asyncio.gather(*(t for t in (first_task, second_task) if t), return_exceptions=True)


async def advisory_locks(backbone) -> int:
    async with backbone.engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ))).scalar_one()


async def test_a_cancelled_relay_leaves_no_lock_behind_in_the_pool(backbone, producer):
    relay = OutboxRelay(backbone.engine, backbone.outbox, producer, poll_interval=0.2)
    task = asyncio.create_task(relay.run())

    async def leading():
        return relay.is_leader

    await wait_for(leading)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await advisory_locks(backbone) == 0, "a pooled connection still holds the relay lock"
