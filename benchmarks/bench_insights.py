"""`make bench-insights`: the managers' views API with 100,000 leads in insights' read model.

Starts a throwaway PostgreSQL, migrates insights' schema, writes 100,000 synthetic leads (90 days, 6
channels, 20 campaigns, 4 teams, 40 reps; the row each gets is the service's own ``lead_row.row_of``, its
search text ``lead_row.search_text``),
breaches, overflows, a roster, their ``lead_facts`` (the JSON facts) and ~2 timeline entries each, then calls every view's endpoint in-process (FastAPI over ASGI, so the
figures include routing, validation, SQL and JSON, not a network hop) and prints p50/p95 per view:

    bench: insights_<view>_p95=<ms> ms
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import httpx
from leadbridge_devstack.ports import free_port
from leadbridge_devstack.postgres import PostgresCluster
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_insights import store
from leadbridge_insights.app import create_app
from leadbridge_insights.facts import LeadFacts
from leadbridge_insights.lead_row import row_of, search_text
from leadbridge_insights.settings import InsightsSettings
from sqlalchemy.ext.asyncio import create_async_engine

try:  # the views need a manager's token once the services require one: a development token, as in the tests
    from leadbridge_events.testing import TEST_DEV_SECRET, auth_headers
    os.environ.setdefault("AUTH_DEV_SECRET", TEST_DEV_SECRET)
except ImportError:  # before authentication
    def auth_headers(scopes=None) -> dict[str, str]:
        return {}

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CHANNELS = ("paid", "organic", "social", "seo", "referral", "event")
REASONS = ("no budget", "wrong person", "no need", "timing", "competitor")
COLUMNS = ["lead_id", "cohort_at", "is_test", *row_of(LeadFacts(lead_id="x")), "name", "email", "company"]


def synthetic_lead(i: int, rng: random.Random) -> tuple[LeadFacts, dict]:
    captured = NOW - timedelta(seconds=rng.uniform(0, 90 * 86400))
    team = f"team-{i % 4}"
    rep = f"rep-{i % 4}-{rng.randrange(10)}"
    f = LeadFacts(lead_id=f"lead-{i:06d}", captured=True, captured_at=captured, first_seen_at=captured,
                  channel=CHANNELS[i % 6], campaign=f"campaign-{i % 20}", source=("web_form", "google", "meta",
                  "linkedin", "api")[i % 5], stage="nurture", stage_at=captured)
    if rng.random() < 0.6:
        mql_at = captured + timedelta(seconds=rng.uniform(0.1, 5))
        f = replace(f, mql=True, mql_at=mql_at, stage="mql", stage_at=mql_at)
        if rng.random() < 0.9:
            routed_at = mql_at + timedelta(seconds=rng.uniform(0.01, 2))
            f = replace(f, routed=True, routed_at=routed_at, assigned_at=routed_at, team=team, rep=rep,
                        rep_name=f"Rep {rep}", first_touch_due_at=routed_at + timedelta(minutes=15))
            if rng.random() < 0.85:
                touch = routed_at + timedelta(seconds=rng.lognormvariate(6.5, 1.6))
                f = replace(f, touch_ids=("t1",), first_touch_at=touch, last_touch_at=touch)
            if rng.random() < 0.15:
                f = replace(f, sla_breached=True)
            if f.first_touch_at is None and rng.random() < 0.05:
                due = (NOW + timedelta(minutes=rng.uniform(-60, 15))).isoformat()
                f = replace(f, sla_at_risk=True, sla_alerts=(("d", "first_touch", "at_risk", due, due, rep),))
            roll = rng.random()
            if roll < 0.5:
                f = replace(f, accepted=True)
            elif roll < 0.7:
                f = replace(f, rejected=True, rejected_reason=rng.choice(REASONS), stage="nurture", stage_at=NOW)
            if f.accepted and rng.random() < 0.4:
                f = replace(f, qualified=True)
                outcome = rng.random()
                if outcome < 0.5:
                    f = replace(f, won=True, won_amount=rng.uniform(1000, 50000), closed_at=NOW)
                else:
                    f = replace(f, lost=True, lost_reason=rng.choice(REASONS), closed_at=NOW)
        elif rng.random() < 0.3:
            f = replace(f, route_event="returned_to_nurture:capacity", route_event_at=mql_at, route_pool=team)
    contact = {"name": f"Person {i} {rng.choice(('Quigley', 'Smith', 'Meyer', 'Rossi'))}",
               "email": f"p{i}@company-{i % 3000}.example", "company": f"Company {i % 3000}"}
    return f, contact


FACT_COLUMNS = ["lead_id", "cohort_at", "is_test", "facts"]
TIMELINE_COLUMNS = ["event_id", "lead_id", "event_type", "source", "occurred_at", "explanation", "data"]


def timeline_rows(facts: list[LeadFacts]) -> list[tuple]:
    """Each lead's story: its capture, and its scoring and routing when it got that far (~2 rows a lead)."""
    out = []
    for f in facts:
        steps = [("lead-captured", "intake", f.captured_at), ("lead-scored", "scoring", f.mql_at),
                 ("lead-routed", "router", f.routed_at)]
        out += [(f"{f.lead_id}-{kind}", f.lead_id, kind, source, at, f"{kind} (synthetic)", "{}")
                for kind, source, at in steps if at is not None]
    return out


