"""Reading and writing the router's state in PostgreSQL (adapter; no routing decisions here)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from . import batch_store, db
from .availability import RepLoad
from .fairness import PoolState, RepCounter
from .roster import Rep, Roster, Rule, Team

ROUTING_KEY = "routing"


# -- roster ---------------------------------------------------------------------------------------

_roster_cache: tuple[str, Roster] | None = None  # (version, roster): rosters are frozen, safe to share


async def load_roster(session: AsyncSession) -> Roster:
    """The roster as this transaction sees it. Parsed once per roster version: the version row changes with
    every write to teams, reps or config (trigger), atomically, so a cached roster is never stale."""
    version = (await session.execute(select(db.roster_version.c.version)
                                     .where(db.roster_version.c.id == 1))).scalar()
    return await roster_at(session, version)


async def roster_at(session: AsyncSession, version: str | None) -> Roster:
    """The roster of ``version`` (the version row as this transaction read it; None: no row yet)."""
    global _roster_cache
    if version is not None and _roster_cache is not None and _roster_cache[0] == version:
        return _roster_cache[1]
    roster = await _read_roster(session)
    if version is not None:
        _roster_cache = (version, roster)
    return roster


async def _read_roster(session: AsyncSession) -> Roster:
    team_rows = (await session.execute(select(db.teams.c.spec).order_by(db.teams.c.id))).scalars().all()
    rep_rows = (await session.execute(select(db.reps.c.spec).order_by(db.reps.c.id))).scalars().all()
    routing = await load_routing(session)
    # stored rows were validated on the way in; skip re-checking references (a rule may point at a
    # team being edited) by building without the cross-reference validator
    return Roster.model_construct(
        teams=[Team.model_validate(t) for t in team_rows],
        reps=[Rep.model_validate(r) for r in rep_rows],
        rules=[Rule.model_validate(r) for r in routing.get("rules", [])],
        fallback_pool=routing.get("fallback_pool"),
    )


async def load_routing(session: AsyncSession) -> dict[str, Any]:
    value = (await session.execute(select(db.config.c.value).where(db.config.c.key == ROUTING_KEY))).scalar()
    return value or {"rules": [], "fallback_pool": None}


async def save_routing(session: AsyncSession, rules: list[Rule], fallback_pool: str | None) -> None:
    value = {"rules": [r.model_dump(mode="json") for r in rules], "fallback_pool": fallback_pool}
    stmt = insert(db.config).values(key=ROUTING_KEY, value=value)
    await session.execute(stmt.on_conflict_do_update(index_elements=[db.config.c.key], set_={"value": value}))


async def upsert_team(session: AsyncSession, team: Team) -> None:
    spec = team.model_dump(mode="json")
    stmt = insert(db.teams).values(id=team.id, spec=spec)
    await session.execute(stmt.on_conflict_do_update(index_elements=[db.teams.c.id],
                                                     set_={"spec": spec, "updated_at": stmt.excluded.updated_at}))


async def upsert_rep(session: AsyncSession, rep: Rep) -> None:
    spec = rep.model_dump(mode="json")
    stmt = insert(db.reps).values(id=rep.id, team=rep.team, spec=spec)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[db.reps.c.id], set_={"spec": spec, "team": rep.team, "updated_at": stmt.excluded.updated_at}))


async def delete_team(session: AsyncSession, team_id: str) -> None:
    await session.execute(delete(db.teams).where(db.teams.c.id == team_id))


async def delete_rep(session: AsyncSession, rep_id: str) -> None:
    await session.execute(delete(db.reps).where(db.reps.c.id == rep_id))


# -- pools: locks, counters, loads ----------------------------------------------------------------

async def lock_pools(session: AsyncSession, pools: list[str]) -> dict[str, float]:
    """Row-lock the pools (sorted, so replicas never deadlock) for the rest of the transaction."""
    if not pools:
        return {}
    locked = await _lock_existing_pools(session, pools)
    if len(locked) == len(set(pools)):
        return locked  # the usual case: every pool has its row already
    await session.execute(insert(db.pool_state).values([{"pool": p, "vtime": 0.0} for p in pools])
                          .on_conflict_do_nothing())
    return await _lock_existing_pools(session, pools)


async def lock_pool_states(session: AsyncSession, pools: list[str]) -> tuple[dict[str, float], dict[str, PoolState]]:
    """The pools row-locked in name order and their states (``vtimes`` and ``states``): one statement, or a few
    the first time a pool is used (its row is created)."""
    states = await batch_store.lock_pool_states(session, pools)
    if states is None:
        await lock_pools(session, sorted(set(pools)))  # creates the missing rows, locks every one
        states = await batch_store.lock_pool_states(session, pools)
        assert states is not None  # every pool has its row now, locked by this transaction
    return {p: s.vtime for p, s in states.items()}, states


async def _lock_existing_pools(session: AsyncSession, pools: list[str]) -> dict[str, float]:
    rows = await session.execute(select(db.pool_state.c.pool, db.pool_state.c.vtime)
                                 .where(db.pool_state.c.pool.in_(pools)).order_by(db.pool_state.c.pool)
                                 .with_for_update())
    return {r.pool: r.vtime for r in rows}


async def load_pool_states(session: AsyncSession, vtimes: dict[str, float]) -> dict[str, PoolState]:
    rows = await session.execute(select(db.rep_counters).where(db.rep_counters.c.pool.in_(list(vtimes))))
    counters: dict[str, dict[str, RepCounter]] = defaultdict(dict)
    for r in rows:
        counters[r.pool][r.rep_id] = RepCounter(r._mapping["pass"], r.assigned, r.last_assigned_at)
    return {p: PoolState(vtime=v, counters=dict(counters[p])) for p, v in vtimes.items()}


def pool_state_writes(pool: str, state: PoolState, rep_id: str) -> list[Any]:
    """The statements that store a pool's new state after ``rep_id`` got a lead (see ``execute_together``)."""
    c = state.counter(rep_id)
    values = {"pass": c.pass_, "assigned": c.assigned, "last_assigned_at": c.last_assigned_at}
    counters = insert(db.rep_counters).values(pool=pool, rep_id=rep_id, **values)
    return [update(db.pool_state).where(db.pool_state.c.pool == pool).values(vtime=state.vtime),
            counters.on_conflict_do_update(index_elements=["pool", "rep_id"], set_=values)]


