"""The consumer runner every service uses: one handler per event type, at-least-once in, effectively once out.

It subscribes to the topics of the service's ``EventHandlers`` table (``registry``) and, for each record,
in partition order:

1. decode and validate it (``Envelope.from_kafka``); a record that cannot be decoded goes straight to
   ``<topic>.dlq``; an event of a type the table has no handler for (another service's new event on a
   shared topic) is skipped -- counted in ``leadbridge_events_ignored_total`` -- in ONE place, ``_ignore``;
2. open a database transaction, claim the event id (``processed_events``), run the type's handler with a
   ``HandlerContext`` whose ``emit`` stages events for the service's outbox, write them (one insert), commit;
   a redelivered event is claimed already and changes nothing; an undeclared emit (``UndeclaredEmit``, a
   bug) stops the runner with the record uncommitted;
3. errors are classified by ``failures.classify``: a transient one (the database restarting, out of
   connection slots, a failover, a deadlock, a lock timeout...) pauses the record's partition and retries
   it after a capped backoff, without limit -- it is never dead-lettered. Any other handler error is retried
   with exponential backoff; after ``max_attempts`` the record goes to the DLQ with the error (type and
   SQLSTATE only: no values), and the next record is processed;
4. offsets are committed only after the record's transaction committed (or it was dead-lettered), and
   never for partitions revoked in a rebalance.

With ``batch_size`` > 1 (services: ``CONSUMER_BATCH_SIZE``, 500 by default) steps 1 and 2 take up to that
many fetched records of a partition at once: one transaction with one multi-row claim, the types' batch
handlers (``on(X, h, batch=...)``) or their one-event handlers, one multi-row outbox insert, one commit, then
the offsets (``batching``). A transient error pauses the partition from the batch's first record; any other
error makes the runner handle that batch's records one by one as above, so only a faulty record is
dead-lettered.

``stop()`` (wired to SIGTERM by the service) finishes the current record, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from leadbridge_contracts.envelope import Envelope, UndecodableEvent
from leadbridge_contracts.topics import DLQ_SUFFIX
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import metrics
from .batching import claim_events
from .clock import Clock, utcnow
from .dlq import dead_letter_headers
from .failures import OutageBackoff, describe, is_transient
from .idempotency import claim_event
from .producer import EventProducer
from .registry import EventHandlers, Handler, Handles
from .shutdown import run_to_completion
from .tracing import batch_spans, handling, span_of
from .transaction import BatchContext, HandlerContext, UndeclaredEmit

__all__ = ["ConsumerRunner", "Handler", "HandlerContext", "PoisonEvent", "UndeclaredEmit"]

log = logging.getLogger("leadbridge.consumer")


class PoisonEvent(Exception):
    """Raise from a handler for an event that can never succeed: it is dead-lettered without retries."""


class _Transient(Exception):
    """The record in flight hit an outage: pause its partition, fetch it again after a backoff."""


class _TransientAt(Exception):
    """A batch hit an outage: pause its partition and fetch it again from ``offset`` after a backoff."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class ConsumerRunner:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        handlers: EventHandlers,
        sessions: async_sessionmaker[AsyncSession],
        processed: Table,
        producer: EventProducer,
        outbox: Table | None = None,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 10.0,
        auto_offset_reset: str = "earliest",
        on_committed: Callable[[ConsumerRecord], None] | None = None,
        batch_size: int = 1,
        batch_wait_ms: int = 200,
        deps: Any = None,
        clock: Clock = utcnow,
        topics: Sequence[str] | None = None,
        **consumer_options: Any,
    ) -> None:
        self.group_id = group_id
        self.handlers = handlers
        self.topics = tuple(topics or handlers.topics)  # ``topics``: only for tests on topics of their own
        self._deps = deps
        self._clock = clock
        self._sessions = sessions
        self._processed = processed
        self._outbox = outbox
        self._producer = producer
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._on_committed = on_committed
        self._batch_size = max(1, batch_size)  # 1: one transaction per record
        self._batch_wait_ms = batch_wait_ms
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            # aiokafka resets a newly assigned partition without a committed offset (auto_offset_reset) by
            # asking the leader it knows, and on NotLeaderForPartition only retries, without refreshing its
            # metadata: after a broker failover that loops until the periodic refresh (5 min by default;
            # seen in test_replicas as 12 leads unscored for 2+ min). A 10 s refresh bounds it.
            metadata_max_age_ms=consumer_options.pop("metadata_max_age_ms", 10_000),
            **consumer_options,
        )
        self._lock = asyncio.Lock()  # held while a record is in flight; the rebalance listener waits for it
        self._pending: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        # Partitions we own, per the rebalance listener. aiokafka's assignment() still lists revoked partitions
        # until the rejoin completes, so it cannot tell whether a fetched record may still be handled.
        self._owned: set[TopicPartition] = set()
        self._revocations = 0  # bumped on every revoke: records fetched before it are stale
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._last_lag = 0.0
        self._outages: OutageBackoff[TopicPartition] = OutageBackoff(backoff_seconds, max_backoff_seconds)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``stop()``; returns after committing and leaving the group."""
        self._consumer.subscribe(list(self.topics), listener=_Listener(self))
        await self._consumer.start()
        self._started.set()
        try:
            while not self._stopping.is_set():
                self._resume_due()
                batches = await self._consumer.getmany(timeout_ms=self._batch_wait_ms,
                                                       max_records=max(500, self._batch_size))
                fetched_in = self._revocations
                for tp, records in batches.items():
                    if self._batch_size > 1:
                        await self._run_batches(tp, records, fetched_in)
                        await self._commit_pending()
                        continue
                    for record in records:
                        if self._stopping.is_set():
                            break
                        async with self._lock:
                            if self._revocations != fetched_in or tp not in self._owned:
                                break  # revoked meanwhile: the (new) owner refetches from the committed offset
                            try:
                                await self._handle(record)
                            except _Transient:
                                self._pause(tp, record.offset)  # not committed: fetched again after a backoff
                                break
                            self._pending[tp] = record.offset + 1
                            self._outages.forget(tp)
                    await self._commit_pending()
                await self._report_lag()
        finally:  # also when cancelled (again): commit what was handled, then leave the group
            await run_to_completion(self._close())

    async def _close(self) -> None:
        try:
            await self._commit_pending()
        except Exception as exc:  # the broker is away: the next owner redelivers, handlers dedupe
            log.warning("final offset commit failed: %s", exc, extra={"group": self.group_id})
        finally:
            await self._consumer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def wait_assigned(self, timeout: float = 30.0) -> None:
        """Wait until the group has assigned this runner at least one partition (handy in tests)."""
        deadline = time.monotonic() + timeout
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("no partitions assigned")
            await asyncio.sleep(0.05)
        for tp in self._consumer.assignment():  # resolve starting offsets ("latest" means from now on)
            await self._consumer.position(tp)

    # -- one record ------------------------------------------------------------------------------

    def _pause(self, tp: TopicPartition, offset: int) -> None:
        """Wait out an outage without spinning or leaving the group: rewind, pause, resume after a backoff."""
        with contextlib.suppress(IllegalStateError):  # unassigned meanwhile: the next owner refetches it
            self._consumer.seek(tp, offset)
            self._consumer.pause(tp)
            self._outages.pause(tp)

    def _resume_due(self) -> None:
        for tp in self._outages.due():
            if tp in self._owned:
                self._consumer.resume(tp)
        metrics.CONSUMER_PAUSED.labels(self.group_id).set(len(self._outages))

    async def _handle(self, record: ConsumerRecord) -> None:
        topic = record.topic
        try:
            event = Envelope.from_kafka(record.key, record.value, record.headers)
        except UndecodableEvent as exc:
            await self._dead_letter(record, "undecodable", str(exc), attempts=0)
            return
        handles = self.handlers.get(event.type)
        if handles is None:
            return self._ignore(event, topic)
        attempt = 0
        backoff = self._backoff
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                with handling(record, event, self.group_id):  # a span, child of the record's traceparent
                    duplicate = await self._apply(handles.handler, event, record)
            except UndeclaredEmit:
                raise  # a bug, not the record's fault: never retried nor dead-lettered (see ``transaction``)
            except PoisonEvent as exc:
                metrics.EVENTS_FAILED.labels(self.group_id, topic).inc()
                await self._dead_letter(record, "poison", str(exc), attempts=attempt, event=event)
                return
            except Exception as exc:
                metrics.EVENTS_FAILED.labels(self.group_id, topic).inc()
                transient = is_transient(exc)
                log.warning(
                    "handler failed (attempt %d): %s", attempt, describe(exc),
                    extra={"event_id": event.id, "lead_id": event.lead_id, "topic": topic, "transient": transient},
                )
                if transient:  # an outage, not the record's fault: never dead-lettered
                    raise _Transient() from exc
                if attempt >= self._max_attempts:
                    await self._dead_letter(record, "handler_failed", describe(exc, limit=4000),
                                            attempts=attempt, event=event)
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            metrics.HANDLER_SECONDS.labels(self.group_id, topic).observe(time.perf_counter() - started)
            metrics.EVENTS_CONSUMED.labels(self.group_id, topic).inc()
            if duplicate:
                metrics.EVENTS_DUPLICATE.labels(self.group_id, topic).inc()
            if self._on_committed:
                self._on_committed(record)
            return

    async def _apply(self, handler: Handler, event: Envelope[Any], record: ConsumerRecord) -> bool:
        """Run the handler in one transaction with the event-id claim. Returns True for a duplicate."""
        async with self._sessions() as session, session.begin():
            if not await claim_event(session, self._processed, self.group_id, event.id):
                return True
            ctx = self._context(HandlerContext, session, record=record)
            await handler(event, ctx)
            await ctx.flush()
        return False

    def _context(self, kind: Any, session: Any, **extra: Any) -> Any:
        return kind(session=session, outbox=self._outbox, emits=self.handlers.emitted_types, clock=self._clock,
                    service=self.group_id, deps=self._deps, **extra)

    def _ignore(self, event: Envelope[Any], topic: str) -> None:
        """An event type this service has no handler for: skipped (its offset is committed), and counted.

        Consumers ignore what they do not know (a new event type on a topic they read is additive); a record
        that cannot be decoded at all is a dead letter instead (``_handle``)."""
        metrics.EVENTS_IGNORED.labels(self.group_id, topic, event.type).inc()
        log.debug("event type not handled here; skipped", extra={"event_id": event.id, "topic": topic,
                                                                  "event_type": event.type})

    # -- a batch of one partition's records ----------------------------------------------------------

    async def _run_batches(self, tp: TopicPartition, records: list[ConsumerRecord], fetched_in: int) -> None:
        for start in range(0, len(records), self._batch_size):
            chunk = records[start:start + self._batch_size]
            if self._stopping.is_set():
                return
            async with self._lock:
                if self._revocations != fetched_in or tp not in self._owned:
                    return  # revoked meanwhile: the (new) owner refetches from the committed offset
                try:
                    await self._handle_batch(tp, chunk)
                except _TransientAt as outage:
                    self._pause(tp, outage.offset)  # not committed from there on: fetched again after a backoff
                    return
                self._outages.forget(tp)

    async def _handle_batch(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """All of ``records`` in one transaction; on a record's fault, each record on its own instead."""
        try:
            events = [Envelope.from_kafka(r.key, r.value, r.headers) for r in records]
        except UndecodableEvent:
            return await self._one_by_one(tp, records)
        started = time.perf_counter()
        try:
            with batch_spans(records, events, self.group_id):  # a span per record, children of their traceparents
                duplicates = await self._apply_batch(tp.topic, events, records)
        except UndeclaredEmit:
            raise
        except Exception as exc:
            metrics.EVENTS_FAILED.labels(self.group_id, tp.topic).inc()
            transient = is_transient(exc)
            log.warning("batch of %d failed: %s", len(records), describe(exc),
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": records[0].offset,
                               "transient": transient})
            if transient:  # an outage: the whole batch waits, nothing of it was committed
                raise _TransientAt(records[0].offset) from exc
            return await self._one_by_one(tp, records)  # so that only the faulty record is dead-lettered
        elapsed = time.perf_counter() - started
        for _ in records:
            metrics.HANDLER_SECONDS.labels(self.group_id, tp.topic).observe(elapsed / len(records))
        metrics.EVENTS_CONSUMED.labels(self.group_id, tp.topic).inc(len(records))
        if duplicates:
            metrics.EVENTS_DUPLICATE.labels(self.group_id, tp.topic).inc(duplicates)
        self._pending[tp] = records[-1].offset + 1
        if self._on_committed:
            for record in records:
                self._on_committed(record)

    async def _apply_batch(self, topic: str, events: list[Envelope[Any]], records: list[ConsumerRecord]) -> int:
        """One transaction: claim, handle, stage the emitted events, commit. Returns the duplicates skipped."""
        known: list[tuple[Envelope[Any], Handles]] = []
        for event in events:
            if (handles := self.handlers.get(event.type)) is None:
                self._ignore(event, topic)
            else:
                known.append((event, handles))
        if not known:
            return 0
        async with self._sessions() as session, session.begin():
            fresh = await claim_events(session, self._processed, self.group_id, [e.id for e, _ in known])
            todo: list[tuple[Envelope[Any], Handles]] = []
            for event, handles in known:
                if event.id in fresh:
                    fresh.discard(event.id)  # a repeat inside the batch is a duplicate too
                    todo.append((event, handles))
            ctx: BatchContext[Any] = self._context(
                BatchContext, session, records={e.id: r for e, r in zip(events, records, strict=True)})
            # consecutive events sharing a batch handler go to it together; the others one by one, in order
            for batch, run in itertools.groupby(todo, key=lambda item: item[1].batch):
                if batch is not None:
                    await batch([e for e, _ in run], ctx)
                    continue
                for event, handles in run:
                    with span_of(event):  # the handler's logs and emits in the event's own span
                        await handles.handler(event, ctx.for_event(event))
            await ctx.flush()
        return len(known) - len(todo)

    async def _one_by_one(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                await self._handle(record)
            except _Transient as exc:
                raise _TransientAt(record.offset) from exc
            self._pending[tp] = record.offset + 1

    async def _dead_letter(self, record: ConsumerRecord, reason: str, error: str, *, attempts: int,
                           event: Envelope[Any] | None = None) -> None:
        headers = dead_letter_headers(record, reason=reason, error=error, group=self.group_id, attempts=attempts)
        backoff = self._backoff
        while True:  # the record is only skipped once its dead letter is safely stored
            try:
                await self._producer.send_raw(record.topic + DLQ_SUFFIX, record.value, key=record.key,
                                              headers=headers)
                break
            except Exception as exc:
                log.error("dead-letter publish failed, retrying: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        metrics.EVENTS_DEAD_LETTERED.labels(self.group_id, record.topic, reason).inc()
        log.error(
            "record dead-lettered", extra={
                "topic": record.topic, "partition": record.partition, "offset": record.offset,
                "reason": reason, "event_id": event.id if event else None,
                "lead_id": event.lead_id if event else None,
            },
        )

    # -- offsets ---------------------------------------------------------------------------------

    async def _commit_pending(self, only: set[TopicPartition] | None = None) -> None:
        offsets = {tp: OffsetAndMetadata(off, "") for tp, off in self._pending.items()
                   if tp in self._owned and (only is None or tp in only)}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:  # rebalanced meanwhile: the new owner redelivers, handlers dedupe
            log.warning("offset commit failed after a rebalance: %s", exc)
        for tp, committed in offsets.items():
            if self._pending.get(tp) == committed.offset:
                del self._pending[tp]

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._revocations += 1  # before waiting: the loop must not start another record of a revoked batch
        async with self._lock:  # let the record in flight finish, then commit what we still own
            try:
                await self._commit_pending(only=set(revoked))
            except Exception as exc:  # the group moved on already: the new owner redelivers, we dedupe
                log.warning("commit on revoke failed: %s", exc)
            for tp in revoked:
                self._pending.pop(tp, None)
                self._outages.forget(tp)
            self._owned -= set(revoked)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._pending.pop(tp, None)  # never commit an offset from an earlier ownership
        self._owned = set(assigned)

    async def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5.0:
            return
        self._last_lag = now
        for tp in list(self._consumer.assignment()):
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:  # unassigned by a rebalance meanwhile
                continue
            metrics.CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(max(highwater - position, 0))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped: its classes are Any
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._runner._on_assigned(set(assigned))