def record(f: LeadFacts, contact: dict) -> tuple:
    row = {"lead_id": f.lead_id, "cohort_at": f.captured_at, "is_test": False, **row_of(f), **contact}
    return tuple(row[c] for c in COLUMNS)


async def load_data(url: str, n: int) -> None:
    rng = random.Random(42)
    leads = [synthetic_lead(i, rng) for i in range(n)]
    records = [record(f, contact) for f, contact in leads]
    facts = [f for f, _ in leads]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.copy_records_to_table("lead_views", schema_name="insights", columns=COLUMNS, records=records)
        await conn.copy_records_to_table("lead_search", schema_name="insights", columns=["lead_id", "search"],
                                         records=[(f.lead_id, search_text(f, contact)) for f, contact in leads])
        await conn.copy_records_to_table("lead_facts", schema_name="insights", columns=FACT_COLUMNS,
                                         records=[(f.lead_id, f.captured_at, False, json.dumps(f.to_json()))
                                                  for f in facts])
        await conn.copy_records_to_table("timeline", schema_name="insights", columns=TIMELINE_COLUMNS,
                                         records=timeline_rows(facts))
        breaches = [(f"b{i}", f"lead-{i:06d}", f"rep-{i % 4}-{i % 10}", f"team-{i % 4}", "first_touch",
                     NOW - timedelta(hours=i % 200)) for i in range(0, n, 7)]
        await conn.copy_records_to_table("sla_breaches", schema_name="insights", records=breaches)
        overflows = [(f"o{i}", f"team-{i % 4}", f"lead-{i:06d}", "returned_to_nurture", NOW - timedelta(hours=i % 300))
                     for i in range(0, n, 11)]
        await conn.copy_records_to_table("pool_overflows", schema_name="insights", records=overflows)
        reps = [{"id": f"rep-{t}-{r}", "name": f"Rep {t}-{r}", "team": f"team-{t}", "max_open": 40, "weekly_cap": 30,
                 "timezone": "Europe/Berlin", "working_hours": {"mon": ["09:00-17:00"]}, "out_of_office": []}
                for t in range(4) for r in range(10)]
        roster = {"changed_at": NOW.isoformat(), "teams": [{"id": f"team-{t}"} for t in range(4)], "reps": reps}
        await conn.execute("INSERT INTO insights.roster (id, changed_at, data) VALUES (1, $1, $2)", NOW,
                           json.dumps(roster))
        await conn.execute("VACUUM ANALYZE")  # the steady state autovacuum keeps: statistics, visibility map
    finally:
        await conn.close()


