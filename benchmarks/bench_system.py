"""`make bench`: LeadBridge's throughput and latency beside honest raw baselines, all in one run.

On a throwaway DURABLE PostgreSQL (fsync, synchronous_commit and full_page_writes on) and throwaway Kafka
brokers (one per phase: a fresh consumer group on a used broker would replay the earlier phases):

1. raw baselines: aiokafka producer with batched sends; asyncpg single-row and multi-row commits at the
   same concurrency as the HTTP load;
2. intake alone under `wrk` (compiled, Lua script; its own CPU printed);
3. all five services: capture->routed latency at a fixed offered rate, then sustained throughput
   (captured -> routed) under `wrk`, with each service's CPU per lead;
4. a backlog of lead-captured events put on Kafka before the services start (the broker was down),
   drained to routed; a fresh lead posted during the drain; each service's peak RSS.

Every figure is printed as ``bench: <name>=<value> <unit>`` (ratios without a unit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from leadbridge_devstack.kafka import KafkaBroker  # noqa: E402
from leadbridge_devstack.ports import free_port  # noqa: E402
from leadbridge_devstack.postgres import PostgresCluster  # noqa: E402
from leadbridge_devstack.system import SERVICES, System, start_system  # noqa: E402
from leadbridge_events.admin import ensure_topics  # noqa: E402
from leadbridge_events.auth import AuthSettings, mint_dev_token  # noqa: E402
from leadbridge_insights.handlers import HANDLERS as INSIGHTS_HANDLERS  # noqa: E402
from loadgen import CpuMeter, peak_rss_mb, wrk_post_leads  # noqa: E402
from probes import RoutedCounter, RoutedWatcher, caught_up, lead_body, publish_backlog, routed_latency  # noqa: E402
from raw_rates import kafka_batched_rate, plain_dsn, postgres_commit_rate  # noqa: E402
from stack import DURABLE, durable_postgres, kafka_broker, postmaster_pid  # noqa: E402

HERE = Path(__file__).parent
DEV_SECRET = "bench-dev-secret-only-for-this-benchmark-run"
ADMIN = mint_dev_token(AuthSettings(dev_secret=DEV_SECRET), ["keys:admin", "roster:read"], subject="bench")
ALL = tuple(s.name for s in SERVICES)


def figure(name: str, value: float, unit: str = "", fmt: str = ".0f") -> None:
    suffix = "_unbatched" if MODE else ""
    if name.startswith("raw_"):
        suffix = ""
    print(f"bench: {name}{suffix}={value:{fmt}}{' ' + unit if unit else ''}", flush=True)


async def create_database(database_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url.rpartition("/")[0] + f"/{name}"


UNBATCHED = {"INTAKE_GROUP_COMMIT_MAX": "0", "CONSUMER_BATCH_SIZE": "1"}  # one transaction per lead / event
MODE: dict[str, str] = {}  # the environment of the current pass (`--compare`: unbatched first)


async def start(database_url: str, bootstrap: str, only: tuple[str, ...], suffix: str = "") -> tuple[System, str]:
    suffix = suffix or uuid.uuid4().hex[:6]
    env = {**MODE,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": await create_database(database_url),
        "AUTH_DEV_SECRET": DEV_SECRET, "AUTH_ISSUER": "", "INTAKE_RATE_LIMIT_PER_MINUTE": "100000000",
        "INTAKE_RATE_LIMIT_BURST": "10000000", "ROUTER_ROSTER_FILE": str(HERE / "roster.yaml"),
        "SCORING_GROUP_ID": f"scoring-{suffix}", "ROUTER_GROUP_ID": f"router-{suffix}",
        "INSIGHTS_GROUP_ID": f"insights-{suffix}", "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    # the services' logs kept there (with BENCH_LOG_LEVEL=INFO: each express lead's lock wait, say)
    logs = os.environ.get("BENCH_LOG_DIR")
    system = start_system(env, {s.name: free_port() for s in SERVICES}, only=only, log_dir=Path(logs) if logs else None)
    url = system.url("intake")
    key = httpx.post(f"{url}/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                     json={"source": "bench", "scopes": ["leads:write"]}).json()["api_key"]
    return system, key


def pids(system: System) -> dict[str, int]:
    return {name: svc.process.pid for name, svc in system.services.items()}


def print_cpu(meter: CpuMeter, leads: int, prefix: str) -> None:
    for name, used in meter.stop().items():
        figure(f"{prefix}_cpu_per_lead_{name.replace('-', '_')}", used * 1000 / max(leads, 1), "ms", ".2f")


class Costs:
    """What a phase costs per lead: each service's CPU, and what they share the cores with -- PostgreSQL (its
    backends), the broker, this process alone (the load's counters and consumers; ``wrk`` is
    ``loadgen_wrk_cpu_pipeline``) -- and the WAL the cluster wrote (every write of every service)."""

    def __init__(self, system: System, pg: PostgresCluster, broker: KafkaBroker) -> None:
        self._meter = CpuMeter({**pids(system), "postgres": postmaster_pid(pg), "kafka": broker.pid or 0,
                                "bench": os.getpid()}, alone={"bench"})
        self._dsn = plain_dsn(pg.url)
        self._wal: dict[str, int] = {}

    async def start(self) -> Costs:
        self._meter.start()
        self._wal = await self._wal_counters()
        return self

    async def report(self, leads: int, prefix: str) -> None:
        print_cpu(self._meter, leads, prefix)
        now, leads = await self._wal_counters(), max(leads, 1)
        spent = {k: now[k] - self._wal[k] for k in now}
        figure(f"{prefix}_wal_per_lead", spent["bytes"] / 1024 / leads, "KiB", ".1f")
        # a page's first change after a checkpoint writes the whole page (full_page_writes): how much of the WAL
        figure(f"{prefix}_wal_full_page_images_per_lead", spent["fpi"] / leads, "", ".1f")
        figure(f"{prefix}_checkpoints", spent["checkpoints"], "")

    async def _wal_counters(self) -> dict[str, int]:
        conn = await asyncpg.connect(self._dsn)
        try:
            row = await conn.fetchrow("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS bytes, wal_fpi AS fpi FROM pg_stat_wal")
            try:  # PostgreSQL 17 moved the checkpoint counts to a view of their own
                checkpoints = await conn.fetchval("SELECT num_timed + num_requested FROM pg_stat_checkpointer")
            except asyncpg.UndefinedTableError:
                checkpoints = await conn.fetchval("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
            return {"bytes": int(row["bytes"]), "fpi": int(row["fpi"]), "checkpoints": int(checkpoints)}
        finally:
            await conn.close()


async def insights_catch_up(bootstrap: str, suffix: str, args: argparse.Namespace, prefix: str) -> None:
    """insights yields the cores to the routing path (INSIGHTS_CPU_NICENESS): how many events it still had to
    project when the last lead was routed, and how long it then took (its CPU above stops at routed too)."""
    behind, seconds = await caught_up(bootstrap, f"insights-{suffix}", INSIGHTS_HANDLERS.topics, args.drain_timeout)
    figure(f"{prefix}_insights_behind_at_routed", behind, "events")
    figure(f"{prefix}_insights_caught_up_after", seconds, "s", ".1f")


async def post_fresh_leads(url: str, key: str, watcher: RoutedWatcher, args: argparse.Namespace) -> list[str]:
    """``--fresh-leads`` new leads, one every ``--fresh-every`` seconds from 2 s into the drain: how long each
    waits behind the backlog to be routed (the express lane's work) is ``backlog_fresh_lead_routed_after``."""
    fresh: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}) as client:
        for i in range(args.fresh_leads):
            await asyncio.sleep(2 if i == 0 else args.fresh_every)
            sent, wall = time.perf_counter(), time.time()
            resp = await client.post("/v1/leads", json=lead_body(i))
            fresh.append(resp.json()["lead_id"])
            watcher.sent(fresh[-1], sent, wall, time.perf_counter() - sent)
    return fresh


