"""The express lane, against the real broker and database: a fresh first-of-lead event is handled while the
main group is far behind, the main runner later skips it (one effect, one outbox row); an unmarked, stale or
not-behind event is left to the main runner; an express failure leaves the event to the main runner."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from aiokafka.structs import OffsetAndMetadata
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadActivityRecorded, LeadCaptured, LeadProfile
from leadbridge_events.consumer import ConsumerRunner
from leadbridge_events.express import (
    ExpressLane,
    ExpressSettings,
    first_of_lead,
    first_of_lead_since,
    is_first_of_lead,
)
from leadbridge_events.express_pace import WATCH_SECONDS
from leadbridge_events.outbox import outbox_row
from leadbridge_events.registry import EventHandlers, on
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from .test_consumer_runner import _ge, count_effects, wait_for

pytestmark = pytest.mark.integration


def capture(lead_id: str, *, marked: bool = True, age: float = 0.0) -> Envelope:
    at = datetime.now(UTC) - timedelta(seconds=age)
    event = Envelope.of(LeadCaptured(lead_id=lead_id, captured_at=at, profile=LeadProfile()), source="intake",
                        lead_id=lead_id, time=at)
    return first_of_lead(event) if marked else event


def partition_of(lead_id: str, partitions: int) -> int:
    return (murmur2(lead_id.encode()) & 0x7FFFFFFF) % partitions  # the producer's default partitioner


def leads_on(partition: int, partitions: int, n: int) -> list[str]:
    found: list[str] = []
    while len(found) < n:
        lead = f"lead-{uuid.uuid4()}"
        if partition_of(lead, partitions) == partition:
            found.append(lead)
    return found


def skipped(group: str, topic: str, reason: str) -> float:
    return REGISTRY.get_sample_value("leadbridge_express_skipped_total",
                                     {"group": group, "topic": topic, "reason": reason}) or 0.0


def handled(group: str, topic: str) -> float:
    return REGISTRY.get_sample_value("leadbridge_express_handled_total", {"group": group, "topic": topic}) or 0.0


async def _reaches(read, n: float) -> bool:
    return bool(read() >= n)


class Stage:
    """A main runner (not started: the main group is 'far behind') and its express lane, on the test topic."""

    def __init__(self, backbone, producer, kafka_bootstrap, topic, group, *, fail_first: set[str] | None = None,
                 **settings) -> None:
        self.backbone, self.topic, self.group = backbone, topic, group
        self.calls: dict[str, int] = {}
        fail_first = fail_first if fail_first is not None else set()

        async def handler(event, ctx):
            self.calls[event.lead_id] = self.calls.get(event.lead_id, 0) + 1
            if event.lead_id in fail_first and self.calls[event.lead_id] == 1:
                raise RuntimeError("the first attempt fails")
            await ctx.session.execute(backbone.effects.insert().values(event_id=event.id, lead_id=event.lead_id))
            await ctx.emit(Envelope.of(LeadActivityRecorded(lead_id=event.lead_id, activity_id="echo",
                                                            occurred_at=datetime.now(UTC), kind="echo"),
                                       source="test", lead_id=event.lead_id), topic=topic.name + "-out")

        self.handlers = EventHandlers(on(LeadCaptured, handler), on(LeadActivityRecorded, handler),
                                      emits=(LeadActivityRecorded,))
        self.runner = ConsumerRunner(
            bootstrap_servers=kafka_bootstrap, group_id=group, handlers=self.handlers, topics=[topic.name],
            sessions=backbone.sessions, processed=backbone.processed, outbox=backbone.outbox, producer=producer,
            backoff_seconds=0.01, batch_size=50)
        self.lane = ExpressLane(bootstrap_servers=kafka_bootstrap, group_id=group, handlers=self.handlers,
                                types=["lead-captured"], runner=lambda: self.runner, topics=[topic.name],
                                settings=ExpressSettings(**{"max_age_seconds": 5, "min_lag": 20, **settings}))
        self._tasks: list[asyncio.Task] = []

    async def start_lane(self) -> None:
        self._tasks.append(asyncio.create_task(self.lane.run()))
        await self.lane.wait_assigned()

    async def start_main(self) -> None:
        self._main = asyncio.create_task(self.runner.run())
        self._tasks.append(self._main)

    async def stop(self) -> None:
        if not hasattr(self, "_main"):
            await self.start_main()  # so that its consumer is closed too
        self.lane.stop()
        self.runner.stop()
        await asyncio.gather(*self._tasks)

    async def effects_of(self, lead_id: str) -> int:
        return await count_effects(self.backbone, lead_id=lead_id)

    async def outbox_rows(self, lead_id: str) -> int:
        async with self.backbone.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(self.backbone.outbox)
                                       .where(self.backbone.outbox.c.key == lead_id))).scalar_one()


async def _paused_all(lane: ExpressLane) -> bool:
    assigned = lane._consumer.assignment()
    return bool(assigned) and lane._consumer.paused() == assigned


async def _backlog(producer, topic, partition: int, n: int) -> list[Envelope]:
    """``n`` unmarked events of other leads on ``partition``: the main group is at least ``n`` behind there."""
    events = [capture(lead, marked=False) for lead in leads_on(partition, topic.partitions, n)]
    await producer.send_many_raw((topic.name, e.lead_id.encode(), e.kafka_value(), e.kafka_headers()) for e in events)
    return events


def test_the_mark_travels_in_the_headers_and_the_outbox_row():
    event = capture("lead-1", marked=False)
    marked = first_of_lead(event)
    assert is_first_of_lead(marked.kafka_headers()) and not is_first_of_lead(event.kafka_headers())
    assert datetime.fromisoformat(outbox_row(marked)["headers"]["ce_firstoflead"]) == event.time
    assert first_of_lead_since(marked.kafka_headers()) == event.time  # when the lead was captured
    scored_later = first_of_lead(capture("lead-1", marked=False), since=event.time - timedelta(minutes=5))
    assert first_of_lead_since(scored_later.kafka_headers()) == event.time - timedelta(minutes=5)
    assert "ce_firstoflead" not in outbox_row(event)["headers"]
    assert (marked.id, marked.type, marked.lead_id, marked.data) == (event.id, event.type, event.lead_id, event.data)
    assert marked.kafka_value() == event.kafka_value()
    assert first_of_lead_since(first_of_lead(scored_later).kafka_headers()) == event.time - timedelta(minutes=5)
    decoded = Envelope.from_kafka(marked.kafka_key(), marked.kafka_value(), marked.kafka_headers())
    assert decoded.id == event.id  # consumers that do not know the mark ignore it


async def test_a_fresh_first_event_is_handled_ahead_of_the_backlog_and_then_skipped_by_the_main_runner(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    stage = Stage(backbone, producer, kafka_bootstrap, topic, unique_name)
    await stage.start_lane()
    try:
        await wait_for(lambda: _paused_all(stage.lane), timeout=10)  # nothing behind yet: the lane fetches nothing
        fresh = f"lead-{uuid.uuid4()}"
        partition = partition_of(fresh, topic.partitions)
        backlog = await _backlog(producer, topic, partition, 30)
        plain, stale = leads_on(partition, topic.partitions, 2)
        await producer.send(capture(plain, marked=False), topic=topic.name)  # not marked first-of-lead
        await producer.send(capture(stale, age=60), topic=topic.name)  # marked, but a minute old
        await producer.send(capture(fresh), topic=topic.name)
        await wait_for(lambda: _ge(stage.effects_of(fresh), 1), timeout=20)
        await asyncio.sleep(0.5)
        assert await count_effects(backbone) == 1  # nothing else: the main runner has not started
        assert handled(unique_name, topic.name) == 1
        assert skipped(unique_name, topic.name, "stale") == 1
        assert skipped(unique_name, topic.name, "not_first") >= 31
        async with backbone.engine.connect() as conn:  # claimed under the MAIN group's id
            consumers = (await conn.execute(select(backbone.processed.c.consumer))).scalars().all()
        assert consumers == [unique_name]

        await stage.start_main()
        total = len(backlog) + 3
        await wait_for(lambda: _ge(count_effects(backbone), total))
        await asyncio.sleep(1.0)
        assert await count_effects(backbone) == total
        assert await stage.effects_of(fresh) == 1 and stage.calls[fresh] == 1  # the main runner skipped it
        assert await stage.outbox_rows(fresh) == 1  # one emitted event, not two
    finally:
        await stage.stop()


async def test_a_fresh_lead_on_a_partition_the_main_group_caught_up_on_goes_ahead_of_the_others_backlog(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    """One main runner handles every partition in one loop: a record of a partition it has caught up on waits
    behind the backlog of the others (4.4 s seen in a drain, where the lane had said "main_not_behind")."""
    stage = Stage(backbone, producer, kafka_bootstrap, topic, unique_name)
    await stage.start_lane()
    try:
        fresh = f"lead-{uuid.uuid4()}"
        here = partition_of(fresh, topic.partitions)
        there = (here + 1) % topic.partitions
        backlog = await _backlog(producer, topic, there, 30)  # nothing on the fresh lead's own partition
        await asyncio.sleep(3 * WATCH_SECONDS)  # the lane has read the main group's offsets and the ends since
        await producer.send(capture(fresh), topic=topic.name)
        await wait_for(lambda: _ge(stage.effects_of(fresh), 1), timeout=10)
        assert handled(unique_name, topic.name) == 1
        assert skipped(unique_name, topic.name, "main_not_behind") == 0
        await stage.start_main()
        await wait_for(lambda: _ge(count_effects(backbone), len(backlog) + 1))
        assert await stage.effects_of(fresh) == 1 and stage.calls[fresh] == 1  # the main runner skipped it
    finally:
        await stage.stop()


async def test_the_lane_runs_between_the_main_runners_batches_and_skips_its_own_events_copies(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    stage = Stage(backbone, producer, kafka_bootstrap, topic, unique_name, min_wait_seconds=0)
    await stage.start_lane()
    try:
        fresh = f"lead-{uuid.uuid4()}"
        await _backlog(producer, topic, partition_of(fresh, topic.partitions), 30)
        event = capture(fresh)
        async with stage.runner._lock:  # the main runner has a batch in flight
            await producer.send(event, topic=topic.name)
            await asyncio.sleep(1.0)
            assert await stage.effects_of(fresh) == 0  # the lane waits for that batch's end...
        await wait_for(lambda: _ge(stage.effects_of(fresh), 1), timeout=10)  # ...then goes ahead of the next
        assert handled(unique_name, topic.name) == 1
        async with stage.runner._lock:
            await producer.send(event, topic=topic.name)  # the relay's copy of it, a moment later
            await wait_for(lambda: _reaches(lambda: skipped(unique_name, topic.name, "duplicate"), 1), timeout=1.5)
        assert stage.calls[fresh] == 1  # known by its id: no transaction, no wait for the main runner
    finally:
        await stage.stop()


async def test_the_lane_leaves_events_to_a_main_runner_that_keeps_up(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    stage = Stage(backbone, producer, kafka_bootstrap, topic, unique_name)
    await stage.start_main()
    await stage.runner.wait_assigned()
    await stage.start_lane()
    try:
        leads = [f"lead-{uuid.uuid4()}" for _ in range(5)]
        for lead in leads:
            await producer.send(capture(lead), topic=topic.name)
        await wait_for(lambda: _ge(count_effects(backbone), len(leads)))
        await asyncio.sleep(0.5)
        assert handled(unique_name, topic.name) == 0
        assert skipped(unique_name, topic.name, "main_not_behind") <= len(leads)  # those fetched before it paused
        assert await count_effects(backbone) == len(leads)
        # the main group keeps up: the lane stops fetching (no second fetch of every record)
        await wait_for(lambda: _paused_all(stage.lane), timeout=10)
        seen = skipped(unique_name, topic.name, "main_not_behind")
        more = [f"lead-{uuid.uuid4()}" for _ in range(5)]
        for lead in more:
            await producer.send(capture(lead), topic=topic.name)
        await wait_for(lambda: _ge(count_effects(backbone), len(leads) + len(more)))
        await asyncio.sleep(0.3)
        assert skipped(unique_name, topic.name, "main_not_behind") == seen and handled(unique_name, topic.name) == 0
    finally:
        await stage.stop()


@pytest.mark.parametrize("cap", [10, 0])
async def test_while_the_main_group_is_behind_its_transactions_are_short(
        backbone, producer, kafka_bootstrap, topic, unique_name, cap):
    """A fresh lead waits for the main runner's transaction in flight: while the lane goes ahead of it, those hold
    at most EXPRESS_MAIN_BATCH_SIZE records (0: the runner's own batch size, 50 here); caught up, no cap."""
    stage = Stage(backbone, producer, kafka_bootstrap, topic, unique_name, main_batch_size=cap)
    await stage.start_lane()
    try:
        backlog = await _backlog(producer, topic, 0, 120)
        if cap:
            await wait_for(lambda: _reaches(lambda: stage.runner.batch_cap or 0, cap), timeout=10)
        await stage.start_main()
        await wait_for(lambda: _ge(count_effects(backbone), len(backlog)))
        if cap:
            assert stage.runner.stats.largest == cap and stage.runner.stats.transactions >= len(backlog) // cap
            await wait_for(lambda: _reaches(lambda: stage.runner.batch_cap is None, True), timeout=10)  # caught up
        else:
            assert stage.runner.batch_cap is None and stage.runner.stats.largest > 10
    finally:
        await stage.stop()


async def test_an_express_failure_leaves_the_event_to_the_main_runner(
        backbone, producer, kafka_bootstrap, topic, unique_name):
    fresh = f"lead-{uuid.uuid4()}"
    stage = Stage(backbone, producer, kafka_bootstrap, topic, unique_name, fail_first={fresh})
    await stage.start_lane()
    try:
        backlog = await _backlog(producer, topic, partition_of(fresh, topic.partitions), 30)
        await producer.send(capture(fresh), topic=topic.name)
        await wait_for(lambda: _reaches(lambda: skipped(unique_name, topic.name, "failed"), 1), timeout=20)
        assert await stage.effects_of(fresh) == 0  # rolled back, not retried, not dead-lettered by the lane
        await stage.start_main()
        await wait_for(lambda: _ge(count_effects(backbone), len(backlog) + 1))
        await asyncio.sleep(0.5)
        assert await stage.effects_of(fresh) == 1 and stage.calls[fresh] == 2
        assert await stage.outbox_rows(fresh) == 1
    finally:
        await stage.stop()


async def test_the_rate_limit_caps_the_lane(backbone, producer, kafka_bootstrap, topic, unique_name):
    stage = Stage(backbone, producer, kafka_bootstrap, topic, unique_name, max_per_second=2, min_lag=0,
                  min_wait_seconds=0)  # always behind
    await stage.start_lane()
    try:
        leads = [f"lead-{uuid.uuid4()}" for _ in range(10)]
        await producer.send_many_raw((topic.name, e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                     for e in (capture(lead) for lead in leads))
        await wait_for(lambda: _reaches(lambda: handled(unique_name, topic.name)
                                        + skipped(unique_name, topic.name, "rate_limited"), 10))
        assert 2 <= handled(unique_name, topic.name) <= 4  # a burst of 2, plus what refilled meanwhile
    finally:
        await stage.stop()


class _Offsets:
    """The admin client's committed offsets of the main group, as the test sets them."""

    def __init__(self) -> None:
        self.committed: dict = {}

    async def list_consumer_group_offsets(self, group):
        return {tp: OffsetAndMetadata(o, "") for tp, o in self.committed.items()}


def _unstarted_lane() -> ExpressLane:
    """A lane never started (no broker): its ``_main_behind`` over offsets the test sets (``_Offsets``)."""
    async def nothing(event, ctx):
        return None

    return ExpressLane(bootstrap_servers="127.0.0.1:9", group_id="g", handlers=EventHandlers(on(LeadCaptured, nothing)),
                       types=["lead-captured"], runner=lambda: None, topics=["t"],
                       settings=ExpressSettings(min_lag=10, min_wait_seconds=0.5))


async def test_behind_means_records_that_would_wait_at_the_main_groups_pace():
    lane = _unstarted_lane()
    tp = TopicPartition("t", 0)
    admin = lane._admin = _Offsets()

    async def behind(offset: int, committed: int | None = None, seconds_since_last_read: float = 1.0) -> bool:
        if committed is not None:
            admin.committed[tp] = committed
            lane._offsets_at = float("-inf")  # read again now, one "second" after the last read
            lane._read_at = time.monotonic() - seconds_since_last_read
        return await lane._main_behind(tp, offset)

    try:
        assert await behind(1030, committed=1000)  # 30 ahead, pace unknown yet: the records decide
        assert not await behind(1005)  # fewer than EXPRESS_MIN_LAG
        assert not await behind(1130, committed=1100)  # 100 records/s: 30 ahead is 0.3 s of waiting
        assert await behind(1160)  # 60 ahead: 0.6 s
        assert await behind(1130, committed=1100)  # stalled: the pace halves (moving average), 30 is 0.6 s
    finally:
        await lane._consumer.stop()


async def test_behind_counts_the_main_groups_backlog_on_the_lanes_other_partitions():
    lane = _unstarted_lane()
    here, there = TopicPartition("t", 0), TopicPartition("t", 1)
    admin = lane._admin = _Offsets()
    admin.committed = {here: 500, there: 1000}
    try:
        lane._ends = {here: 500, there: 1000}
        assert not await lane._main_behind(here, 500)  # caught up everywhere
        lane._ends = {here: 500, there: 1030}
        assert await lane._main_behind(here, 500)  # 30 records of the other partition first, pace unknown
        lane._rates = {here: 0.0, there: 100.0}
        assert not await lane._main_behind(here, 500)  # 0.3 s of them at 100 records/s
        lane._ends = {here: 500, there: 1200}
        assert await lane._main_behind(here, 500)  # 2 s
    finally:
        await lane._consumer.stop()
