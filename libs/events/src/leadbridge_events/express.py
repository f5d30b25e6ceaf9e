"""The express lane: a brand-new lead's first event is handled at once, even behind a backlog of thousands.

Per-lead order is kept per partition, so a fresh lead posted while a stage drains a backlog (Kafka was down
for an hour) waits behind every older record of its partition. But the FIRST event of a lead has nothing of
its own lead to wait for: no earlier event of that lead exists, anywhere. Such an event may be handled out of
partition order; every later event of the lead is still handled in order, after it.

Producers mark such events (``first_of_lead(event)``: the Kafka header ``ce_firstoflead: true``, a
CloudEvents extension attribute; consumers that do not know it ignore it). Who knows an event is first:

- intake, for a ``lead-captured``: it is emitted only for a lead id minted in the same transaction (a repeat
  capture or the same person within the repeat window is a ``lead-activity-recorded`` of the existing lead,
  never marked, and it is emitted only after the capture committed, so it is behind it on the partition);
- scoring, for the ``lead-scored`` with no previous stage: the lead's first score (a rescore, a follow-up's
  stage change or a recycle has a previous stage and is never marked).

A service opting in (``Service(express=(LeadCaptured,))``) runs an ``ExpressLane`` beside its main
``ConsumerRunner``: its own consumer group ``<group>-express``, from the latest offset, no commits. For each
record it reads only the headers (no value decode) and takes the record only if ALL of these hold:

1. it is marked first-of-lead, of an event type the service opted in for;
2. it is fresh: its ``ce_time`` at most ``EXPRESS_MAX_AGE_SECONDS`` old (an outbox backlog relayed after an
   outage is all first-of-lead but old: the main runner takes it, in order);
3. the main group is behind on the record's partition by at least ``EXPRESS_MIN_LAG`` records (its committed
   offsets, read every half second): when the main runner keeps up, the lane only watches, and batches stay
   batches;
4. the lane's rate limit (``EXPRESS_MAX_PER_SECOND``) allows it: under sustained overload, when every new
   lead is fresh, the lane cannot turn the batch path back into one transaction per event.

It then applies the event exactly as the main runner does (``ConsumerRunner._apply``): one transaction with
the event-id claim **under the main group's id**, so when the main runner reaches the record it finds it
claimed and skips it as a duplicate (its effect happens once). If the main runner claimed it first, the lane's
claim waits for that commit and finds it taken. Any error (undecodable, a handler error, the database down):
the lane skips the record and the main runner handles it in order, with its retries and dead letters; the
lane never dead-letters. ``EXPRESS_ENABLED=false`` turns it off. Metrics: ``leadbridge_express_handled_total``
and ``leadbridge_express_skipped_total{reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from leadbridge_contracts.envelope import TYPE_PREFIX, Envelope, UndecodableEvent
from leadbridge_contracts.events import EventData
from leadbridge_contracts.topics import topic_for
from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .clock import Clock, utcnow
from .failures import describe
from .registry import EventHandlers
from .shutdown import run_to_completion
from .tracing import handling

if TYPE_CHECKING:
    from .consumer import ConsumerRunner
    from .runtime import ServiceRuntime

__all__ = ["HEADER", "ExpressLane", "ExpressSettings", "first_of_lead", "is_first_of_lead", "run_express_lane"]

log = logging.getLogger("leadbridge.express")

HEADER = "ce_firstoflead"  # CloudEvents extension attribute ``firstoflead`` in the Kafka binding
_MARK = b"true"
OFFSETS_REFRESH_SECONDS = 0.5

EXPRESS_HANDLED = Counter("leadbridge_express_handled_total",
                          "First events of new leads handled by the express lane ahead of the main consumer",
                          ["group", "topic"])
EXPRESS_SKIPPED = Counter(
    "leadbridge_express_skipped_total", "Records the express lane left to the main consumer, by reason "
    "(not_first, stale, main_not_behind, rate_limited, duplicate, failed, ...)", ["group", "topic", "reason"])


class ExpressSettings(BaseSettings):
    """The express lane's settings (``EXPRESS_*``, shared by every service; see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="EXPRESS_", env_file=None, extra="ignore", populate_by_name=True)

    enabled: bool = Field(default=True, description="Run the express lane in the services that opt in.")
    max_age_seconds: float = Field(default=2.0, gt=0, description="Only events at most this old (ce_time).")
    min_lag: int = Field(default=250, ge=0, description="Only while the main group is this many records behind "
                                                        "on the event's partition.")
    max_per_second: float = Field(default=50.0, gt=0, description="At most this many events per second (and burst).")


# -- producing: the mark ------------------------------------------------------------------------------


class _FirstOfLead(Envelope[Any]):
    """An envelope whose Kafka headers (and outbox row) carry the first-of-lead mark; otherwise the same event."""

    def ce_headers(self) -> dict[str, str]:  # kafka_headers and the outbox row's headers both derive from it
        return {**super().ce_headers(), HEADER: _MARK.decode()}


def first_of_lead(event: Envelope[Any]) -> Envelope[Any]:
    """``event``, marked as the first event of its lead: call it only when no earlier event of the lead exists
    (a lead minted in this transaction, a lead's first score). The mark travels as a header, through the outbox."""
    if isinstance(event, _FirstOfLead):
        return event
    return _FirstOfLead.model_construct(_fields_set=set(event.model_fields_set),
                                        **{name: getattr(event, name) for name in Envelope.model_fields})


