"""Where capture->routed time goes: each hop of single leads timed, at fixed offered rates (issue 16).

Starts what ``make bench``'s pipeline phase starts (a throwaway DURABLE PostgreSQL, a throwaway Kafka broker,
all six services) and posts leads at each ``--rates`` rate for ``--seconds``. For every lead it joins:

- the HTTP POST (sent, answered: the poster's wall clock);
- intake's outbox row ``created_at`` (the group commit's transaction), and the lead-captured record's
  timestamp (CreateTime: when intake's relay handed it to the producer);
- scoring's outbox row ``created_at`` (its batch transaction) and the lead-scored record's timestamp;
- router's outbox row ``created_at`` and the lead-routed record's timestamp; the moment a consumer of
  lead-routed saw it (a consumer in a process of its own, not the poster's: ``RecordTimesProcess``).

All on the one machine's wall clock (PostgreSQL's ``now()`` is its transaction's start). Printed per rate
as ``bench: hop_<hop>_at_<rate>_p50=<ms> ms`` (and ``_p99``), the hops being:

``http`` (POST answered), ``intake_tx`` (POST sent -> intake's transaction), ``intake_relay`` (intake's
transaction -> lead-captured published: its commit, NOTIFY, the relay's select), ``scoring_in`` (lead-captured
published -> scoring's transaction: acks, fetch, getmany), ``scoring_relay`` (scoring's transaction ->
lead-scored published), ``router_in``, ``router_relay``, ``seen`` (lead-routed published -> a consumer sees
it), and ``total`` (POST sent -> lead-routed seen).

``python benchmarks/bench_latency.py --rates 5,20,200 --seconds 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from leadbridge_contracts.topics import LEAD_CAPTURED

sys.path.insert(0, str(Path(__file__).parent))
from bench_system import ALL, start  # noqa: E402
from loadgen import CpuMeter  # noqa: E402
from poster import post_leads  # noqa: E402
from probes import lead_body, pct  # noqa: E402
from raw_rates import plain_dsn  # noqa: E402
from record_times import RecordTimes, RecordTimesProcess  # noqa: E402
from stack import DURABLE, durable_postgres, kafka_broker  # noqa: E402

HOPS = ("http", "intake_tx", "intake_relay", "scoring_in", "scoring_relay", "router_in", "router_relay", "seen",
        "total")


async def outbox_times(dsn: str, leads: list[str]) -> dict[tuple[str, str], float]:
    """(schema, lead) -> created_at of the lead's outbox row of the pipeline's topic, in epoch seconds."""
    wanted = {"intake": "lead-captured", "scoring": "lead-scored", "router": "lead-routed"}
    conn = await asyncpg.connect(dsn)
    try:
        out: dict[tuple[str, str], float] = {}
        for schema, topic in wanted.items():
            rows = await conn.fetch(f"SELECT key, min(extract(epoch FROM created_at)) AS t FROM {schema}.outbox "
                                    "WHERE topic = $1 AND key = ANY($2::text[]) GROUP BY key", topic, leads)
            out.update({(schema, r["key"]): float(r["t"]) for r in rows})
        return out
    finally:
        await conn.close()


async def post_at(url: str, key: str, rate: float, seconds: float) -> dict[str, tuple[float, float]]:
    """Post leads at ``rate`` for ``seconds``; lead id -> (sent, answered), epoch seconds (``poster``)."""
    posted, _ = await post_leads(url, key, rate, seconds, lead_body)
    return posted


def hops_of(lead: str, posted: tuple[float, float], rec: RecordTimes | RecordTimesProcess,
            ob: dict[tuple[str, str], float]) -> dict[str, float] | None:
    try:
        t = [posted[0], ob["intake", lead], rec.stamp["lead-captured", lead], ob["scoring", lead],
             rec.stamp["lead-scored", lead], ob["router", lead], rec.stamp["lead-routed", lead],
             rec.seen["lead-routed", lead]]
    except KeyError:
        return None
    diffs = [b - a for a, b in zip(t, t[1:], strict=False)]
    return dict(zip(HOPS, [posted[1] - posted[0], *diffs, t[-1] - t[0]], strict=True))


async def measure(url: str, key: str, bootstrap: str, dsn: str, rate: float, seconds: float,
                  pids: dict[str, int]) -> None:
    load = os.getloadavg()[0]
    meter = CpuMeter(pids).start()
    async with RecordTimesProcess(bootstrap) as rec:
        posted = await post_at(url, key, rate, seconds)
        await rec.wait_routed(list(posted), 30)
    used = meter.stop()
    ob = await outbox_times(dsn, list(posted))
    per: dict[str, list[float]] = defaultdict(list)
    complete = 0
    for lead, times in posted.items():
        h = hops_of(lead, times, rec, ob)
        if h is None:
            continue
        complete += 1
        for name, value in h.items():
            per[name].append(value * 1000)
    tag = f"{rate:g}".replace(".", "_")
    print(f"bench: hop_leads_at_{tag}={complete} leads (of {len(posted)} accepted; load average {load:.2f} "
          f"-> {os.getloadavg()[0]:.2f})", flush=True)
    for name in HOPS:
        for q in (0.50, 0.99):
            print(f"bench: hop_{name}_at_{tag}_p{int(q * 100)}={pct(per[name], q):.1f} ms", flush=True)
    for name, cpu in used.items():  # CPU per lead: what the neighbours on the machine change least
        print(f"bench: hop_cpu_per_lead_{name.replace('-', '_')}_at_{tag}={cpu * 1000 / max(len(posted), 1):.2f} ms",
              flush=True)


async def idle_cpu(pids: dict[str, int], seconds: float) -> None:
    """Each service's CPU with no lead posted: what polling costs the cores every other hop shares."""
    await asyncio.sleep(1.0)  # the warm-up's last batches and marks
    meter = CpuMeter(pids).start()
    await asyncio.sleep(seconds)
    for name, cpu in meter.stop().items():
        print(f"bench: idle_cpu_{name.replace('-', '_')}={cpu * 1000 / seconds:.1f} ms/s", flush=True)


