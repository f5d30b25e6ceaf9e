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
   never for partitions revoked in a rebalance; the commit runs beside the next fetch's handling, not before
   it (``offsets.CommitBehind``), so a fresh record never waits for a broker round trip of an earlier one.

With ``batch_size`` > 1 (services: ``CONSUMER_BATCH_SIZE``, 500 by default) steps 1 and 2 take up to that
many fetched records at once, of every partition the fetch returned (each partition's in offset order): one
transaction with one multi-row claim, the types' batch handlers (``on(X, h, batch=...)``) or their one-event
handlers, one multi-row outbox insert, one commit (``batching``). A transient error pauses every partition of
the batch from its first record in it; any other error makes the runner handle that batch's records one by
one as above, so only a faulty record is dead-lettered. Either way the offsets are committed once per fetch.

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
from .batching import Chunk, RunnerStats, chunks, topics_of
from .clock import Clock, utcnow
from .dlq import dead_letter_headers
from .failures import OutageBackoff, describe, is_transient
from .idempotency import claim_event, claim_events
from .offsets import CommitBehind
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
    """A batch hit an outage: pause each of its partitions and fetch them again from ``offsets`` after a backoff."""

    def __init__(self, offsets: dict[TopicPartition, int]) -> None:
        super().__init__(offsets)
        self.offsets = offsets


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
        commit_interval_ms: int = 0,
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
        # while set, a transaction holds at most this many records: the express lane sets it while it takes fresh
        # leads ahead of this runner, so one waits for a short transaction, not a long one (``express_pace``)
        self.batch_cap: int | None = None
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
        # offsets committed off the critical path, at most one commit per ``commit_interval_ms`` (``offsets``)
        self._behind = CommitBehind(self._commit_pending, self._pending, group_id, interval=commit_interval_ms / 1000)
        self.stats = RunnerStats()  # fetches, batch transactions, offset commits (tests, benchmarks)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``stop()``; returns after committing and leaving the group."""
        self._consumer.subscribe(list(self.topics), listener=_Listener(self))
        await self._consumer.start()
        self._started.set()
        try:
            while not self._stopping.is_set():
                self._resume_due()
                fetched = await self._consumer.getmany(timeout_ms=self._batch_wait_ms,
                                                       max_records=max(500, self._batch_size))
                fetched_in = self._revocations
                if fetched:
                    self.stats.fetches += 1
                if self._batch_size > 1:
                    await self._run_fetch(fetched, fetched_in)
                else:
                    for tp, records in fetched.items():
                        await self._run_records(tp, records, fetched_in)
                self._behind.kick()  # once per fetch, for every partition it advanced; not awaited (``offsets``)
                await self._report_lag()
        finally:  # also when cancelled (again): commit what was handled, then leave the group
            await run_to_completion(self._close())

    async def _close(self) -> None:
        try:
            await self._behind.landed()
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

    async def _run_records(self, tp: TopicPartition, records: list[ConsumerRecord], fetched_in: int) -> None:
        for record in records:
            if self._stopping.is_set():
                return
            async with self._lock:
                if self._revocations != fetched_in or tp not in self._owned:
                    return  # revoked meanwhile: the (new) owner refetches from the committed offset
                try:
                    await self._handle(record)
                except _Transient:
                    self._pause(tp, record.offset)  # not committed: fetched again after a backoff
                    return
                self._pending[tp] = record.offset + 1
                self._outages.forget(tp)

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
        metrics.child(metrics.CONSUMER_PAUSED, self.group_id).set(len(self._outages))

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
                metrics.child(metrics.EVENTS_FAILED, self.group_id, topic).inc()
                await self._dead_letter(record, "poison", str(exc), attempts=attempt, event=event)
                return
            except Exception as exc:
                metrics.child(metrics.EVENTS_FAILED, self.group_id, topic).inc()
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
            metrics.child(metrics.HANDLER_SECONDS, self.group_id, topic).observe(time.perf_counter() - started)
            metrics.child(metrics.EVENTS_CONSUMED, self.group_id, topic).inc()
            if duplicate:
                metrics.child(metrics.EVENTS_DUPLICATE, self.group_id, topic).inc()
            if self._on_committed:
                self._on_committed(record)
            return

    async def _apply(self, handler: Handler, event: Envelope[Any], record: ConsumerRecord) -> bool:
        """Run the handler in one transaction with the event-id claim. Returns True for a duplicate."""
        async with self._sessions() as session, session.begin():
            if not await claim_event(session, self._processed, self.group_id, event.id, first=True):
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
        metrics.child(metrics.EVENTS_IGNORED, self.group_id, topic, event.type).inc()
        log.debug("event type not handled here; skipped", extra={"event_id": event.id, "topic": topic,
                                                                  "event_type": event.type})

    # -- a fetch, in batches across its partitions -------------------------------------------------------

    async def _run_fetch(self, fetched: dict[TopicPartition, list[ConsumerRecord]], fetched_in: int) -> None:
        """Every partition's records of one fetch, ``batch_size`` (or ``batch_cap``) at most per transaction
        (``batching.chunks``)."""
        stalled: set[TopicPartition] = set()  # paused by an outage in this fetch: their later records wait too
        for chunk in chunks(fetched, min(self._batch_size, self.batch_cap or self._batch_size)):
            if self._stopping.is_set():
                return
            async with self._lock:
                if self._revocations != fetched_in:
                    return  # revoked meanwhile: the (new) owners refetch from the committed offsets
                chunk = [(tp, part) for tp, part in chunk if tp in self._owned and tp not in stalled]
                if not chunk:
                    continue
                try:
                    await self._handle_batch(chunk)
                except _TransientAt as outage:
                    for tp, offset in outage.offsets.items():  # not committed from there on: fetched again later
                        self._pause(tp, offset)
                    stalled.update(outage.offsets)
                    continue
                for tp, _ in chunk:
                    self._outages.forget(tp)

    async def _handle_batch(self, chunk: Chunk) -> None:
        """All of ``chunk``'s records in one transaction; on a record's fault, each record on its own instead."""
        records = [r for _, part in chunk for r in part]
        try:
            events = [Envelope.from_kafka(r.key, r.value, r.headers) for r in records]
        except UndecodableEvent:
            return await self._one_by_one(chunk)
        started = time.perf_counter()
        try:
            with batch_spans(records, events, self.group_id):  # a span per record, children of their traceparents
                duplicates = await self._apply_batch(events, records)
        except UndeclaredEmit:
            raise
        except Exception as exc:
            for topic in topics_of(chunk):
                metrics.child(metrics.EVENTS_FAILED, self.group_id, topic).inc()
            transient = is_transient(exc)
            log.warning("batch of %d failed: %s", len(records), describe(exc),
                        extra={"partitions": {f"{tp.topic}:{tp.partition}": part[0].offset for tp, part in chunk},
                               "transient": transient})
            if transient:  # an outage: the whole batch waits, nothing of it was committed
                raise _TransientAt({tp: part[0].offset for tp, part in chunk}) from exc
            return await self._one_by_one(chunk)  # so that only the faulty record is dead-lettered
        self.stats.transactions += 1
        self.stats.largest = max(self.stats.largest, len(records))
        metrics.child(metrics.BATCH_EVENTS, self.group_id).observe(len(records))
        per_event = (time.perf_counter() - started) / len(records)
        for topic, n in topics_of(chunk).items():
            metrics.observe_many(metrics.child(metrics.HANDLER_SECONDS, self.group_id, topic), per_event, n)
            metrics.child(metrics.EVENTS_CONSUMED, self.group_id, topic).inc(n)
        for topic, n in duplicates.items():
            metrics.child(metrics.EVENTS_DUPLICATE, self.group_id, topic).inc(n)
        for tp, part in chunk:
            self._pending[tp] = part[-1].offset + 1
        if self._on_committed:
            for record in records:
                self._on_committed(record)

    async def _apply_batch(self, events: list[Envelope[Any]], records: list[ConsumerRecord]) -> dict[str, int]:
        """One transaction: claim, handle, stage the emitted events, commit. Returns the duplicates skipped,
        per topic."""
        known: list[tuple[Envelope[Any], Handles, ConsumerRecord]] = []
        for event, record in zip(events, records, strict=True):
            if (handles := self.handlers.get(event.type)) is None:
                self._ignore(event, record.topic)
            else:
                known.append((event, handles, record))
        if not known:
            return {}
        duplicates: dict[str, int] = {}
        async with self._sessions() as session, session.begin():
            fresh = await claim_events(session, self._processed, self.group_id, [e.id for e, _, _ in known],
                                         first=True)  # with its BEGIN, in one round trip
            todo: list[tuple[Envelope[Any], Handles]] = []
            for event, handles, record in known:
                if event.id in fresh:
                    fresh.discard(event.id)  # a repeat inside the batch is a duplicate too
                    todo.append((event, handles))
                else:
                    duplicates[record.topic] = duplicates.get(record.topic, 0) + 1
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
        return duplicates

    async def _one_by_one(self, chunk: Chunk) -> None:
        for i, (tp, part) in enumerate(chunk):
            for record in part:
                try:
                    await self._handle(record)
                except _Transient as exc:  # this partition from this record, the batch's later ones from their first
                    raise _TransientAt({tp: record.offset} | {t: p[0].offset for t, p in chunk[i + 1:]}) from exc
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
        metrics.child(metrics.EVENTS_DEAD_LETTERED, self.group_id, record.topic, reason).inc()
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
            self.stats.commits += 1
        except CommitFailedError as exc:  # rebalanced meanwhile: the new owner redelivers, handlers dedupe
            log.warning("offset commit failed after a rebalance: %s", exc)
        for tp, committed in offsets.items():
            if self._pending.get(tp) == committed.offset:
                del self._pending[tp]

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._revocations += 1  # before waiting: the loop must not start another record of a revoked batch
        async with self._lock:  # let the record in flight finish, then commit what we still own
            await self._behind.landed()  # the commit in flight first: offsets reach the coordinator in order
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