async def save_pool_state(session: AsyncSession, pool: str, state: PoolState, rep_id: str) -> None:
    await execute_together(session, pool_state_writes(pool, state, rep_id))


async def execute_together(session: AsyncSession, statements: list[Any]) -> None:
    """Run independent writes (to different rows, none reading another's result) in ONE round trip: all but
    the last become data-modifying CTEs of the last. Same transaction, same effects, same errors."""
    *first, main = statements
    for i, stmt in enumerate(first):
        main = main.add_cte(stmt.cte(f"write_{i}"))
    await session.execute(main)


async def open_loads(session: AsyncSession, reps: list[Rep], now: datetime) -> dict[str, RepLoad]:
    """Each capped rep's load: how many routed leads are open now (reps with ``max_open``), and when the leads
    they got in the last 8 days (which cover any local week) were assigned -- open or closed, but not those
    taken away from them (reps with a daily or weekly cap). Reps without caps need no load: not read."""
    counted = sorted({r.id for r in reps if r.max_open is not None})
    stamped = sorted({r.id for r in reps if r.daily_cap is not None or r.weekly_cap is not None})
    if not counted and not stamped:
        return {}
    a = db.assignments
    since = now - timedelta(days=8)
    is_open = a.c.released_at.is_(None)
    recent = a.c.assigned_at >= since
    open_count = func.count().filter(is_open & a.c.rep_id.in_(counted)) if counted else literal(0)
    stamps = (func.array_agg(a.c.assigned_at).filter(recent & a.c.rep_id.in_(stamped)) if stamped
              else literal(None))
    rows = await session.execute(
        select(a.c.rep_id, open_count.label("open_count"), stamps.label("stamps"))
        .where(a.c.rep_id.in_(sorted({*counted, *stamped})), is_open | (a.c.close_outcome.isnot(None) & recent))
        .group_by(a.c.rep_id))
    return {r.rep_id: RepLoad(tuple(r.stamps or ()), r.open_count or 0) for r in rows}


