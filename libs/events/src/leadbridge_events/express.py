"""The express lane: a brand-new lead's first event is handled at once, even behind a backlog of thousands.

Per-lead order is per partition, so a fresh lead posted while a stage drains a backlog waits behind every
older record of its partition. But the FIRST event of a lead has no earlier event of its lead to wait for: it
may go ahead; every later event of the lead is still handled in order, after it. Producers mark such events
(``first_of_lead(event, since=...)``: the header ``ce_firstoflead``, a CloudEvents extension whose value is
the time the lead was captured; others ignore it): intake on the ``lead-captured`` of a lead id it minted in
the same transaction (a repeat capture is a ``lead-activity-recorded``, never marked, emitted after the
capture committed), scoring on a lead's first ``lead-scored`` (no previous stage; a rescore, a follow-up's
stage change or a recycle has one), with the capture's time.

A service opting in (``Service(express=(LeadCaptured,))``) runs an ``ExpressLane`` beside its main
``ConsumerRunner``: group ``<group>-express``, from the latest offset, no commits. It reads headers only (no
value decode) and takes a record only if it is marked and of an opted-in type; of a fresh lead (captured at
most ``EXPRESS_MAX_AGE_SECONDS`` ago: an outbox backlog relayed after an outage is first-of-lead but old, and
so are the first scores of a drained backlog's leads, though just scored); the main
group is behind, by ``EXPRESS_MIN_LAG`` records or more AND by more than ``EXPRESS_MIN_WAIT_SECONDS`` at its
pace, counting its backlog on the lane's other partitions too (its one loop handles them all; committed offsets
and partition ends, read at most every 0.5 s: a main runner that keeps up is left alone, batches stay
batches; while it is behind, its transactions hold at most ``EXPRESS_MAIN_BATCH_SIZE`` records, since the lane
waits for the one in flight); and within ``EXPRESS_MAX_PER_SECOND`` and ``EXPRESS_MAX_SHARE`` of the time holding the main runner
(under sustained overload every new lead is fresh: the lane must not turn batches back into one transaction
each, nor keep the main runner waiting).

It applies the event exactly as the main runner does (``ConsumerRunner._apply``): one transaction with the
event-id claim **under the main group's id**, so the main runner later finds it claimed and skips it (one
effect); if the main runner claimed it first, the lane's claim waits for that commit and finds it taken. Any
error: the lane skips the record, the main runner handles it in order with its retries and dead letters (the
lane never dead-letters). ``EXPRESS_ENABLED=false`` turns it off. Metrics: ``leadbridge_express_handled_total``,
``leadbridge_express_skipped_total{reason}``. See docs/backbone.md, "The express lane".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from leadbridge_contracts.envelope import TYPE_PREFIX, Envelope, UndecodableEvent
from leadbridge_contracts.events import EventData
from leadbridge_contracts.topics import topic_for
from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .clock import Clock, utcnow
from .express_pace import Bucket, TimeBudget, ahead_of, cap_main_batches, pause_while_main_keeps_up
from .failures import describe
from .first_of_lead import HEADER, first_of_lead, first_of_lead_since, is_first_of_lead
from .producer import EventProducer
from .registry import EventHandlers
from .shutdown import run_to_completion
from .tracing import handling

if TYPE_CHECKING:
    from .consumer import ConsumerRunner
    from .outbox import Staged
    from .runtime import ServiceRuntime
    from .transaction import HandlerContext

__all__ = ["HEADER", "ExpressLane", "ExpressSettings", "first_of_lead", "first_of_lead_since", "is_first_of_lead",
           "run_express_lane"]

log = logging.getLogger("leadbridge.express")

OFFSETS_REFRESH_SECONDS = 0.5
REMEMBERED = 1000  # event ids of recent express events (``_remember``)

EXPRESS_HANDLED = Counter("leadbridge_express_handled_total",
                          "First events of new leads handled by the express lane ahead of the main consumer",
                          ["group", "topic"])
EXPRESS_SKIPPED = Counter(
    "leadbridge_express_skipped_total", "Records the express lane left to the main consumer, by reason "
    "(not_first, stale, main_not_behind, time_budget, rate_limited, duplicate, failed, ...)",
    ["group", "topic", "reason"])


class ExpressSettings(BaseSettings):
    """The express lane's settings (``EXPRESS_*``, shared by every service; see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="EXPRESS_", env_file=None, extra="ignore", populate_by_name=True)

    enabled: bool = Field(default=True, description="Run the express lane in the services that opt in.")
    max_age_seconds: float = Field(default=10.0, gt=0, description="Only leads captured at most this long ago.")
    min_lag: int = Field(default=10, ge=0, description="Only while the main group is at least this many records "
                                                       "behind on the event's partition...")
    min_wait_seconds: float = Field(default=0.5, ge=0, description="... and that many records would take it longer "
                                                                   "than this, at its pace on that partition.")
    max_per_second: float = Field(default=50.0, gt=0, description="At most this many events per second (and burst).")
    max_share: float = Field(default=0.1, gt=0, le=1, description="At most this share of the time holding the main "
                                                                 "runner (over 10 s), whatever a transaction takes.")
    main_batch_size: int = Field(default=200, ge=0, le=10000,
                                 description="While the main group is behind (the lane takes fresh leads ahead of "
                                             "it), its transactions hold at most this many records, so a fresh lead "
                                             "waits for a short one (0: CONSUMER_BATCH_SIZE throughout).")


