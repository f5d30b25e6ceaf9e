"""`make bench`: LeadBridge's intake throughput and capture->routed latency, beside raw baselines.

In one run on this machine: the raw aiokafka producer rate and the raw PostgreSQL insert rate (same
durability as LeadBridge), then the whole system (services as separate processes, real Kafka and
PostgreSQL): sustained intake throughput (leads/s answered 202, i.e. stored durably with their event in
the outbox) and capture->routed latency p50/p99 at a fixed offered rate. Prints figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).parent))
from raw_rates import kafka_producer_rate, postgres_insert_rate  # noqa: E402

from leadbridge_devstack import cli  # noqa: E402
from leadbridge_devstack.kafka import KafkaBroker  # noqa: E402
from leadbridge_devstack.ports import free_port, port_open  # noqa: E402
from leadbridge_devstack.system import SERVICES, start_system  # noqa: E402
from leadbridge_events.auth import AuthSettings, mint_dev_token  # noqa: E402

HERE = Path(__file__).parent
DEV_SECRET = "bench-dev-secret-only-for-this-benchmark-run"
ADMIN = mint_dev_token(AuthSettings(dev_secret=DEV_SECRET), ["keys:admin", "roster:read"], subject="bench")


def lead_body(i: int) -> dict:
    tag = uuid.uuid4().hex[:12]
    return {"email": f"vp-{tag}@company-{tag}.example", "company": f"Company {tag}", "job_title": "VP Sales",
            "company_size": 500, "industry": "software", "country": "DE", "language": "en", "channel": "paid",
            "campaign": f"bench-{i % 5}", "form_type": "demo_request", "consent": True}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


async def intake_throughput(url: str, key: str, seconds: float, concurrency: int) -> tuple[float, int, int]:
    accepted = failed = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=30) as client:

        async def worker(w: int) -> None:
            nonlocal accepted, failed
            i = 0
            while time.perf_counter() < stop_at:
                resp = await client.post("/v1/leads", json=lead_body(i))
                i += 1
                if resp.status_code == 202:
                    accepted += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    return accepted / elapsed, accepted, failed


async def routed_latency(url: str, key: str, bootstrap: str, rate: float, seconds: float) -> dict[str, float]:
    consumer = AIOKafkaConsumer("lead-routed", bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}",
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)
    posted: dict[str, float] = {}
    latencies: list[float] = []

    async def read() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for r in records:
                    lead = r.key.decode() if r.key else ""
                    if lead in posted and dict(r.headers).get("ce_type") == b"io.leadbridge.lead-routed":
                        latencies.append(now - posted.pop(lead))

    reader = asyncio.create_task(read())
    total = int(rate * seconds)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:

        async def post(i: int) -> None:
            sent = time.perf_counter()
            resp = await client.post("/v1/leads", json=lead_body(i))
            if resp.status_code == 202:
                posted[resp.json()["lead_id"]] = sent

        started = time.perf_counter()
        tasks = []
        for i in range(total):
            await asyncio.sleep(max(started + i / rate - time.perf_counter(), 0))
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 30
    while posted and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await consumer.stop()
    return {"offered": total, "routed": len(latencies), "missing": len(posted),
            "p50_ms": pct(latencies, 0.50) * 1000, "p99_ms": pct(latencies, 0.99) * 1000,
            "max_ms": max(latencies, default=float("nan")) * 1000}


async def create_database(database_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url.rpartition("/")[0] + f"/{name}"


async def run(args: argparse.Namespace) -> None:
    # a broker of its own: a fresh consumer group on a long-lived stack would first replay its history
    broker = KafkaBroker.throwaway()
    try:
        await measure(args, broker.bootstrap_servers, cli.postgres().url)
    finally:
        broker.remove()


async def measure(args: argparse.Namespace, bootstrap: str, database_url: str) -> None:
    print(f"machine: {__import__('os').cpu_count()} cores; kafka {bootstrap}; postgres {database_url}\n")
    kafka_rate = await kafka_producer_rate(bootstrap, n=args.raw_messages)
    pg_rate = await postgres_insert_rate(database_url, n=args.raw_rows)
    print(f"raw aiokafka producer (idempotent, acks=all, awaited): {kafka_rate:9.0f} msg/s")
    print(f"raw PostgreSQL insert (1 committed tx per row, 8 conns): {pg_rate:9.0f} rows/s\n")

    suffix = uuid.uuid4().hex[:6]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": await create_database(database_url),
        "AUTH_DEV_SECRET": DEV_SECRET, "AUTH_ISSUER": "", "INTAKE_RATE_LIMIT_PER_MINUTE": "10000000", "INTAKE_RATE_LIMIT_BURST": "1000000",
        "ROUTER_ROSTER_FILE": str(HERE / "roster.yaml"), "SCORING_GROUP_ID": f"scoring-{suffix}",
        "ROUTER_GROUP_ID": f"router-{suffix}", "INSIGHTS_GROUP_ID": f"insights-{suffix}", "LOG_LEVEL": "WARNING",
    }
    system = start_system(env, {s.name: free_port() for s in SERVICES}, only=("intake", "scoring", "router"))
    try:
        url = system.url("intake")
        key = httpx.post(f"{url}/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                         json={"source": "bench", "scopes": ["leads:write"]}).json()["api_key"]
        # latency first, on an idle (warmed-up) pipeline; then throughput, whose backlog would skew latency
        await routed_latency(url, key, bootstrap, 5, 1)
        lat = await routed_latency(url, key, bootstrap, args.rate, args.latency_seconds)
        print(f"capture->routed at {args.rate:.0f} leads/s offered for {args.latency_seconds:.0f} s: "
              f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms "
              f"({lat['routed']} of {lat['offered']} routed, {lat['missing']} not routed within 30 s)")
        rate, accepted, _ = await intake_throughput(url, key, args.seconds, args.concurrency)
        print(f"\nintake throughput with scoring and router consuming beside it ({args.concurrency} clients, "
              f"{args.seconds:.0f} s): {rate:7.0f} leads/s accepted durably")
    finally:
        system.stop()

    # intake on its own: with scoring and router consuming the flood beside it on the same cores, the figure
    # would measure the machine's sharing, not intake
    env["DATABASE_URL"] = await create_database(database_url)
    system = start_system(env, {s.name: free_port() for s in SERVICES}, only=("intake",))
    try:
        url = system.url("intake")
        key = httpx.post(f"{url}/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                         json={"source": "bench", "scopes": ["leads:write"]}).json()["api_key"]
        await intake_throughput(url, key, 2, 8)  # warm-up
        rate, accepted, failed = await intake_throughput(url, key, args.seconds, args.concurrency)
        print(f"\nintake sustained throughput, intake alone ({args.concurrency} clients, {args.seconds:.0f} s): "
              f"{rate:7.0f} leads/s accepted durably ({accepted} accepted, {failed} not)")
        print(f"  = {rate / pg_rate:.1%} of the raw PostgreSQL insert rate, "
              f"{rate / kafka_rate:.1%} of the raw Kafka producer rate")
    finally:
        system.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="throughput run length")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=20, help="offered leads/s for the latency run")
    parser.add_argument("--latency-seconds", type=float, default=15)
    parser.add_argument("--raw-messages", type=int, default=20000)
    parser.add_argument("--raw-rows", type=int, default=5000)
    args = parser.parse_args()
    cli.postgres().start() if not port_open(cli.PG_PORT) else None
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
