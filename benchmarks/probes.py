"""What `make bench` watches and feeds besides HTTP load: lead-routed records, and a backlog put on Kafka.

- ``RoutedCounter``: the number of records on ``lead-routed`` (sum of end offsets), polled;
- ``routed_latency``: capture->routed per lead at a fixed offered rate (posted over HTTP, the routed
  record seen by a consumer of ``lead-routed`` in a process of its own), with the poster's own CPU use;
- ``RoutedWatcher``: the moment one given lead's routed record appears (the fresh lead during a drain);
- ``publish_backlog``: N LeadCaptured events written straight to ``lead-captured``, as intake's relay
  would have published them when the broker came back;
- ``caught_up``: how far behind a consumer group (insights, which yields the cores to the routing path) is,
  and how long it takes to have handled everything.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadCaptured
from leadbridge_contracts.topics import ALL_TOPICS, LEAD_CAPTURED, LEAD_ROUTED, LEAD_SCORED, Topic
from leadbridge_intake.submission import LeadSubmission
from poster import post_leads
from record_times import RecordTimesProcess

ROUTED = "lead-routed"


def lead_body(i: int) -> dict:
    tag = uuid.uuid4().hex[:12]
    return {"email": f"vp-{tag}@company-{tag}.example", "company": f"Company {tag}", "job_title": "VP Sales",
            "company_size": 500, "industry": "software", "country": "DE", "language": "en", "channel": "paid",
            "campaign": f"bench-{i % 5}", "form_type": "demo_request", "consent": True}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


class RoutedCounter:
    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._parts = [TopicPartition(ROUTED, p) for p in range(LEAD_ROUTED.partitions)]

    async def __aenter__(self) -> RoutedCounter:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await self._consumer.start()
        self._consumer.assign(self._parts)  # metadata for exactly these partitions (the topic exists by now)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def count(self) -> int:
        return sum((await self._consumer.end_offsets(self._parts)).values())

    async def wait_for(self, target: int, timeout: float, interval: float = 0.1) -> tuple[int, float]:
        """Poll until ``target`` records; returns (count, perf_counter time it was first seen)."""
        deadline = time.perf_counter() + timeout
        while True:
            n = await self.count()
            now = time.perf_counter()
            if n >= target or now > deadline:
                return n, now
            await asyncio.sleep(interval)


async def caught_up(bootstrap: str, group: str, topics: tuple[str, ...], timeout: float) -> tuple[int, float]:
    """``group``'s lag now (records on ``topics`` it has yet to handle and commit), and the seconds until it is
    0 (``timeout`` if it never gets there: then nan)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        parts = [TopicPartition(t.name, p) for t in ALL_TOPICS if t.name in topics for p in range(t.partitions)]
        started, first = time.perf_counter(), None
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(parts)
            lag = sum(max(end - max(committed[tp].offset if tp in committed else 0, 0), 0) for tp, end in ends.items())
            first = lag if first is None else first
            waited = time.perf_counter() - started
            if lag == 0 or waited > timeout:
                return first, waited if lag == 0 else float("nan")
            await asyncio.sleep(0.25)
    finally:
        await consumer.stop()
        await admin.close()


async def _latest_consumer(bootstrap: str, topics: tuple[Topic, ...]) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    parts = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    return consumer


HOPS = (LEAD_CAPTURED, LEAD_SCORED, LEAD_ROUTED)  # the topics a fresh lead crosses, in order