async def raw_baselines(args: argparse.Namespace, database_url: str, bootstrap: str) -> dict[str, float]:
    raw = {"kafka": await kafka_batched_rate(bootstrap, n=args.raw_messages),
           "pg_single": await postgres_commit_rate(database_url, concurrency=args.concurrency,
                                                   seconds=args.raw_seconds),
           "pg_multi": await postgres_commit_rate(database_url, concurrency=args.concurrency,
                                                  rows_per_commit=args.raw_rows_per_commit, seconds=args.raw_seconds)}
    figure("raw_kafka_producer_batched", raw["kafka"], "msg/s")
    figure(f"raw_pg_single_row_commits_{args.concurrency}conns", raw["pg_single"], "rows/s")
    figure(f"raw_pg_multi_row_commits_{args.concurrency}conns_x{args.raw_rows_per_commit}", raw["pg_multi"], "rows/s")
    return raw


async def intake_alone(args: argparse.Namespace, pg: PostgresCluster, raw: dict[str, float]) -> None:
    with kafka_broker() as broker:
        system, key = await start(pg.url, broker.bootstrap_servers, ("intake",))
        try:
            url = system.url("intake")
            wrk_post_leads(url, key, seconds=2, connections=8)  # warm-up
            costs = await Costs(system, pg, broker).start()
            r = wrk_post_leads(url, key, seconds=args.seconds, connections=args.concurrency)
            figure("intake_alone", r.rate, "leads/s")
            figure("intake_alone_rejected", r.rejected, "requests")
            figure("intake_alone_http_p50", r.p50_ms, "ms", ".1f")
            figure("intake_alone_http_p99", r.p99_ms, "ms", ".1f")
            figure("intake_vs_raw_pg", r.rate / raw["pg_single"], fmt=".3f")
            figure("intake_vs_raw_pg_multi", r.rate / raw["pg_multi"], fmt=".3f")
            figure("intake_vs_raw_kafka", r.rate / raw["kafka"], fmt=".4f")
            figure("loadgen_wrk_cpu", r.cpu_cores, "cores", ".2f")
            await costs.report(r.accepted, "intake_alone")
        finally:
            system.stop()