def is_first_of_lead(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    return any(k == HEADER and v == _MARK for k, v in headers or ())


# -- consuming: the lane ------------------------------------------------------------------------------


class _Bucket:
    """A token bucket: ``rate`` per second, bursts of up to ``rate``."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class ExpressLane:
    """Handles fresh first-of-lead events ahead of a main runner that is behind (see the module docstring)."""

    def __init__(self, *, bootstrap_servers: str, group_id: str, handlers: EventHandlers,
                 types: Collection[str], runner: Callable[[], ConsumerRunner | None],
                 settings: ExpressSettings | None = None, clock: Clock = utcnow,
                 topics: Sequence[str] | None = None, **consumer_options: Any) -> None:
        self.main_group = group_id
        self.group_id = f"{group_id}-express"
        self.settings = settings or ExpressSettings()
        self.types = frozenset(t for t in types if t in handlers)
        self.topics = tuple(topics or dict.fromkeys(topic_for(t).name for t in self.types))
        self._handlers = handlers
        self._runner = runner
        self._clock = clock
        self._bootstrap = bootstrap_servers
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=self.group_id, enable_auto_commit=False,
            auto_offset_reset="latest",  # offsets do not matter: only what is fresh is taken
            metadata_max_age_ms=consumer_options.pop("metadata_max_age_ms", 10_000), **consumer_options)
        self._admin: AIOKafkaAdminClient | None = None
        self._main_offsets: dict[TopicPartition, int] = {}
        self._offsets_at = float("-inf")
        self._bucket = _Bucket(self.settings.max_per_second)
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()

    async def run(self) -> None:
        self._consumer.subscribe(list(self.topics))
        await self._consumer.start()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self.group_id)
        try:
            await self._admin.start()
            self._started.set()
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=100, max_records=1000)
                for records in batches.values():
                    for record in records:
                        await self.consider(record)
        finally:  # also when cancelled: leave the group and close the connections
            await run_to_completion(self._close())

    async def _close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        await self._consumer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def wait_assigned(self, timeout: float = 30.0) -> None:
        """Until the lane has partitions and their starting (latest) offsets (handy in tests)."""
        await asyncio.wait_for(self._started.wait(), timeout)
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
        if not is_first_of_lead(headers):
            return "not_first"
        attrs = {k: v for k, v in headers if k in ("ce_type", "ce_time")}
        event_type = attrs.get("ce_type", b"").decode(errors="replace").removeprefix(TYPE_PREFIX)
        if event_type not in self.types:
            return "not_first"
        try:
            age = (self._clock() - datetime.fromisoformat(attrs["ce_time"].decode())).total_seconds()
        except (KeyError, ValueError, TypeError):
            return "undecodable"  # the main runner dead-letters it if it is
        if age > self.settings.max_age_seconds:
            return "stale"
        if not await self._main_behind(TopicPartition(record.topic, record.partition), record.offset):
            return "main_not_behind"
        runner = self._runner()
        if runner is None:
            return "no_runner"
        if not self._bucket.take():
            return "rate_limited"
        return await self._apply(runner, record, event_type)

    async def _apply(self, runner: ConsumerRunner, record: ConsumerRecord, event_type: str) -> str:
        try:
            event = Envelope.from_kafka(record.key, record.value, record.headers)
        except UndecodableEvent:
            return "undecodable"
        handles = self._handlers.get(event.type)
        if handles is None or event.type != event_type:
            return "not_first"
        started = time.perf_counter()
        try:
            with handling(record, event, self.group_id):  # a span, child of the record's traceparent
                duplicate = await runner._apply(handles.handler, event, record)  # claimed as the main group
        except Exception as exc:  # any fault: the main runner handles it, in order, with retries and the DLQ
            log.info("express lane left an event to the main consumer: %s", describe(exc),
                     extra={"event_id": event.id, "lead_id": event.lead_id, "topic": record.topic,
                            "group": self.group_id})
            return "failed"
        if duplicate:
            return "duplicate"
        log.info("first event of a new lead handled in the express lane",
                 extra={"event_id": event.id, "lead_id": event.lead_id, "topic": record.topic,
                        "group": self.group_id, "seconds": round(time.perf_counter() - started, 4)})
        return "handled"

    async def _main_behind(self, tp: TopicPartition, offset: int) -> bool:
        """Is the main group at least ``min_lag`` records behind ``offset`` on ``tp`` (its committed offsets)?"""
        if self.settings.min_lag == 0:
            return True
        if time.monotonic() - self._offsets_at > OFFSETS_REFRESH_SECONDS:
            self._offsets_at = time.monotonic()
            try:
                assert self._admin is not None
                committed = await self._admin.list_consumer_group_offsets(self.main_group)
            except Exception as exc:  # the broker is away: unknown, so the main runner keeps the record
                log.debug("main group's offsets not readable: %s", exc)
                self._main_offsets = {}
                return False
            # no committed offset yet (a new group draining from the start): behind by the record's offset
            self._main_offsets = {p: o.offset for p, o in committed.items() if o.offset >= 0}
        return offset - self._main_offsets.get(tp, 0) >= self.settings.min_lag


async def run_express_lane(runtime: ServiceRuntime, events: Sequence[type[EventData]]) -> None:
    """A service's express lane for ``events``, for the runtime's lifetime (``Service(express=...)``):
    started once Kafka is reachable, restarted after a crash (it only ever skips: nothing is lost)."""
    await runtime.kafka_ready.wait()
    backoff = 0.5
    while True:
        lane = ExpressLane(bootstrap_servers=runtime.settings.kafka_bootstrap_servers, group_id=runtime.group_id,
                           handlers=runtime.handlers, types=[e.event_type for e in events],
                           runner=lambda: runtime.runner, settings=runtime.settings.express, clock=runtime.clock)
        try:
            await lane.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("express lane crashed; restarting it", exc_info=True, extra={"group": lane.group_id})
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