VIEWS = {
    "speed_by_channel": "/v1/views/speed?by=channel",
    "speed_by_rep": "/v1/views/speed?by=rep",
    "trends_90_days": f"/v1/views/trends?unit=day&since={(NOW - timedelta(days=90)).date()}",
    "trends_weeks": "/v1/views/trends?unit=week",
    "funnel": "/v1/views/funnel",
    "funnel_filtered": "/v1/views/funnel?channel=paid&team=team-0&since=2026-10-01",
    "load": "/v1/views/load",
    "live": "/v1/views/live",
    "find_by_name": "/v1/views/leads?q=quigley",
    "find_by_email": "/v1/views/leads?q=p4242@",
    "find_by_status": "/v1/views/leads?status=won&page=3",
    "options": "/v1/views/options",
    "timeline": "/v1/leads/lead-000042/timeline",
    "closed_loop_funnel_by_channel": "/v1/funnel?by=channel",
    "closed_loop_funnel_by_rep": "/v1/funnel?by=rep",
    "closed_loop_funnel_window": "/v1/funnel?by=campaign&since=2026-11-01",
}


def cpu_seconds(postmaster: int | None) -> float:
    """CPU used so far by this process (the app) and by the PostgreSQL cluster (postmaster and backends):
    a request's cost that the neighbours on a shared machine do not inflate as much as its wall time."""
    used = time.process_time()
    if postmaster is None:
        return used
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == postmaster or stat.parent.name == str(postmaster):
            used += (int(fields[11]) + int(fields[12])) / tick
    return used


async def measure(url: str, rounds: int, only: str | None = None, skip: str | None = None,
                  postmaster: int | None = None) -> dict[str, tuple[float, float, float]]:
    app = create_app(InsightsSettings(DATABASE_URL=url), clock=lambda: NOW)
    engine = create_async_engine(url, pool_size=5)
    app.state.wiring._runtime = SimpleNamespace(engine=engine)  # the views need only the engine: no Kafka here
    out = {}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://insights",
                                     headers=auth_headers()) as client:
            for name, path in VIEWS.items():
                if (only and only not in name) or (skip and skip in name):
                    continue
                times, cpu = [], 0.0
                for i in range(rounds + 3):
                    if i == 3:
                        cpu = cpu_seconds(postmaster)
                    started = time.perf_counter()
                    response = await client.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, (path, response.text[:300])
                    if i >= 3:  # warm-up: connections, plans
                        times.append(elapsed)
                cpu = (cpu_seconds(postmaster) - cpu) * 1000 / rounds
                times.sort()
                out[name] = (statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], cpu)
    finally:
        await engine.dispose()
    return out


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--only", help="only the views whose name contains this")
    parser.add_argument("--skip", help="not the views whose name contains this")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-insights-") as tmp:
        pg = PostgresCluster(data_dir=Path(tmp), port=free_port(), durable=False).start(log=lambda *_: None)
        try:
            engine = create_async_engine(pg.url)
            await migrate(engine, store.metadata, migrations_dir("leadbridge_insights"))
            await engine.dispose()
            started = time.perf_counter()
            await load_data(pg.url, args.leads)
            print(f"loaded {args.leads} leads into the read model in {time.perf_counter() - started:.1f} s")
            pid = Path(tmp, "pgdata", "postmaster.pid")
            postmaster = int(pid.read_text().split()[0]) if pid.exists() else None
            figures = await measure(pg.url, args.rounds, args.only, args.skip, postmaster)
        finally:
            pg.stop()
    print(f"views API, {args.leads} leads, {args.rounds} requests each (p50 / p95 / CPU per request, app +"
          f" PostgreSQL), load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}:")
    for name, (p50, p95, cpu) in figures.items():
        print(f"bench: insights_{name}_p50={p50:.1f} ms")
        print(f"bench: insights_{name}_p95={p95:.1f} ms")
        print(f"bench: insights_{name}_cpu={cpu:.1f} ms")
    worst = max(p95 for _, p95, _ in figures.values())
    print(f"bench: insights_worst_view_p95={worst:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