async def whole_pipeline(args: argparse.Namespace, pg: PostgresCluster, raw: dict[str, float]) -> None:
    database_url = pg.url
    with kafka_broker() as broker:
        bootstrap = broker.bootstrap_servers
        suffix = uuid.uuid4().hex[:6]
        system, key = await start(database_url, bootstrap, ALL, suffix)
        try:
            url = system.url("intake")
            warm = await routed_latency(url, key, bootstrap, 5, 2)  # warm-up of every hop
            posted = warm["accepted"]
            for rate in (args.low_rate, args.rate):  # the "now" rate, then the target's
                lat = await routed_latency(url, key, bootstrap, rate, args.latency_seconds)
                posted += lat["accepted"]
                figure(f"capture_routed_p50_at_{rate:.0f}_per_s", lat["p50_ms"], "ms", ".1f")
                figure(f"capture_routed_p99_at_{rate:.0f}_per_s", lat["p99_ms"], "ms", ".1f")
                figure(f"capture_routed_max_at_{rate:.0f}_per_s", lat["max_ms"], "ms", ".1f")
                figure(f"capture_routed_unrouted_at_{rate:.0f}_per_s", lat["accepted"] - lat["routed"], "leads")
                figure(f"loadgen_latency_poster_cpu_at_{rate:.0f}_per_s", lat["generator_cpu"], "cores", ".2f")
            async with RoutedCounter(bootstrap) as counter:
                # the latency run's leads first: a backlog left by it would be counted as sustained throughput
                before, _ = await counter.wait_for(posted, timeout=args.drain_timeout)
                figure("capture_routed_backlog_left", posted - before, "leads")
                costs = await Costs(system, pg, broker).start()
                started = time.perf_counter()
                r = await asyncio.to_thread(wrk_post_leads, url, key, seconds=args.seconds,
                                            connections=args.concurrency)
                routed, done = await counter.wait_for(before + r.accepted, timeout=args.drain_timeout)
                routed -= before
                elapsed = done - started
            figure("pipeline_intake_rate", r.rate, "leads/s")
            figure("pipeline_sustained", routed / elapsed, "leads/s")
            figure("pipeline_sustained_vs_raw_pg", routed / elapsed / raw["pg_single"], fmt=".3f")
            figure("pipeline_unrouted_after_wait", r.accepted - routed, "leads")
            figure("loadgen_wrk_cpu_pipeline", r.cpu_cores, "cores", ".2f")
            await costs.report(r.accepted, "pipeline")
            await insights_catch_up(bootstrap, suffix, args, "pipeline")
        finally:
            system.stop()