async def try_lock_pools(session: AsyncSession, pools: list[str]) -> dict[str, float] | None:
    """Row-lock existing pools without waiting (SKIP LOCKED); None unless every one of them was locked.
    Used for opportunistic work (the capacity waiting list) that must never deadlock with routing."""
    if not pools:
        return {}
    rows = await session.execute(select(db.pool_state.c.pool, db.pool_state.c.vtime)
                                 .where(db.pool_state.c.pool.in_(pools)).order_by(db.pool_state.c.pool)
                                 .with_for_update(skip_locked=True))
    vtimes = {r.pool: r.vtime for r in rows}
    return vtimes if len(vtimes) == len(set(pools)) else None


# -- leads and assignments ------------------------------------------------------------------------

async def lock_leads(session: AsyncSession, lead_ids: list[str]) -> None:
    """Row-lock many leads (those that have a row), in lead id order: one statement, no deadlocks."""
    if lead_ids:
        await session.execute(select(db.leads.c.lead_id).where(db.leads.c.lead_id.in_(sorted(set(lead_ids))))
                              .order_by(db.leads.c.lead_id).with_for_update())


async def lock_lead(session: AsyncSession, lead_id: str) -> Any:
    return (await session.execute(select(db.leads).where(db.leads.c.lead_id == lead_id).with_for_update())).first()


def lead_upsert(lead_id: str, **values: Any) -> Any:
    stmt = insert(db.leads).values(lead_id=lead_id, **values)
    return stmt.on_conflict_do_update(index_elements=[db.leads.c.lead_id], set_=values)


async def save_lead(session: AsyncSession, lead_id: str, **values: Any) -> None:
    await session.execute(lead_upsert(lead_id, **values))


async def update_lead(session: AsyncSession, lead_id: str, **values: Any) -> None:
    await session.execute(update(db.leads).where(db.leads.c.lead_id == lead_id).values(**values))


def assignment_insert(**values: Any) -> Any:
    return db.assignments.insert().values(**values)


async def open_assignment(session: AsyncSession, **values: Any) -> None:
    await session.execute(assignment_insert(**values))


async def release_assignment(session: AsyncSession, lead_id: str, now: datetime, reason: str, *,
                             close_outcome: str | None = None) -> str | None:
    """End the lead's open assignment; returns the rep it was with (None: there was none). Without
    ``close_outcome`` the lead was taken away from the rep (it stops counting toward their caps); with
    one (won | lost | nurture) the rep worked it (it keeps counting toward that day's and week's caps)."""
    a = db.assignments
    rows = await session.execute(update(a).where(a.c.lead_id == lead_id, a.c.released_at.is_(None))
                                 .values(released_at=now, release_reason=reason, close_outcome=close_outcome)
                                 .returning(a.c.rep_id))
    return rows.scalar()


async def open_leads_of(session: AsyncSession, rep_id: str) -> list[str]:
    a = db.assignments
    rows = await session.execute(select(a.c.lead_id).where(a.c.rep_id == rep_id, a.c.released_at.is_(None))
                                 .order_by(a.c.assigned_at))
    return list(rows.scalars())


async def due_held_leads(session: AsyncSession, now: datetime, limit: int = 50) -> list[Any]:
    leads = db.leads
    rows = await session.execute(select(leads).where(leads.c.status == "held", leads.c.hold_until <= now)
                                 .order_by(leads.c.hold_until).limit(limit).with_for_update(skip_locked=True))
    return list(rows)


async def waiting_leads(session: AsyncSession, pools: list[str], limit: int = 20) -> list[Any]:
    """Leads returned to nurture for capacity that start routing in one of ``pools``, oldest first.
    Claimed with SKIP LOCKED: a lead some other transaction holds is simply not offered now."""
    leads = db.leads
    rows = await session.execute(select(leads).where(leads.c.waiting_since.isnot(None), leads.c.waiting_pool.in_(pools))
                                 .order_by(leads.c.waiting_since, leads.c.lead_id).limit(limit)
                                 .with_for_update(skip_locked=True))
    return list(rows)
