"""The consumer runner's own CPU per event: a backlog through a ``ConsumerRunner`` with trivial batch handlers.

Against a throwaway durable PostgreSQL and Kafka broker (or ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``
when both are set), it publishes ``--events`` lead-captured events (a realistic profile each) over
``--partitions`` partitions, then consumes them with a runner of ``--batch-size`` whose batch handler does
nothing but emit one lead-scored event per input (its data built once; ``--no-emit``: not even that), so what
is measured is the runner: decode, claim, the handler context, wrapping the emitted data in an envelope, the
outbox insert, commit, offsets, metrics, spans (tracing off).

It prints this process's CPU time per event (``runner_cpu_per_event``: ``time.process_time`` over the
consumption, the Kafka client's own work included), the PostgreSQL backends' CPU per event, and the
wall-clock rate (which depends on the machine's load; compare CPU, not rates). ``--rounds`` repeats the
consumption on fresh topics and groups and prints the median. ``--rate N``: instead of a backlog, another
process publishes N events/s while the runner consumes, as in a live pipeline, where each fetch returns a
few records of many partitions. Profile it with py-spy::

    uv run --with py-spy py-spy record -o runner.svg -- python benchmarks/bench_runner.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psutil
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import Contact, LeadCaptured, LeadProfile, LeadScored
from leadbridge_contracts.topics import Topic
from leadbridge_events.admin import ensure_topics
from leadbridge_events.consumer import ConsumerRunner
from leadbridge_events.db import add_backbone_tables, create_schema, make_engine, session_factory
from leadbridge_events.producer import EventProducer
from leadbridge_events.registry import EventHandlers, on
from sqlalchemy import MetaData, func, select

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PROFILE = LeadProfile(
    contact=Contact(email="ana@example.com", phone="+4915112345678", name="Ana Example"),
    company="Example GmbH", job_title="VP Sales", company_size=250, industry="software", country="DE",
    language="de", channel="paid", campaign="q4-demo", form_type="demo_request", source="web_form", consent=True,
    utm={"utm_source": "google", "utm_medium": "cpc"},
)


@contextlib.contextmanager
def stack() -> Iterator[tuple[str, str, int | None]]:
    """The database URL, the bootstrap servers and the postmaster's pid (None: not ours to measure)."""
    if os.environ.get("DATABASE_URL") and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["DATABASE_URL"], os.environ["KAFKA_BOOTSTRAP_SERVERS"], None
        return
    sys.path.insert(0, os.path.dirname(__file__))
    from stack import durable_postgres, kafka_broker

    with durable_postgres() as pg, kafka_broker() as broker:
        postmaster = int((pg.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        yield pg.url, broker.bootstrap_servers, postmaster


def postgres_cpu(postmaster: int | None) -> float:
    """CPU seconds of the throwaway cluster's processes (the backends serving the runner among them); ended
    backends are not counted, so the runner's (pooled, long-lived) connections must outlive the measurement."""
    if postmaster is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(psutil.Error):
        main = psutil.Process(postmaster)
        for proc in [main, *main.children()]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
    return total


async def produce(producer: EventProducer, topic: str, n: int, leads: int, rate: float) -> None:
    """``n`` lead-captured events on ``topic``: all at once (``rate`` 0), or ``rate`` per second in 10 ms ticks."""
    events = [Envelope.of(LeadCaptured(lead_id=f"lead-{i}", captured_at=NOW, profile=PROFILE, dedupe_key=f"k-{i}"),
                          source="intake", lead_id=f"lead-{i % leads}") for i in range(n)]
    records = [(topic, e.kafka_key(), e.kafka_value(), e.kafka_headers()) for e in events]
    if not rate:
        await producer.send_many_raw(records)
        return
    started, sent = time.perf_counter(), 0
    while sent < n:
        due = min(n, int((time.perf_counter() - started) * rate) + 1)
        await asyncio.gather(*(producer.send_raw(t, v, key=k, headers=h) for t, k, v, h in records[sent:due]))
        sent = due
        await asyncio.sleep(0.01)


def produce_in_process(bootstrap: str, topic: str, n: int, leads: int, rate: float) -> None:
    async def run() -> None:
        async with EventProducer(bootstrap) as producer:
            await produce(producer, topic, n, leads, rate)

    asyncio.run(run())


async def one_round(database_url: str, bootstrap: str, postmaster: int | None, args: argparse.Namespace) -> tuple[float, float, float]:
    name = f"bench_runner_{uuid.uuid4().hex[:8]}"
    metadata = MetaData(schema=name)
    outbox, processed = add_backbone_tables(metadata)
    engine = make_engine(database_url)
    await create_schema(engine, metadata)
    topic = Topic(f"{name}-captured", ("lead-captured",), partitions=args.partitions)
    await ensure_topics(bootstrap, [topic])
    feeder = None
    async with EventProducer(bootstrap) as producer:
        if not args.rate:  # a backlog: everything is in Kafka before the runner starts
            await produce(producer, topic.name, args.events, args.leads, 0)

        async def one(event: Envelope[Any], ctx: Any) -> None:
            await batch([event], ctx)

        # the data emitted is built once: building it is the handler's work, wrapping and staging it the runner's
        scored = LeadScored(lead_id="lead-0", scored_at=NOW, score=72, fit=30, engagement=22, intent=20, grade="B",
                            stage="mql", became_mql=True, model_version="bench", matched_rules=[], profile=PROFILE)

        async def batch(batch_events: list[Envelope[Any]], ctx: Any) -> None:
            if args.emit:
                for e in batch_events:
                    await ctx.emit(Envelope.of(scored, source=name, lead_id=e.lead_id, caused_by=e))

        done = asyncio.Event()
        committed = 0

        def on_committed(_record: Any) -> None:
            nonlocal committed
            committed += 1
            if committed >= args.events:
                done.set()

        runner = ConsumerRunner(
            bootstrap_servers=bootstrap, group_id=name, topics=[topic.name],
            handlers=EventHandlers(on(LeadCaptured, one, batch=batch), emits=(LeadScored,)),
            sessions=session_factory(engine), processed=processed, outbox=outbox, producer=producer,
            batch_size=args.batch_size, batch_wait_ms=args.batch_wait_ms, on_committed=on_committed,
            **({"fetch_min_bytes": args.fetch_min_bytes, "fetch_max_wait_ms": args.fetch_max_wait_ms}
               if args.fetch_min_bytes > 1 else {}))
        pg_before, cpu_before, wall_before = postgres_cpu(postmaster), time.process_time(), time.perf_counter()
        task = asyncio.create_task(runner.run())
        if args.rate:  # a steady stream, published by another process (its CPU is not the runner's)
            await runner.wait_assigned()
            feeder = multiprocessing.get_context("spawn").Process(
                target=produce_in_process, args=(bootstrap, topic.name, args.events, args.leads, args.rate))
            feeder.start()
        await asyncio.wait_for(done.wait(), timeout=600)
        cpu, wall, pg = (time.process_time() - cpu_before, time.perf_counter() - wall_before,
                         postgres_cpu(postmaster) - pg_before)
        runner.stop()
        await task
    if feeder is not None:
        feeder.join()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
        claimed = (await conn.execute(select(func.count()).select_from(processed))).scalar_one()
    await engine.dispose()
    assert claimed == args.events and rows == (args.events if args.emit else 0), (claimed, rows)
    return cpu / args.events * 1e6, pg / args.events * 1e6, args.events / wall


async def main_async(args: argparse.Namespace) -> None:
    with stack() as (database_url, bootstrap, postmaster):
        results = []
        for i in range(args.rounds):
            cpu_us, pg_us, rate = await one_round(database_url, bootstrap, postmaster, args)
            print(f"round {i + 1}: runner {cpu_us:.0f} us/event, postgres {pg_us:.0f} us/event, {rate:.0f} events/s "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
            results.append((cpu_us, pg_us, rate))
        cpu_us, pg_us, rate = (statistics.median(r[k] for r in results) for k in range(3))
        mode = f"stream{args.rate:.0f}_" if args.rate else ""  # e.g. runner_stream500_cpu_per_event
        print(f"bench: runner_{mode}cpu_per_event={cpu_us:.0f} us")
        print(f"bench: runner_{mode}postgres_cpu_per_event={pg_us:.0f} us")
        print(f"bench: runner_{mode}events={rate:.0f} events/s")
        print(f"bench: runner_load_average={os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--leads", type=int, default=5_000, help="distinct lead ids (record keys)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-wait-ms", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0,
                        help="events/s published while the runner consumes (by another process); 0: a backlog first")
    parser.add_argument("--fetch-min-bytes", type=int, default=1,
                        help="the consumer's fetch_min_bytes (the broker holds a fetch until that much is there...)")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=500, help="(... or this long has passed)")
    parser.add_argument("--no-emit", dest="emit", action="store_false")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
