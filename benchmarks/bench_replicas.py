"""`make bench-replicas`: pipeline throughput with 1 and 2 processes per service on a 3-broker Kafka cluster.

For each replica count, intake, scoring and router run as that many processes each (one consumer group per
service, one database); a burst of leads is posted across the intake processes by concurrent clients, and
the figures are intake's accept rate (202s per second) and the capture->routed rate (leads whose lead-routed
event arrived, per second from the first post to the last routing). Prints `bench: <name>=<value> <unit>`.

Replicas buy availability first (a killed process's partitions move to the other); throughput only grows
where there are cores to run them on: on a 2-core machine the processes share the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).parent))
from bench_system import ADMIN, DEV_SECRET, create_database, lead_body  # noqa: E402
from leadbridge_devstack import cli  # noqa: E402
from leadbridge_devstack.cluster import KafkaCluster  # noqa: E402
from leadbridge_devstack.ports import free_port, port_open  # noqa: E402
from leadbridge_devstack.system import replica_names, start_system  # noqa: E402

HERE = Path(__file__).parent
SERVICES = ("intake", "scoring", "router")


async def burst(urls: list[str], key: str, bootstrap: str, leads: int, concurrency: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer("lead-routed", bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}",
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)
    accepted: set[str] = set()
    routed: set[str] = set()
    failed = 0
    started = time.perf_counter()
    last_routed = started

    async def read() -> None:
        nonlocal last_routed
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for r in records:
                    if dict(r.headers).get("ce_type") == b"io.leadbridge.lead-routed":
                        routed.add(r.key.decode())
                        last_routed = time.perf_counter()

    reader = asyncio.create_task(read())
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(leads):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(headers={"X-API-Key": key}, limits=limits, timeout=30) as client:

        async def post(i: int) -> httpx.Response | None:
            """One lead; a dropped connection is retried with the same Idempotency-Key (as clients should)."""
            body, key = lead_body(i), uuid.uuid4().hex
            for attempt in range(3):
                try:
                    return await client.post(f"{urls[(i + attempt) % len(urls)]}/v1/leads", json=body,
                                             headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            return None

        async def worker() -> None:
            nonlocal failed
            while not queue.empty():
                resp = await post(queue.get_nowait())
                if resp is not None and resp.status_code == 202:
                    accepted.add(resp.json()["lead_id"])
                else:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    posted = time.perf_counter()
    deadline = posted + 120
    while not accepted <= routed and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await consumer.stop()
    done = len(accepted & routed)
    return {"accept_rate": len(accepted) / (posted - started), "routed_rate": done / (last_routed - started),
            "failed": failed, "not_routed": len(accepted - routed)}


async def measure(replicas: int, bootstrap: str, database_url: str, args: argparse.Namespace) -> dict[str, float]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": await create_database(database_url),
           "AUTH_DEV_SECRET": DEV_SECRET, "AUTH_ISSUER": "", "INTAKE_RATE_LIMIT_PER_MINUTE": "10000000",
           "INTAKE_RATE_LIMIT_BURST": "1000000", "ROUTER_ROSTER_FILE": str(HERE / "roster.yaml"),
           "LOG_LEVEL": "WARNING"}
    suffix = uuid.uuid4().hex[:6]  # fresh consumer groups: the topics hold the previous run's leads
    env |= {f"{s.upper()}_GROUP_ID": f"{s}-{suffix}" for s in ("scoring", "router")}
    ports = {name: free_port() for name in replica_names(replicas, SERVICES)}
    logs = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    system = start_system(env, ports, only=SERVICES, replicas=replicas, ready_timeout=180, log_dir=logs)
    try:
        urls = [svc.url for svc in system.replicas("intake")]
        key = httpx.post(f"{urls[0]}/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                         json={"source": "bench", "scopes": ["leads:write"]}).json()["api_key"]
        await burst(urls, key, bootstrap, 50, 8)  # warm-up
        return await burst(urls, key, bootstrap, args.leads, args.concurrency)
    finally:
        system.stop()
        for log in sorted(logs.glob("*.log")):
            if "Traceback" in log.read_text(errors="replace"):
                print(f"  ({log} has a traceback)")


async def run(args: argparse.Namespace) -> None:
    cluster = KafkaCluster.throwaway(brokers=3)
    try:
        print(f"machine: {__import__('os').cpu_count()} cores; kafka: 3 brokers, replication factor 3, "
              f"min.insync.replicas 2; {args.leads} leads, {args.concurrency} clients\n")
        for replicas in args.replicas:
            figures = await measure(replicas, cluster.bootstrap_servers, cli.postgres().url, args)
            print(f"bench: replicas{replicas}_intake_accepted={figures['accept_rate']:.0f} leads/s")
            print(f"bench: replicas{replicas}_capture_to_routed={figures['routed_rate']:.0f} leads/s")
            print(f"bench: replicas{replicas}_failed_or_not_routed={figures['failed'] + figures['not_routed']:.0f}"
                  " leads", flush=True)
    finally:
        cluster.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cli.postgres().start() if not port_open(cli.PG_PORT) else None
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
