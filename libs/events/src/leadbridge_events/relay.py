"""The outbox relay: publishes a schema's unsent outbox rows to Kafka in id order (``outbox`` stages them).

Rows are done only after the broker acknowledged them: then they are deleted (``keep_sent``: marked
``sent_at`` and kept instead, e.g. for an audit). While Kafka is down rows wait; a relay crash between publish
and delete publishes a row twice, never zero times (consumers dedupe on the event id). One relay per schema is
active at a time (a PostgreSQL advisory lock), so per-lead order is kept.

Deleting is the default because an outbox is a queue, not a log (Kafka is the log): a kept row grows the table
for good, and marking it rewrote the whole row (its event, ~2 KB) as a new row version, in the WAL and on disk,
since ``sent_at`` is in the unsent-rows index's predicate; a delete writes a few bytes. In the 30,000-lead
backlog drain that was 27.5-28.8 -> 21.4-22.5 KiB of WAL per lead, and 0.81-0.88 -> 0.58-0.78 ms of
PostgreSQL CPU per lead (docs/benchmarks.md, fifth round).

No head-of-line blocking: a row that fails for its own sake -- a record larger than the producer's
``max_request_size``, a topic that does not exist -- has ``attempts`` counted and, after
``park_after_attempts`` passes, is *parked* (``parked_at``, ``park_reason``) and the rows after it go on;
``leadbridge_outbox_parked_rows`` and the ``LeadBridgeOutboxRowsParked`` alert report it and
``leadbridge-dlq republish-parked`` sends it again after a fix. Kafka being down is not a row's fault
(``failures.is_transient``): then every row waits and nothing is parked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import metrics
from .failures import describe, is_transient
from .locks import LockClass, try_session_lock
from .outbox import lead_here, not_leading_here, notify_channel
from .producer import EventProducer, acknowledged
from .tracing import publish_spans

log = logging.getLogger("leadbridge.outbox")


class OutboxRelay:
    """Publishes a schema's outbox to Kafka. Run ``run()`` as a background task; cancel to stop.

    Pipelined: a pass selects the unsent rows not already in flight (id order, on the leader session: one
    round trip), hands them to the producer without awaiting the broker, and goes on to the next NOTIFY while a
    task of its own awaits the batch's acknowledgements and then deletes its rows (``keep_sent``: marks them
    sent). Up to ``max_in_flight_batches`` batches are in flight; the producer keeps their order per partition.
    Rows are deleted only after the broker acknowledged them, in a commit that need not wait for its WAL flush
    (``synchronous_commit=off``: a delete lost in a database crash republishes the rows, which consumers
    dedupe). Any failure lets every batch in flight land, then the next pass is a serial one (``relay_once``:
    row by row on a record fault).
    """

    def __init__(self, engine: AsyncEngine, outbox: Table, producer: EventProducer, *, batch_size: int = 500,
                 poll_interval: float = 1.0, retry_backoff: float = 0.5, max_backoff: float = 5.0,
                 coalesce_seconds: float = 0.0, park_after_attempts: int = 5, max_in_flight_batches: int = 4,
                 keep_sent: bool = False) -> None:
        self._engine = engine
        self._outbox = outbox
        self._producer = producer
        self._batch = batch_size
        self._poll = poll_interval
        self._backoff = retry_backoff
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._wake_here = self._wake.set  # how this process's writers wake it while it leads (outbox.lead_here)
        self.schema = outbox.schema or "public"
        self.is_leader = False
        self._coalesce = coalesce_seconds  # a pause after a NOTIFY, for a burst to share a batch (0: none)
        self._last_leader_check = float("-inf")
        self._park_after = park_after_attempts
        self._known_topics: set[str] = set()
        self._max_flights = max(1, max_in_flight_batches)
        self._flights: collections.deque[tuple[list[int], asyncio.Task[None]]] = collections.deque()
        self._flying: set[int] = set()  # ids of the rows in flight: handed to the producer, not marked yet
        self._serial = False  # after a failure: the next pass is relay_once's (fault handling, parking)
        self._on_leader = asyncio.Lock()  # one statement at a time on the leader session: passes and marks
        # what becomes of acknowledged rows (ints only, inlined by ``_done``): deleted, or kept and marked
        self._done_sql = (f"UPDATE {outbox.fullname} SET sent_at = now() WHERE id = ANY('{{%s}}'::bigint[])"
                          if keep_sent else f"DELETE FROM {outbox.fullname} WHERE id = ANY('{{%s}}'::bigint[])")
        self._select = (f"SELECT id, topic, key, value, headers, attempts FROM {outbox.fullname} WHERE sent_at "
                        "IS NULL AND parked_at IS NULL AND NOT id = ANY($1::bigint[]) ORDER BY id LIMIT $2")

    def use_producer(self, producer: EventProducer) -> None:
        """Publish through ``producer`` from now on (the runtime replaces a producer that never connected)."""
        self._producer = producer

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
                            lead_here(self._engine, self.schema, self._wake_here)
                            await self._relay_forever(driver)
                    finally:
                        not_leading_here(self._engine, self.schema, self._wake_here)
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
        # the leader session is held for hours, mostly idle: no idle-session timeout may end it (PG 14+)
        await conn.execute(text("SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 "
                                "THEN set_config('idle_session_timeout', '0', false) END"))
        got = await try_session_lock(conn, LockClass.RELAY_LEADERSHIP, self.schema)
        await conn.commit()
        self.is_leader = got
        return self.is_leader

    async def _listen(self, conn: AsyncConnection) -> Any:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None  # an open connection always has its asyncpg connection
        driver.add_termination_listener(lambda *_: self._wake.set())  # lost leadership: wake up and see
        await driver.add_listener(notify_channel(self.schema), lambda *_: self._wake.set())
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
            async with self._on_leader, asyncio.timeout(10.0):
                await driver.fetchval("SELECT 1")
            self._last_leader_check = now

    async def _relay_forever(self, driver: Any) -> None:
        backoff = self._backoff
        try:
            while True:
                await self._check_leadership(driver)  # never relay without the lock: one active relay per schema
                self._wake.clear()  # before reading: a NOTIFY (or a lost connection) from now on is not missed
                try:
                    sent = await (self.relay_once() if self._serial else self._relay_pipelined(driver))
                    self._serial = False
                    backoff = self._backoff
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # Kafka down or slow: keep the rows, try again
                    await self._land_all()
                    self._serial = True
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
                        if self._coalesce:
                            await asyncio.sleep(self._coalesce)  # let a burst of commits share one batch
                    except TimeoutError:
                        pass
        finally:  # leadership lost or stopping: what is in flight is not marked; the next leader republishes it
            for _, task in self._flights:
                task.cancel()
            await asyncio.gather(*(task for _, task in self._flights), return_exceptions=True)
            self._flights.clear()
            self._flying.clear()

    async def _relay_pipelined(self, driver: Any) -> int:
        """Hand the next batch of unsent rows not in flight to the producer; a task marks it once acknowledged."""
        self._reap()
        if len(self._flights) >= self._max_flights:
            await asyncio.wait([self._flights[0][1]])
            self._reap()
        async with self._on_leader, asyncio.timeout(30.0):
            found = await driver.fetch(self._select, list(self._flying), self._batch)
        rows = [_Row(r["id"], r["topic"], r["key"], r["value"], _json(r["headers"]), r["attempts"]) for r in found]
        if not rows:
            if not self._flights:
                metrics.OUTBOX_BACKLOG.labels(self.schema).set(0)
                metrics.OUTBOX_OLDEST_AGE.labels(self.schema).set(0)
            return 0
        if {r.topic for r in rows} - self._known_topics:  # a topic seen first (or again): does it exist?
            self._known_topics = await self._producer.topics()  # raises while Kafka is away: rows wait
            if {r.topic for r in rows} - self._known_topics:
                raise RowNotPublished("a row's topic is not in the cluster")  # relay_once finds and counts it
        spans = contextlib.ExitStack()
        headers = spans.enter_context(publish_spans(rows, self.schema))
        try:
            futures = await self._producer.enqueue_many_raw((r.topic, r.key.encode(), r.value, headers(r))
                                                            for r in rows)
        except BaseException as exc:
            spans.__exit__(type(exc), exc, exc.__traceback__)
            if is_transient(exc):
                self._known_topics = set()  # a topic deleted meanwhile looks like a timeout: look again
            raise
        ids = [r.id for r in rows]
        task = asyncio.create_task(self._land(driver, ids, futures, spans), name=f"outbox-flight-{self.schema}")
        task.add_done_callback(self._on_landed)
        self._flights.append((ids, task))
        self._flying.update(ids)
        return len(rows)

    def _on_landed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._wake.set()  # the loop reaps it at once and goes serial

    async def _land(self, driver: Any, ids: list[int], futures: list[asyncio.Future[Any]],
                    spans: contextlib.ExitStack) -> None:
        """A batch in flight: await its acknowledgements, then delete its rows (one round trip on the leader session,
        its commit not waiting for the WAL flush: a delete lost in a crash only republishes rows, deduped)."""
        try:
            await acknowledged(futures)
        except BaseException as exc:
            spans.__exit__(type(exc), exc, exc.__traceback__)
            raise
        spans.close()
        async with self._on_leader, asyncio.timeout(30.0):  # one simple query, so SET LOCAL holds for the statement
            await driver.execute(f"SET LOCAL synchronous_commit = off; {self._done(ids)}")
        metrics.OUTBOX_PUBLISHED.labels(self.schema).inc(len(ids))

    def _reap(self) -> None:
        """Forget the batches landed (in order); raise the failure of one that did not (its rows wait)."""
        while self._flights and self._flights[0][1].done():
            ids, task = self._flights.popleft()
            self._flying.difference_update(ids)
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    async def _land_all(self) -> None:
        """Let every batch in flight land (marked, or left unsent on failure) before a serial pass."""
        await asyncio.gather(*(task for _, task in self._flights), return_exceptions=True)
        self._flights.clear()
        self._flying.clear()

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows in id order; returns how many rows it is done with.

        Raises on a transient failure (Kafka away: the rows wait) and when a row failed for its own sake but
        is not parked yet (the pass is retried after a backoff, so order is kept until the row is parked).
        """
        ob = self._outbox
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(ob.c.id, ob.c.topic, ob.c.key, ob.c.value, ob.c.headers, ob.c.attempts)
                    .where(ob.c.sent_at.is_(None), ob.c.parked_at.is_(None)).order_by(ob.c.id).limit(self._batch)
                )
            ).all()
            await conn.commit()
        if not rows:
            metrics.OUTBOX_BACKLOG.labels(self.schema).set(0)
            metrics.OUTBOX_OLDEST_AGE.labels(self.schema).set(0)
            return 0
        if {r.topic for r in rows} - self._known_topics:  # a topic seen first (or again): does it exist?
            self._known_topics = await self._producer.topics()  # raises while Kafka is away: rows wait
        if not {r.topic for r in rows} - self._known_topics:
            try:
                with publish_spans(rows, self.schema) as headers:
                    await self._producer.send_many_raw((r.topic, r.key.encode(), r.value, headers(r)) for r in rows)
            except Exception as exc:
                if is_transient(exc):
                    self._known_topics = set()  # a topic deleted meanwhile looks like a timeout: look again
                    raise
                log.warning("outbox batch failed, publishing row by row: %s", describe(exc),
                            extra={"schema": self.schema})
            else:
                await self._mark_sent([r.id for r in rows])
                return len(rows)
        return await self._relay_one_by_one(rows)

    async def _relay_one_by_one(self, rows: Sequence[Any]) -> int:
        """Publish ``rows`` one at a time, so the one at fault is found; it is counted, and parked at the limit."""
        sent: list[int] = []
        done = 0
        try:
            for r in rows:
                if r.topic not in self._known_topics:
                    fault = f"unknown topic {r.topic!r}"
                else:
                    try:
                        with publish_spans([r], self.schema) as headers:
                            await self._producer.send_raw(r.topic, r.value, key=r.key.encode(), headers=headers(r))
                        sent.append(r.id)
                        done += 1
                        continue
                    except Exception as exc:
                        if is_transient(exc):
                            raise
                        fault = describe(exc)
                if not await self._count_failure(r, fault):
                    raise RowNotPublished(f"outbox row {r.id} failed ({fault}); will retry")
                done += 1
        finally:
            await self._mark_sent(sent)
        return done

    async def _count_failure(self, row: Any, reason: str) -> bool:
        """Count a failed attempt of ``row``; park it once it reaches the limit. True if it was parked."""
        ob = self._outbox
        attempts: int = row.attempts + 1
        park = attempts >= self._park_after
        async with self._engine.begin() as conn:
            await conn.execute(update(ob).where(ob.c.id == row.id).values(
                attempts=attempts, park_reason=reason[:1000], parked_at=func.now() if park else None))
        if park:
            metrics.OUTBOX_PARKED_TOTAL.labels(self.schema).inc()
            log.error("outbox row parked after %d attempts: %s", attempts, reason,
                      extra={"schema": self.schema, "outbox_id": row.id, "topic": row.topic})
        return park

    async def _mark_sent(self, ids: list[int]) -> None:
        if not ids:
            return
        async with self._engine.begin() as conn:
            # no wait for the WAL flush: a delete lost in a crash only republishes rows the broker has (deduped)
            await conn.execute(text("SET LOCAL synchronous_commit = off"))
            await conn.execute(text(self._done(ids)))
        metrics.OUTBOX_PUBLISHED.labels(self.schema).inc(len(ids))

    def _done(self, ids: list[int]) -> str:
        """The statement that deletes (or marks sent) the acknowledged rows ``ids``: ints only, safe to inline."""
        return self._done_sql % ",".join(str(int(i)) for i in ids)

    async def _measure_backlog(self) -> None:
        ob = self._outbox
        waiting = ob.c.parked_at.is_(None)
        async with self._engine.connect() as conn:
            count, age, parked = (await conn.execute(
                select(func.count().filter(waiting),
                       func.extract("epoch", func.now() - func.min(ob.c.created_at).filter(waiting)),
                       func.count().filter(ob.c.parked_at.is_not(None)))
                .where(ob.c.sent_at.is_(None))
            )).one()
        metrics.OUTBOX_BACKLOG.labels(self.schema).set(count)
        metrics.OUTBOX_OLDEST_AGE.labels(self.schema).set(float(age or 0))
        metrics.OUTBOX_PARKED.labels(self.schema).set(parked)


class _Row(NamedTuple):
    id: int
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]
    attempts: int


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


class RowNotPublished(Exception):
    """An outbox row failed for its own sake and is not parked yet: the relay retries the pass after a backoff."""
