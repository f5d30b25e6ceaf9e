"""``python -m leadbridge_router.bench``: simulate routing 10,000 leads and measure fairness and safety.

Runs the real (pure) routing domain over a roster with weights, caps, time zones, shifts, absences and a
rep joining mid-stream, on a simulated clock. Prints each rep's share against its weight, the largest
deviation from the fair share, cap violations and routings to unavailable reps (both must be 0), and
overflow counts. Exits non-zero if a safety check fails.

The fair share of a rep is computed per decision: weight / total weight of the reps who could take that
lead at that moment. (A rep on leave is not owed the leads routed while they were away.)
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from . import fairness
from .availability import cap_usage, is_on_shift, is_out_of_office
from .fairness import PoolState
from .roster import Rep, Roster
from .routing import ASSIGNED, FALLBACK_OWNER, HELD, decide
from .rules import LeadFacts

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # spans the US and EU daylight-saving changes
WEEKDAYS_9_18 = {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def bench_roster() -> Roster:
    def rep(id: str, team: str, weight: float, tz: str, **kw: object) -> dict:
        return {"id": id, "team": team, "weight": weight, "timezone": tz, **kw}

    return Roster.model_validate({
        "teams": [
            {"id": "dach", "overflow": {"kind": "next_pool", "pool": "general"}},
            {"id": "enterprise", "off_hours": "hold", "overflow": {"kind": "fallback_owner", "owner": "vp"},
             "sla_policy": "enterprise"},
            {"id": "general", "overflow": {"kind": "nurture"}},
            {"id": "leaders", "overflow": {"kind": "nurture"}},
        ],
        "reps": [
            rep("anna", "dach", 2, "Europe/Berlin", languages=["de"], daily_cap=40, working_hours=WEEKDAYS_9_18),
            rep("bernd", "dach", 1, "Europe/Berlin", languages=["de"], daily_cap=25, working_hours=WEEKDAYS_9_18,
                out_of_office=[{"start": "2026-03-16", "end": "2026-03-20"}]),
            rep("clara", "dach", 1, "Europe/Vienna", languages=["de", "en"], weekly_cap=400),
            rep("maria", "enterprise", 1, "America/New_York", tier="senior", weekly_cap=120,
                working_hours=WEEKDAYS_9_18),
            rep("kenji", "enterprise", 1, "Asia/Tokyo", tier="senior", weekly_cap=120, working_hours=WEEKDAYS_9_18),
            rep("sam", "general", 3, "Europe/London", daily_cap=120),
            rep("lee", "general", 2, "America/Chicago", daily_cap=80),
            rep("ana", "general", 1, "America/Sao_Paulo", daily_cap=60,
                out_of_office=[{"start": "2026-03-09", "end": "2026-03-13"}]),
            rep("raj", "general", 1, "Asia/Kolkata", weekly_cap=400),
            rep("vp", "leaders", 1, "America/New_York"),
        ],
        "rules": [
            {"id": "enterprise", "pool": "enterprise", "when": {"company_size_min": 1000, "score_min": 80},
             "require": {"min_tier": "senior"}},
            {"id": "german", "pool": "dach", "when": {"languages": ["de"]}, "require": {"speaks_language": True}},
        ],
        "fallback_pool": "general",
    })


def random_lead(rng: random.Random, i: int) -> LeadFacts:
    language = rng.choices(["en", "de", "fr", "es"], [60, 25, 8, 7])[0]
    size = int(rng.lognormvariate(4, 2))
    return LeadFacts(f"lead-{i}", score=rng.uniform(40, 100), language=language,
                     country={"de": "DE", "fr": "FR", "es": "ES"}.get(language, "US"), company_size=size)


def simulate(n: int, seed: int, minutes_between: float) -> dict:
    rng = random.Random(seed)
    roster = bench_roster()
    states: dict[str, PoolState] = defaultdict(PoolState)
    loads: dict[str, list[datetime]] = defaultdict(list)
    actual: Counter = Counter()
    expected: dict[str, float] = defaultdict(float)
    outcomes: Counter = Counter()
    overflow: Counter = Counter()
    cap_violations = unavailable = 0
    queue: list[tuple[datetime, int, LeadFacts, str | None, str | None]] = []
    t = START
    for i in range(n):
        t += timedelta(minutes=rng.expovariate(1 / minutes_between))
        heapq.heappush(queue, (t, i, random_lead(rng, i), None, None))
    joined = False
    while queue:
        now, i, lead, pool, rule = heapq.heappop(queue)
        if not joined and i >= n // 2:  # roster change mid-stream: a new rep joins; nothing is reset
            joined = True
            roster = Roster.model_validate({**roster.model_dump(mode="json"), "reps": roster.model_dump(mode="json")[
                "reps"] + [{"id": "zoe", "team": "general", "weight": 2, "timezone": "Australia/Sydney",
                            "daily_cap": 80}]})
        d = decide(roster, lead, states, loads, now, pool=pool, rule_id=rule)
        for p in d.overflowed:
            overflow[(p, d.outcome)] += 1
        if d.outcome == HELD:
            heapq.heappush(queue, (d.hold_until, i, lead, d.pool, d.rule))
            outcomes["held (routed later)"] += 1
            continue
        outcomes[d.outcome] += 1
        if d.outcome not in (ASSIGNED, FALLBACK_OWNER):
            continue
        rep = roster.rep(d.rep_id)
        if d.outcome == ASSIGNED:
            unavailable += not _was_available(rep, now)
            cap_violations += _would_exceed(rep, loads[rep.id], now)
            candidates = [r for r in roster.members(d.pool) if r.id not in d.skipped]
            total = sum(r.weight for r in candidates)
            for r in candidates:
                expected[r.id] += r.weight / total
            actual[rep.id] += 1
            states[d.pool] = fairness.record(states[d.pool], rep, now)
        recent = now - timedelta(days=8)  # like the service: only the last 8 days can count against a cap
        loads[rep.id] = [at for at in loads[rep.id] if at >= recent] + [now]
    return {"roster": roster, "actual": actual, "expected": expected, "outcomes": outcomes, "overflow": overflow,
            "cap_violations": cap_violations, "unavailable": unavailable, "end": t}


def _was_available(rep: Rep, now: datetime) -> bool:
    return rep.active and rep.weight > 0 and is_on_shift(rep, now) and not is_out_of_office(rep, now)


def _would_exceed(rep: Rep, loads: list[datetime], now: datetime) -> bool:
    daily, weekly = cap_usage(rep, loads, now)
    return (rep.daily_cap is not None and daily >= rep.daily_cap) or (
        rep.weekly_cap is not None and weekly >= rep.weekly_cap)


def report(result: dict, n: int) -> int:
    roster: Roster = result["roster"]
    actual, expected = result["actual"], result["expected"]
    print(f"routing benchmark: {n} leads, {START:%Y-%m-%d} .. {result['end']:%Y-%m-%d} (UTC), "
          f"{len(roster.reps)} reps in {len(roster.teams)} pools")
    worst = 0.0
    for team in roster.teams:
        members = [r for r in roster.members(team.id) if r.id in actual or r.id in expected]
        routed = sum(actual[r.id] for r in members)
        if not routed:
            continue
        weights = sum(r.weight for r in members)
        print(f"\npool {team.id}: {routed} leads assigned")
        print(f"  {'rep':8} {'weight':>6} {'weight share':>12} {'fair share':>10} {'actual':>7} {'deviation':>9}")
        for r in members:
            fair = expected[r.id] / routed
            got = actual[r.id] / routed
            worst = max(worst, abs(got - fair))
            print(f"  {r.id:8} {r.weight:6g} {r.weight / weights:12.1%} {fair:10.1%} {got:7.1%} "
                  f"{(got - fair) * 100:+8.2f}pp")
    print(f"\nlargest deviation from fair share: {worst * 100:.2f} percentage points")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items())))
    print("overflows (pool -> outcome): " + (", ".join(
        f"{p}->{o} {c}" for (p, o), c in sorted(result["overflow"].items())) or "none"))
    print(f"cap violations: {result['cap_violations']}")
    print(f"leads routed to unavailable reps: {result['unavailable']}")
    return 0 if result["cap_violations"] == 0 and result["unavailable"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--minutes-between", type=float, default=4.0, help="mean gap between leads")
    args = parser.parse_args(argv)
    return report(simulate(args.leads, args.seed, args.minutes_between), args.leads)


if __name__ == "__main__":
    sys.exit(main())
