"""The transactional outbox: write an event in the same transaction as the state change, relay it later.

``add_to_outbox(session, outbox_table, event)`` inserts the event row inside the caller's transaction
(and notifies the relay on commit). ``OutboxRelay`` publishes unsent rows to Kafka in id order, and marks
them sent only after the broker acknowledged them: while Kafka is down rows wait; a relay crash between
publish and mark publishes a row twice, never zero times (consumers dedupe on the event id). One relay
per schema is active at a time (a PostgreSQL advisory lock), so per-lead order is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from . import metrics
from .envelope import Envelope
from .producer import EventProducer
from .topics import topic_for

log = logging.getLogger("leadbridge.outbox")


def _channel(schema: str) -> str:
    return f"outbox_{schema}".replace("-", "_")


async def add_to_outbox(session: AsyncSession, outbox: Table, event: Envelope[Any], topic: str | None = None) -> None:
    """Stage ``event`` for publication, atomically with whatever else ``session``'s transaction does.

    One round trip: the insert and the relay's wake-up (``pg_notify``, delivered on commit) in one statement.
    """
    inserted = (
        outbox.insert()
        .values(
            event_id=event.id,
            topic=topic or topic_for(event.type).name,
            key=event.lead_id,
            value=event.kafka_value(),
            headers={k: v.decode() for k, v in event.kafka_headers()},
        )
        .returning(outbox.c.id)
        .cte("staged")
    )
    await session.execute(select(func.pg_notify(_channel(outbox.schema or "public"), "")).select_from(inserted))


class OutboxRelay:
    """Publishes a schema's outbox to Kafka. Run ``run()`` as a background task; cancel to stop."""

    def __init__(self, engine: AsyncEngine, outbox: Table, producer: EventProducer, *, batch_size: int = 500,
                 poll_interval: float = 1.0, retry_backoff: float = 0.5, max_backoff: float = 5.0,
                 coalesce_seconds: float = 0.002) -> None:
        self._engine = engine
        self._outbox = outbox
        self._producer = producer
        self._batch = batch_size
        self._poll = poll_interval
        self._backoff = retry_backoff
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self.schema = outbox.schema or "public"
        self.is_leader = False
        self._coalesce = coalesce_seconds
        self._last_leader_check = float("-inf")

    async def run(self) -> None:
        gauges = asyncio.create_task(self._report_backlog_forever(), name=f"outbox-gauges-{self.schema}")
        try:
            await self._run()
        finally:
            gauges.cancel()
            await asyncio.gather(gauges, return_exceptions=True)

    async def _report_backlog_forever(self, interval: float = 5.0) -> None:
        """The backlog gauges, measured on their own clock: a publish blocked by a Kafka outage (the producer
        retries for as long as the broker is away) must not freeze the figures that alert on-call."""
        while True:
            with contextlib.suppress(Exception):
                await self._measure_backlog()
            await asyncio.sleep(interval)

    async def _run(self) -> None:
        while True:
            try:
                async with self._engine.connect() as leader:
                    try:
                        if await self._become_leader(leader):
                            driver = await self._listen(leader)
                            await self._relay_forever(driver)
                    finally:
                        if self.is_leader:
                            # The lock and the LISTEN belong to this session: close it rather than hand it
                            # back to the pool still holding them (or half dead).
                            self.is_leader = False
                            with contextlib.suppress(Exception):
                                await leader.invalidate()
                await asyncio.sleep(self._poll)  # another relay leads: try again later
            except asyncio.CancelledError:
                raise
            except Exception:  # database gone: retry, rows wait in the table
                log.exception("outbox relay error; retrying", extra={"schema": self.schema})
                self.is_leader = False
                await asyncio.sleep(self._backoff)

    async def _become_leader(self, conn: AsyncConnection) -> bool:
        got = (await conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": f"relay:{self.schema}"})).scalar()
        await conn.commit()
        self.is_leader = bool(got)
        return self.is_leader

    async def _listen(self, conn: AsyncConnection) -> Any:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        driver.add_termination_listener(lambda *_: self._wake.set())  # lost leadership: wake up and see
        await driver.add_listener(_channel(self.schema), lambda *_: self._wake.set())
        return driver

    async def _check_leadership(self, driver: Any) -> None:
        """Raise if the leader session (and with it the advisory lock and the LISTEN) is gone.

        ``is_closed()`` is free and the termination listener wakes the loop when the session dies; the
        round trip that proves the session alive runs at most once a second, not once per batch.
        """
        if driver.is_closed():
            raise ConnectionError("outbox relay lost its leader connection")
        now = asyncio.get_running_loop().time()
        if now - self._last_leader_check >= 1.0:
            async with asyncio.timeout(10.0):
                await driver.fetchval("SELECT 1")
            self._last_leader_check = now

    async def _relay_forever(self, driver: Any) -> None:
        backoff = self._backoff
        while True:
            await self._check_leadership(driver)  # never relay without the lock: one active relay per schema
            self._wake.clear()  # before reading: a NOTIFY (or a lost connection) from now on is not missed
            try:
                sent = await self.relay_once()
                backoff = self._backoff
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # Kafka down or slow: keep the rows, try again
                metrics.OUTBOX_PUBLISH_ERRORS.labels(self.schema).inc()
                log.warning("outbox publish failed, will retry: %s", exc, extra={"schema": self.schema})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if sent < self._batch:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
                # arrives as the event fires, and the relay would then outlive its service's shutdown
                try:
                    async with asyncio.timeout(self._poll):
                        await self._wake.wait()
                    await asyncio.sleep(self._coalesce)  # let a burst of commits share one batch
                except TimeoutError:
                    pass

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows in id order; returns how many were published."""
        ob = self._outbox
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(ob.c.id, ob.c.topic, ob.c.key, ob.c.value, ob.c.headers, ob.c.created_at)
                    .where(ob.c.sent_at.is_(None)).order_by(ob.c.id).limit(self._batch)
                )
            ).all()
            await conn.commit()
        if not rows:
            metrics.OUTBOX_BACKLOG.labels(self.schema).set(0)
            metrics.OUTBOX_OLDEST_AGE.labels(self.schema).set(0)
            return 0
        await self._producer.send_many_raw(
            (r.topic, r.key.encode(), r.value, [(k, v.encode()) for k, v in r.headers.items()]) for r in rows
        )
        async with self._engine.begin() as conn:
            await conn.execute(update(ob).where(ob.c.id.in_([r.id for r in rows])).values(sent_at=func.now()))
        metrics.OUTBOX_PUBLISHED.labels(self.schema).inc(len(rows))
        return len(rows)

    async def _measure_backlog(self) -> None:
        ob = self._outbox
        async with self._engine.connect() as conn:
            count, age = (await conn.execute(
                select(func.count(), func.extract("epoch", func.now() - func.min(ob.c.created_at)))
                .where(ob.c.sent_at.is_(None))
            )).one()
        metrics.OUTBOX_BACKLOG.labels(self.schema).set(count)
        metrics.OUTBOX_OLDEST_AGE.labels(self.schema).set(float(age or 0))