# -- consuming: the lane ------------------------------------------------------------------------------


class ExpressLane:
    """Handles fresh first-of-lead events ahead of a main runner that is behind (see the module docstring)."""

    def __init__(self, *, bootstrap_servers: str, group_id: str, handlers: EventHandlers,
                 types: Collection[str], runner: Callable[[], ConsumerRunner | None],
                 settings: ExpressSettings | None = None, clock: Clock = utcnow,
                 topics: Sequence[str] | None = None, producer: Callable[[], EventProducer | None] | None = None,
                 **consumer_options: Any) -> None:
        self.main_group = group_id
        self.group_id = f"{group_id}-express"
        self.settings = settings or ExpressSettings()
        self.types = frozenset(t for t in types if t in handlers)
        self.topics = tuple(topics or dict.fromkeys(topic_for(t).name for t in self.types))
        self._handlers = handlers
        self._runner = runner
        self._producer = producer  # to publish what an express event emits at once (None: the relay alone)
        self._clock = clock
        self._bootstrap = bootstrap_servers
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=self.group_id, enable_auto_commit=False,
            auto_offset_reset="latest",  # offsets do not matter: only what is fresh is taken
            metadata_max_age_ms=consumer_options.pop("metadata_max_age_ms", 10_000), **consumer_options)
        self._admin: AIOKafkaAdminClient | None = None
        self._main_offsets: dict[TopicPartition, int] = {}
        self._offsets_at = self._read_at = float("-inf")  # last attempt, last success
        self._rates: dict[TopicPartition, float] = {}  # records/s the main group commits, per partition
        self._ends: dict[TopicPartition, int] = {}  # the assigned partitions' end offsets (``express_pace``)
        self._bucket = Bucket(self.settings.max_per_second)
        self._budget = TimeBudget(self.settings.max_share)
        self._handled: dict[bytes, None] = {}  # ids of the events the lane handled lately (insertion order)
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._positioned = asyncio.Event()  # the assigned partitions' starting offsets set (``_start_recent``)

    async def run(self) -> None:
        self._consumer.subscribe(list(self.topics), listener=_FromRecentRecords(self))
        await self._consumer.start()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self.group_id)
        watch: asyncio.Task[None] | None = None
        try:
            await self._admin.start()
            self._started.set()
            watch = asyncio.create_task(pause_while_main_keeps_up(self), name=f"express-watch-{self.group_id}")
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=100, max_records=1000)
                for records in batches.values():
                    for record in records:
                        await self.consider(record)
        finally:  # also when cancelled: leave the group and close the connections
            cap_main_batches(self, behind=False)
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            await run_to_completion(self._close())

    async def _close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        await self._consumer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _start_recent(self, assigned: set[TopicPartition]) -> None:
        """Each assigned partition from its first record of the last ``max_age_seconds`` (or its end): a lane
        that joins (or is rebalanced) a moment after a fresh record was written still sees it."""
        if not assigned:
            return
        try:
            await self._seek_recent(assigned)
        finally:
            self._positioned.set()

    async def _seek_recent(self, assigned: set[TopicPartition]) -> None:
        since = int((time.time() - self.settings.max_age_seconds) * 1000)
        try:
            found = await self._consumer.offsets_for_times({tp: since for tp in assigned})
        except Exception as exc:  # noqa: BLE001 - the default (latest) is a fine fallback
            log.debug("offsets for times not found: %s", exc)
            return
        for tp, at in found.items():
            if at is None:
                await self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, at.offset)

    async def wait_assigned(self, timeout: float = 30.0) -> None:
        """Until the lane has partitions and their starting (latest) offsets (handy in tests)."""
        await asyncio.wait_for(self._started.wait(), timeout)
        await asyncio.wait_for(self._positioned.wait(), timeout)
        deadline = time.monotonic() + timeout
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("no partitions assigned")
            await asyncio.sleep(0.05)
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)

    async def consider(self, record: ConsumerRecord) -> str:
        """Take ``record`` or leave it to the main runner; returns the outcome (``handled`` or a skip reason)."""
        outcome = await self._consider(record)
        if outcome == "handled":
            EXPRESS_HANDLED.labels(self.main_group, record.topic).inc()
        else:
            EXPRESS_SKIPPED.labels(self.main_group, record.topic, outcome).inc()
        return outcome

    async def _consider(self, record: ConsumerRecord) -> str:
        headers = record.headers or ()
        since = first_of_lead_since(headers)
        if since is None:
            return "not_first"
        event_type = next((v for k, v in headers if k == "ce_type"), b"").decode(errors="replace")
        if event_type.removeprefix(TYPE_PREFIX) not in self.types:
            return "not_first"
        if next((v for k, v in headers if k == "ce_id"), None) in self._handled:
            return "duplicate"  # the relay's copy of an event the lane published at once (see ``_publish``)
        try:
            age = (self._clock() - since).total_seconds()
        except TypeError:  # no UTC offset
            return "undecodable"
        if age > self.settings.max_age_seconds:
            return "stale"
        if not await self._main_behind(TopicPartition(record.topic, record.partition), record.offset):
            return "main_not_behind"
        runner = self._runner()
        if runner is None:
            return "no_runner"
        if not self._budget.available():
            return "time_budget"
        if not self._bucket.take():
            return "rate_limited"
        return await self._apply(runner, record, event_type.removeprefix(TYPE_PREFIX))

    async def _apply(self, runner: ConsumerRunner, record: ConsumerRecord, event_type: str) -> str:
        try:
            event = Envelope.from_kafka(record.key, record.value, record.headers)
        except UndecodableEvent:
            return "undecodable"
        handles = self._handlers.get(event.type)
        if handles is None or event.type != event_type:
            return "not_first"
        started = time.perf_counter()
        emitted: list[Staged] = []

        async def handler(ev: Envelope[Any], ctx: HandlerContext[Any]) -> None:
            await handles.handler(ev, ctx)
            emitted.extend(ctx.staged)  # what it emits: published at once too, below

        try:
            async with ahead_of(runner):  # the main runner's next batch waits for it
                locked = time.perf_counter()
                try:
                    with handling(record, event, self.group_id):  # a span, child of the record's traceparent
                        duplicate = await runner._apply(handler, event, record)  # claimed as the main group
                finally:
                    self._budget.spend(time.perf_counter() - locked)
        except Exception as exc:  # any fault: the main runner handles it, in order, with retries and the DLQ
            log.info("express lane left an event to the main consumer: %s", describe(exc),
                     extra={"event_id": event.id, "lead_id": event.lead_id, "topic": record.topic,
                            "group": self.group_id})
            return "failed"
        self._remember(record)
        if duplicate:
            return "duplicate"
        await self._publish(emitted)
        log.info("first event of a new lead handled in the express lane",
                 extra={"event_id": event.id, "lead_id": event.lead_id, "topic": record.topic,
                        "group": self.group_id, "seconds": round(time.perf_counter() - started, 4),
                        "lock_wait_seconds": round(locked - started, 4)})
        return "handled"

    def _remember(self, record: ConsumerRecord) -> None:
        """Its copy sent again by the relay, a moment later, is skipped without a transaction (which in the router
        would wait for the main runner's pool locks)."""
        event_id = next((v for k, v in record.headers or () if k == "ce_id"), None)
        if event_id is not None:
            self._handled[event_id] = None
            if len(self._handled) > REMEMBERED:
                del self._handled[next(iter(self._handled))]

    async def _publish(self, emitted: list[Staged]) -> None:
        """Send what the event caused now, not after the outbox rows the main runner staged before it. Its rows
        stay in the outbox and the relay sends them again in order: a duplicate, which consumers skip by event
        id (the outbox publishes at least once anyway). No later event of the lead can be on the topic yet."""
        producer = self._producer() if self._producer is not None else None
        if producer is None:
            return
        try:
            for event, topic in emitted:
                await producer.send(event, topic=topic)
        except Exception as exc:  # the relay sends them anyway
            log.info("express publish failed, the relay sends it: %s", describe(exc), extra={"group": self.group_id})

    async def _main_behind(self, tp: TopicPartition, offset: int) -> bool:
        """Would ``offset`` wait on ``tp``: ``min_lag`` records or more ahead of it -- on ``tp`` and on the lane's
        other partitions -- more than ``min_wait_seconds`` of the main group's pace on those partitions (unknown
        pace: the records alone decide)?"""
        if self.settings.min_lag == 0 and self.settings.min_wait_seconds == 0:
            return True
        if time.monotonic() - self._offsets_at > OFFSETS_REFRESH_SECONDS and not await self._refresh():
            return False  # unknown: the main runner keeps the record
        # The main runner handles all its partitions in one loop, a fetch's records partition after partition: a
        # record of a partition it has caught up on still waits behind the others' backlog already fetched (4.4 s
        # seen in a drain), so theirs count too.
        behind = self.left_to_main({p: end for p, end in self._ends.items() if p != tp})
        behind[tp] = max(offset - self._main_offsets.get(tp, 0), 0)
        lag = sum(behind.values())
        if lag < max(self.settings.min_lag, 1):
            return False
        rates = [self._rates[p] for p in behind if p in self._rates]
        return not rates or lag >= sum(rates) * self.settings.min_wait_seconds

    def left_to_main(self, ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The records the main group has yet to handle before ``ends``, per partition where there are any (no
        committed offset yet: a new group, from the start)."""
        left = {p: end - self._main_offsets.get(p, 0) for p, end in ends.items()}
        return {p: n for p, n in left.items() if n > 0}

    async def _refresh(self) -> bool:
        """The main group's committed offsets, and how fast they advance (a moving average per partition)."""
        now = time.monotonic()
        try:
            assert self._admin is not None
            committed = await self._admin.list_consumer_group_offsets(self.main_group)
        except Exception as exc:  # the broker is away
            log.debug("main group's offsets not readable: %s", exc)
            self._offsets_at = now
            return False
        elapsed = now - self._read_at
        offsets = {p: o.offset for p, o in committed.items() if o.offset >= 0}
        for p, o in offsets.items():
            if p in self._main_offsets and elapsed > 0:
                pace = max(o - self._main_offsets[p], 0) / elapsed
                self._rates[p] = pace if p not in self._rates else (self._rates[p] + pace) / 2
        self._main_offsets, self._offsets_at, self._read_at = offsets, now, now
        return True


class _FromRecentRecords(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, lane: ExpressLane) -> None:
        self._lane = lane

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._lane._start_recent(set(assigned))


def _same(producer: EventProducer) -> EventProducer:
    return producer


async def run_express_lane(runtime: ServiceRuntime, events: Sequence[type[EventData]]) -> None:
    """A service's express lane for ``events``, for the runtime's lifetime (``Service(express=...)``):
    started once Kafka is reachable, restarted after a crash (it only ever skips: nothing is lost)."""
    await runtime.kafka_ready.wait()
    backoff = 0.5
    while True:
        # its own producer: a send on the service's waits behind the relay's batches in flight (0.03-0.6 s seen)
        publisher = EventProducer(runtime.settings.kafka_bootstrap_servers, client_id=f"{runtime.group_id}-express")
        lane = ExpressLane(bootstrap_servers=runtime.settings.kafka_bootstrap_servers, group_id=runtime.group_id,
                           handlers=runtime.handlers, types=[e.event_type for e in events],
                           runner=lambda: runtime.runner, settings=runtime.settings.express, clock=runtime.clock,
                           producer=functools.partial(_same, publisher))
        try:
            await publisher.start()
            await lane.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("express lane crashed; restarting it", exc_info=True, extra={"group": lane.group_id})
        finally:
            with contextlib.suppress(Exception):  # never started (the broker away): nothing to close
                await run_to_completion(publisher.stop())
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