async def relay_alone(pg_url: str, bootstrap: str, rates: list[float], seconds: float, repeat: int) -> None:
    """The relay by itself: rows committed one per transaction at ``rate`` (as a service's handler commits
    them), published by one ``OutboxRelay``; commit returned -> record published (CreateTime) -> seen."""
    from leadbridge_contracts.envelope import Envelope
    from leadbridge_contracts.events import LeadCaptured
    from leadbridge_events.admin import ensure_topics
    from leadbridge_events.db import add_backbone_tables, create_schema, make_engine
    from leadbridge_events.outbox import stage_events
    from leadbridge_events.producer import EventProducer
    from leadbridge_events.relay import OutboxRelay
    from leadbridge_intake.submission import LeadSubmission
    from sqlalchemy import MetaData

    await ensure_topics(bootstrap, [LEAD_CAPTURED])
    metadata = MetaData(schema="relaybench")
    outbox, _ = add_backbone_tables(metadata)
    engine = make_engine(pg_url)
    await create_schema(engine, metadata)
    profile = LeadSubmission.model_validate(lead_body(0)).profile(source="bench")
    producer = EventProducer(bootstrap, client_id="relaybench")
    await producer.start()
    relay = OutboxRelay(engine, outbox, producer)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(repeat):
            for rate in rates:
                load = os.getloadavg()[0]
                committed: dict[str, float] = {}
                cpu = time.process_time()
                async with RecordTimes(bootstrap, (LEAD_CAPTURED,)) as rec:
                    started = time.perf_counter()

                    async def commit_one(i: int, committed: dict[str, float] = committed) -> None:
                        lead = str(uuid.uuid4())
                        event = Envelope.of(LeadCaptured(lead_id=lead, captured_at=datetime.now(UTC), profile=profile),
                                            source="bench", lead_id=lead)
                        async with engine.begin() as conn:
                            await stage_events(conn, outbox, [event])
                        committed[lead] = time.time()

                    tasks = []
                    for i in range(int(rate * seconds)):
                        await asyncio.sleep(max(started + i / rate - time.perf_counter(), 0))
                        tasks.append(asyncio.create_task(commit_one(i)))
                    await asyncio.gather(*tasks)
                    deadline = time.time() + 30
                    while time.time() < deadline and sum(("lead-captured", k) in rec.seen for k in committed) < len(committed):
                        await asyncio.sleep(0.05)
                used = time.process_time() - cpu
                pub = [(rec.stamp[("lead-captured", k)] - t) * 1000 for k, t in committed.items()
                       if ("lead-captured", k) in rec.stamp]
                seen = [(rec.seen[("lead-captured", k)] - t) * 1000 for k, t in committed.items()
                        if ("lead-captured", k) in rec.seen]
                tag = f"{rate:g}".replace(".", "_")
                print(f"bench: relay_rows_at_{tag}={len(pub)} rows (of {len(committed)}; load average {load:.2f}; "
                      f"process cpu {used * 1000 / max(len(committed), 1):.2f} ms/row)", flush=True)
                for name, values in (("publish", pub), ("seen", seen)):
                    for q in (0.50, 0.99):
                        print(f"bench: relay_{name}_at_{tag}_p{int(q * 100)}={pct(values, q):.1f} ms", flush=True)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        await engine.dispose()


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; postgres {DURABLE}", flush=True)
    if args.relay_alone:
        with durable_postgres() as pg, kafka_broker() as broker:
            await relay_alone(pg.url, broker.bootstrap_servers, [float(r) for r in args.rates.split(",")],
                              args.seconds, args.repeat)
        return
    with durable_postgres() as pg, kafka_broker() as broker:
        bootstrap = broker.bootstrap_servers
        system, key, database_url = await start_with_url(pg.url, bootstrap, tuple(args.only.split(",")))
        try:
            url = system.url("intake")
            pids = {name: svc.process.pid for name, svc in system.services.items()}
            await measure(url, key, bootstrap, plain_dsn(database_url), 5, 2, pids)  # warm-up of every hop
            if args.idle:
                await idle_cpu(pids, args.idle)
            for _ in range(args.repeat):
                for rate in (float(r) for r in args.rates.split(",")):
                    await measure(url, key, bootstrap, plain_dsn(database_url), rate, args.seconds, pids)
        finally:
            system.stop()


async def start_with_url(pg_url: str, bootstrap: str, only: tuple[str, ...]) -> tuple[Any, str, str]:
    import bench_system

    made: list[str] = []
    create = bench_system.create_database

    async def remembered(url: str) -> str:
        made.append(await create(url))
        return made[-1]

    bench_system.create_database = remembered  # type: ignore[assignment]  # start() makes the database
    # the hops are timed by the outbox rows' created_at: keep them once published (the default deletes them;
    # keeping costs each row's UPDATE, a little more than make bench's pipeline pays)
    bench_system.MODE["OUTBOX_KEEP_SENT"] = "true"
    try:
        system, key = await start(pg_url, bootstrap, only)
    finally:
        bench_system.create_database = create  # type: ignore[assignment]
    return system, key, made[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5,20,200", help="offered leads/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="posting time per rate")
    parser.add_argument("--only", default=",".join(ALL), help="the services to start (default: all, as make bench)")
    parser.add_argument("--relay-alone", action="store_true",
                        help="time one OutboxRelay by itself (rows committed at each rate), not the services")
    parser.add_argument("--idle", type=float, default=0,
                        help="first measure each service's CPU for this many seconds with no lead posted")
    parser.add_argument("--repeat", type=int, default=1, help="run the rates this many times")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