async def backlog_drain(args: argparse.Namespace, pg: PostgresCluster) -> None:
    database_url = pg.url
    with kafka_broker() as broker:
        bootstrap = broker.bootstrap_servers
        await ensure_topics(bootstrap)
        await asyncio.sleep(3)  # let the new topics' leaders settle
        put = await publish_backlog(bootstrap, args.backlog)
        figure("backlog_published", args.backlog / put, "events/s")
        suffix = uuid.uuid4().hex[:6]
        system, key = await start(database_url, bootstrap, ALL, suffix)
        started = time.perf_counter()  # every service answers /readyz: the drain is under way
        try:
            costs = await Costs(system, pg, broker).start()
            rss_start = {n: peak_rss_mb(p) for n, p in pids(system).items()}
            async with RoutedCounter(bootstrap) as counter, RoutedWatcher(bootstrap) as watcher:
                posting = asyncio.create_task(post_fresh_leads(system.url("intake"), key, watcher, args))
                routed, done = await counter.wait_for(args.backlog + args.fresh_leads, timeout=args.drain_timeout,
                                                      interval=0.5)
                fresh = await posting
                await watcher.wait(1)
            elapsed = done - started
            figure("backlog_drain", routed / elapsed, "leads/s")
            figure("backlog_drained", routed, "leads")
            figure("backlog_drain_seconds", elapsed, "s", ".1f")
            waited = sorted(watcher.latencies.get(lead, float("inf")) * 1000 for lead in fresh)
            figure("backlog_fresh_leads", len(fresh), "leads")
            if waited:  # the median, and the slowest (never routed: inf)
                figure("backlog_fresh_lead_routed_after", statistics.median_low(waited), "ms")
                figure("backlog_fresh_lead_routed_after_max", waited[-1], "ms")
            for lead in fresh:  # where each one's time went
                print("fresh lead hops (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in watcher.hops(lead).items()),
                      flush=True)
            await costs.report(routed, "backlog")
            await insights_catch_up(bootstrap, suffix, args, "backlog")
            for name, pid in pids(system).items():
                n = name.replace("-", "_")
                figure(f"backlog_rss_at_start_{n}", rss_start[name], "MB")
                figure(f"backlog_peak_rss_{n}", peak_rss_mb(pid), "MB")
        finally:
            system.stop()


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; postgres {DURABLE}", flush=True)
    with durable_postgres() as pg, kafka_broker() as broker:
        raw = await raw_baselines(args, pg.url, broker.bootstrap_servers)
    with durable_postgres() as pg:  # a fresh cluster: the raw tables' WAL and bloat do not weigh on the rest
        phases = {"intake": lambda: intake_alone(args, pg, raw),
                  "pipeline": lambda: whole_pipeline(args, pg, raw),
                  "backlog": lambda: backlog_drain(args, pg)}
        for unbatched in ([True, False] if args.compare else [args.unbatched]):
            MODE.clear()
            MODE.update(UNBATCHED if unbatched else {})
            for name in args.phases.split(","):
                await phases[name]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="wrk run length")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP connections, and raw PG connections")
    parser.add_argument("--rate", type=float, default=200, help="offered leads/s for the latency run")
    parser.add_argument("--low-rate", type=float, default=20, help="offered leads/s for the first latency run")
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--raw-messages", type=int, default=200_000)
    parser.add_argument("--raw-seconds", type=float, default=5)
    parser.add_argument("--raw-rows-per-commit", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=100_000, help="lead-captured events in the backlog")
    parser.add_argument("--fresh-leads", type=int, default=5, help="new leads posted during the drain")
    parser.add_argument("--fresh-every", type=float, default=4, help="seconds between them")
    parser.add_argument("--drain-timeout", type=float, default=120, help="give up waiting for routed after this")
    parser.add_argument("--phases", default="intake,pipeline,backlog")
    parser.add_argument("--unbatched", action="store_true",
                        help="group commit and batch consumption off (one transaction per lead / event)")
    parser.add_argument("--compare", action="store_true", help="every phase unbatched first, then batched")
    args = parser.parse_args()
    # stopped (Ctrl-C, SIGTERM, or SIGINT to a backgrounded run): unwind, so brokers and services are stopped
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