class RoutedWatcher:
    """Records when each posted lead's first lead-routed record arrives, and when (the records' CreateTime,
    set by the producer that sent them) its first lead-captured, lead-scored and lead-routed were published."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self.posted: dict[str, float] = {}
        self.posted_at: dict[str, float] = {}  # wall clock (s), to set beside the records' CreateTime
        self.answered: dict[str, float] = {}  # s from the POST to its 202
        self.latencies: dict[str, float] = {}
        self.published: dict[tuple[str, str], float] = {}  # (lead, topic) -> CreateTime (s)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> RoutedWatcher:
        self._consumer = await _latest_consumer(self._bootstrap, HOPS)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def sent(self, lead: str, perf: float, wall: float, answered: float) -> None:
        """``lead`` was POSTed at ``perf`` (perf_counter) = ``wall`` (time.time), its 202 received ``answered`` s later."""
        self.posted[lead], self.posted_at[lead], self.answered[lead] = perf, wall, answered

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for tp, records in batches.items():
                for r in records:
                    lead = r.key.decode() if r.key else ""
                    if lead not in self.posted:
                        continue
                    self.published.setdefault((lead, tp.topic), r.timestamp / 1000)
                    if tp.topic == ROUTED and lead not in self.latencies:
                        self.latencies[lead] = now - self.posted[lead]

    def hops(self, lead: str) -> dict[str, float]:
        """ms per hop: POST sent -> lead-captured published -> lead-scored -> lead-routed -> seen here (and the
        POST's own time, ``answered``)."""
        times = [self.posted_at.get(lead)] + [self.published.get((lead, t.name)) for t in HOPS]
        if lead in self.latencies:
            times.append(self.posted_at[lead] + self.latencies[lead])
        names = ("captured", "scored", "routed", "seen")
        pairs = zip(names, times, times[1:], strict=False)
        hops = {"answered": self.answered.get(lead, float("nan")) * 1000}
        return hops | {n: (b - a) * 1000 for n, a, b in pairs if a is not None and b is not None}

    async def wait(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while len(self.latencies) < len(self.posted) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)


async def routed_latency(url: str, key: str, bootstrap: str, rate: float, seconds: float) -> dict[str, float]:
    """Posted at ``rate``; each lead's latency from its POST to its lead-routed record seen by a consumer in a
    process of its own (``RecordTimesProcess``: this process's loop, busy posting, would delay a consumer of its
    own and count that as the pipeline's time). Both ends on the machine's wall clock; the poster is
    ``poster.post_leads`` (plain asyncio streams: httpx used 0.41 cores at 200 leads/s)."""
    total = int(rate * seconds)
    async with RecordTimesProcess(bootstrap, (LEAD_ROUTED,)) as rec:
        answered, generator_cpu = await post_leads(url, key, rate, seconds, lead_body)
        posted = {lead: sent for lead, (sent, _) in answered.items()}
        await rec.wait_routed(list(posted), 30)
    lat = [rec.seen[ROUTED, lead] - sent for lead, sent in posted.items() if (ROUTED, lead) in rec.seen]
    return {
        "offered": total,
        "accepted": len(posted),
        "routed": len(lat),
        "p50_ms": pct(lat, 0.50) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": max(lat, default=float("nan")) * 1000,
        "generator_cpu": generator_cpu,
    }


# the backlog's leads were captured while the broker was down, so they are not fresh when it comes back. Stamped
# "now" (until the tenth round), the first lead-scored of those drained in the first seconds were fresh to the
# router's express lane (EXPRESS_MAX_AGE_SECONDS, 10): it weighed each, and a fresh lead posted then waited longer
BACKLOG_CAPTURED_AGO = timedelta(minutes=5)


async def publish_backlog(bootstrap: str, n: int) -> float:
    """Write ``n`` LeadCaptured events to lead-captured (batched sends), captured ``BACKLOG_CAPTURED_AGO`` ago
    (during the outage); returns the seconds it took."""
    profile = LeadSubmission.model_validate(lead_body(0)).profile(source="bench")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        now = datetime.now(UTC) - BACKLOG_CAPTURED_AGO
        for _ in range(n):
            lead_id = str(uuid.uuid4())
            p = profile.model_copy(update={"contact": profile.contact.model_copy(
                update={"email": f"backlog-{lead_id}@company-{lead_id[:8]}.example"})})
            event = Envelope.of(LeadCaptured(lead_id=lead_id, captured_at=now, profile=p), source="intake",
                                lead_id=lead_id, time=now)
            pending.append(await producer.send("lead-captured", event.kafka_value(), key=lead_id.encode(),
                                               headers=list(event.kafka_headers())))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started
