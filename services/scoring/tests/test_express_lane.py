"""Scoring's express lane with its real handlers: a new lead's capture is scored while the main group is far
behind; the lead's first lead-scored is marked first-of-lead, a rescore is not; when the main runner catches
up it skips the capture (one lead-scored for it, not two) and scores the lead's later activity after it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import Contact, LeadActivityRecorded, LeadCaptured, LeadProfile
from leadbridge_events.admin import ensure_topics
from leadbridge_events.consumer import ConsumerRunner
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.express import ExpressLane, ExpressSettings, first_of_lead
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_events.producer import EventProducer
from leadbridge_scoring import store
from leadbridge_scoring.handlers import HANDLERS
from leadbridge_scoring.model_file import default_model_path, load_model
from leadbridge_scoring.rescoring import Rescorer
from sqlalchemy import select

pytestmark = pytest.mark.integration
PARTITIONS = 6  # lead-captured's


def _partition(lead_id: str) -> int:
    return (murmur2(lead_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def _profile(title: str) -> LeadProfile:
    return LeadProfile(contact=Contact(email=f"{uuid.uuid4().hex[:8]}@acme.example"), job_title=title,
                       company_size=300, industry="Software", country="US", channel="paid", form_type="content")


def _capture(lead_id: str, title: str = "Marketing Manager") -> Envelope:
    now = datetime.now(UTC)
    return Envelope.of(LeadCaptured(lead_id=lead_id, captured_at=now, profile=_profile(title)), source="intake",
                       lead_id=lead_id, time=now)


async def _scored_rows(engine, lead_id: str) -> list[tuple[str | None, str]]:
    outbox = store.metadata.tables["scoring.outbox"]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.headers, outbox.c.value).where(outbox.c.key == lead_id)
                                   .order_by(outbox.c.id))).all()
    return [("marked" if "ce_firstoflead" in h else None, h["ce_type"]) for h, _ in rows]


async def _until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


async def test_a_new_lead_is_scored_in_the_express_lane_once(fresh_database_url, kafka_bootstrap, unique_name):
    await ensure_topics(kafka_bootstrap)
    engine = make_engine(fresh_database_url)
    await migrate(engine, store.metadata, migrations_dir("leadbridge_scoring"))
    fresh = f"lead-{uuid.uuid4()}"
    backlog = []
    while len(backlog) < 30:  # other leads' captures ahead of it on its partition, unmarked (the broker was down)
        lead = f"lead-{uuid.uuid4()}"
        if _partition(lead) == _partition(fresh):
            backlog.append(_capture(lead))
    async with EventProducer(kafka_bootstrap) as producer:
        lane = ExpressLane(bootstrap_servers=kafka_bootstrap, group_id=unique_name, handlers=HANDLERS,
                           types=["lead-captured"], runner=lambda: runner,
                           settings=ExpressSettings(max_age_seconds=10, min_lag=20))
        lane_task = asyncio.create_task(lane.run())
        main_task = None
        deps = Rescorer(load_model(default_model_path()))
        runner = ConsumerRunner(bootstrap_servers=kafka_bootstrap, group_id=unique_name, handlers=HANDLERS,
                                sessions=session_factory(engine), processed=store.metadata.tables[
                                    "scoring.processed_events"], outbox=store.metadata.tables["scoring.outbox"],
                                producer=producer, deps=deps, batch_size=100)
        try:
            await lane.wait_assigned()
            await _commit_at_end(kafka_bootstrap, unique_name)  # the main group: up to date until now, then stopped
            await producer.send_many_raw(("lead-captured", e.lead_id.encode(), e.kafka_value(), e.kafka_headers())
                                         for e in backlog)
            await producer.send(first_of_lead(_capture(fresh)))
            await _until(lambda: _has(engine, fresh, 1))
            assert await _scored_rows(engine, fresh) == [("marked", "io.leadbridge.lead-scored")]  # its first score
            assert all(await asyncio.gather(*(_has(engine, e.lead_id, 0, exactly=True) for e in backlog)))

            demo = LeadActivityRecorded(lead_id=fresh, activity_id="demo-1", occurred_at=datetime.now(UTC)
                                        + timedelta(seconds=1), kind="form_submission", form_type="demo_request")
            await producer.send(Envelope.of(demo, source="intake", lead_id=fresh))  # behind the capture
            main_task = asyncio.create_task(runner.run())
            await _until(lambda: _has(engine, fresh, 2))
            await _until(lambda: _has(engine, backlog[-1].lead_id, 1))
            await asyncio.sleep(0.5)
            # the capture once (the main runner found it claimed), then the demo request's rescore: not marked
            assert await _scored_rows(engine, fresh) == [("marked", "io.leadbridge.lead-scored"),
                                                         (None, "io.leadbridge.lead-scored")]
            assert all(await asyncio.gather(*(_has(engine, e.lead_id, 1, exactly=True) for e in backlog)))
        finally:
            lane.stop()
            runner.stop()
            await asyncio.gather(lane_task, main_task or runner.run())  # run(): closes its consumer
    await engine.dispose()


async def _commit_at_end(bootstrap: str, group: str) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition("lead-captured", p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    finally:
        await consumer.stop()


async def _has(engine, lead_id: str, n: int, *, exactly: bool = False) -> bool:
    got = len(await _scored_rows(engine, lead_id))
    return got == n if exactly else got >= n
