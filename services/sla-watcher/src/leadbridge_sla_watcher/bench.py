"""`python -m leadbridge_sla_watcher.bench`: fire lag and memory with 10^4, 10^5 and 10^6 open deadlines.

For each size, in a throwaway database on the server of DATABASE_URL: load N open deadlines due in the
coming weeks (server side, generate_series: the benchmark process never holds them), add ``--due``
deadlines due over the next ``--window`` seconds, run the real timer loop (the same claim query, outbox
writes and marks as the service) and report how late each one fired (commit time - due time) and the
process's peak resident memory while firing. Only PostgreSQL is needed: events stay in the outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from functools import partial

import asyncpg
from leadbridge_events.db import create_schema, make_engine, session_factory
from leadbridge_events.transaction import open_transaction
from sqlalchemy import text

from . import tables
from .handlers import HANDLERS
from .settings import WatcherSettings
from .timer import TimerLoop

_LOAD = text("""
INSERT INTO sla_watcher.deadlines (id, lead_id, kind, policy, attempt, assignee_id, team, starts_at, due_at,
                                   next_fire_at, status)
SELECT :prefix || g, 'lead-' || :prefix || g, 'first_touch', 'standard', 1, 'rep-' || (g % 50), 'team-' || (g % 5),
       now(), t.at, t.at, 'open'
FROM generate_series(1, :n) AS g, LATERAL (SELECT now() + :offset * interval '1 second'
                                                  + (random() + g * 0) * :spread * interval '1 second' AS at) AS t
""")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _backends(url: str) -> list[int]:
    """The PostgreSQL backends serving the benchmark's database (their CPU is the database's share)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [r["pid"] for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    finally:
        await conn.close()


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU of local processes (none for any gone or not visible, e.g. a remote server)."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run_size(base_url: str, n: int, due: int, window: float, poll: float, batch: int, workers: int
                   ) -> dict[str, float]:
    name = f"sla_bench_{uuid.uuid4().hex[:10]}"
    await _admin(base_url, f'CREATE DATABASE "{name}"')
    url = base_url.rpartition("/")[0] + "/" + name
    # bulk loads of a million rows: no statement timeout
    engine = make_engine(url, pool_size=max(4, workers + 1), statement_timeout_ms=0)
    try:
        await create_schema(engine, tables.metadata)
        started = time.monotonic()
        async with engine.begin() as conn:  # the bulk: due in 1 to 30 days
            await conn.execute(_LOAD, {"prefix": "far-", "n": max(n - due, 0), "offset": 86400, "spread": 30 * 86400})
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE sla_watcher.deadlines"))
        load_seconds = time.monotonic() - started
        async with engine.begin() as conn:  # the ones we time: due over the next `window` seconds
            await conn.execute(_LOAD, {"prefix": "due-", "n": min(due, n), "offset": 1.0, "spread": window})
        transaction = partial(open_transaction, session_factory(engine), tables.outbox, emits=HANDLERS.emitted_types)
        timer = TimerLoop(transaction, poll_seconds=poll, batch_size=batch, workers=workers)
        timer.lags = []
        peak = _rss_mb()
        cpu, db_cpu = time.process_time(), _cpu_seconds(await _backends(url))
        task = asyncio.create_task(timer.run())
        give_up = time.monotonic() + window + 60
        while timer.fired < min(due, n) and time.monotonic() < give_up:
            peak = max(peak, _rss_mb())
            await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu  # the pool's backends, including those opened meanwhile:
        db_cpu = sum(c - db_cpu.get(pid, 0.0) for pid, c in _cpu_seconds(await _backends(url)).items())
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        lags = timer.lags or [float("nan")]
        return {"n": n, "fired": timer.fired, "p50": _pct(lags, 0.5), "p99": _pct(lags, 0.99), "max": max(lags),
                "mean": statistics.fmean(lags), "rss": peak, "load": load_seconds,
                "cpu_us": cpu / max(timer.fired, 1) * 1e6, "db_cpu_us": db_cpu / max(timer.fired, 1) * 1e6}
    finally:
        await engine.dispose()
        await _admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main(sizes: list[int], due: int, window: float, poll: float, batch: int, workers: int,
               monday: bool = False) -> None:
    base = WatcherSettings().database_url
    print(f"SLA timer benchmark: {due} deadlines due over {window:g}s among N open ones; poll {poll:g}s, "
          f"batch {batch}, {workers} worker(s); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'open deadlines':>15} {'fired':>6} {'lag p50 ms':>11} {'lag p99 ms':>11} {'lag max ms':>11} "
          f"{'peak RSS MB':>12} {'load s':>7}")
    for n in sizes:
        r = await run_size(base, n, due, window, poll, batch, workers)
        print(f"{r['n']:>15,} {r['fired']:>6} {r['p50'] * 1000:>11.1f} {r['p99'] * 1000:>11.1f} "
              f"{r['max'] * 1000:>11.1f} {r['rss']:>12.1f} {r['load']:>7.1f}", flush=True)
        tag = f"sla_{r['n']}_open_{due}_due_in_{window:g}s"
        print(f"bench: {tag}_lag_p99={r['p99'] * 1000:.0f} ms\nbench: {tag}_all_fired_within={r['max']:.1f} s\n"
              f"bench: {tag}_fire_rate={r['fired'] / (window + r['max']):.0f} events/s\n"
              f"bench: {tag}_timer_cpu_per_firing={r['cpu_us']:.0f} us\n"
              f"bench: {tag}_postgres_cpu_per_firing={r['db_cpu_us']:.0f} us", flush=True)
        if monday:  # the names for the Monday 09:00 case (target: all within 10 s, >= 10,000 events/s)
            print(f"bench: sla_monday_all_fired={r['max']:.1f} s\n"
                  f"bench: sla_breach_events_rate={r['fired'] / (window + r['max']):.0f} events/s\n"
                  f"bench: sla_monday_cpu_per_firing={r['cpu_us'] + r['db_cpu_us']:.0f} us "
                  f"(timer {r['cpu_us']:.0f} + postgres {r['db_cpu_us']:.0f}; load average {os.getloadavg()[0]:.2f})",
                  flush=True)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m leadbridge_sla_watcher.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated numbers of open deadlines (default: 10^4, 10^5, 10^6)")
    parser.add_argument("--due", type=int, default=1000, help="deadlines that come due during the run")
    parser.add_argument("--window", type=float, default=5.0, help="seconds over which they come due")
    parser.add_argument("--poll", type=float, default=WatcherSettings().timer_poll_seconds,
                        help="timer poll interval (SLA_TIMER_POLL_SECONDS)")
    parser.add_argument("--batch", type=int, default=WatcherSettings().timer_batch_size,
                        help="deadlines claimed per transaction (SLA_TIMER_BATCH_SIZE)")
    parser.add_argument("--workers", type=int, default=WatcherSettings().timer_workers,
                        help="claiming loops side by side (SLA_TIMER_WORKERS)")
    parser.add_argument("--monday", action="store_true",
                        help="also print the Monday 09:00 figures (sla_monday_all_fired, sla_breach_events_rate)")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    asyncio.run(main(sizes, args.due, args.window, args.poll, args.batch, args.workers, args.monday))


if __name__ == "__main__":
    cli()
