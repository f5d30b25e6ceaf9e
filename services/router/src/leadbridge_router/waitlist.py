"""The capacity waiting list: leads returned to nurture with reason "capacity" are not forgotten.

When a cap slot frees up (a lead closed as won/lost, sent back to nurture, or taken away by escalation),
the oldest waiting lead that can now get an owner is routed, in the same transaction (its lead-routed
goes to the outbox with the change that freed the slot). The hold scheduler also drains the list
periodically, which covers slots freed by the calendar (a new local day or week) and by roster changes.

Locks never wait here: waiting leads are claimed with SKIP LOCKED and the pools with SKIP LOCKED too, so
this opportunistic work cannot deadlock with routing; if a pool is busy, the next drain catches up.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from leadbridge_contracts import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics, store
from .assigner import Emit, apply
from .routing import decide, is_routed, pool_chain, pools_feeding
from .rules import LeadFacts

log = logging.getLogger("leadbridge.router")


async def slot_freed(session: AsyncSession, emit: Emit, rep_id: str | None, now: datetime, *,
                     caused_by: Envelope[Any] | None = None) -> int:
    """``rep_id`` just lost an open lead: offer the slot to the oldest waiting lead that can use it."""
    if rep_id is None:
        return 0
    roster = await store.load_roster(session)
    rep = roster.rep(rep_id)
    if rep is None:
        return 0
    return await fill_freed_slots(session, emit, now, pools=[rep.team], caused_by=caused_by)


async def fill_freed_slots(session: AsyncSession, emit: Emit, now: datetime, *, pools: list[str] | None = None,
                           caused_by: Envelope[Any] | None = None, max_routes: int = 1, scan: int = 20) -> int:
    """Route up to ``max_routes`` of the oldest waiting leads that can use capacity in ``pools`` (all pools:
    None), looking at no more than ``scan`` of them; returns how many were routed."""
    roster = await store.load_roster(session)
    pools = [t.id for t in roster.teams] if pools is None else pools
    feeding = sorted({p for pool in pools if roster.team(pool) for p in pools_feeding(roster, pool)})
    if not feeding:
        return 0
    waiting = await store.waiting_leads(session, feeding, limit=scan)
    if not waiting:
        return 0
    chains = {row.lead_id: pool_chain(roster, row.waiting_pool) for row in waiting}
    locked = await store.try_lock_pools(session, sorted({p for c in chains.values() for p in c}))
    if locked is None:
        metrics.SKIPPED.labels("waiting_list_busy").inc()
        return 0
    routed = 0
    for row in waiting:
        states = await store.load_pool_states(session, locked)
        members = [r for p in chains[row.lead_id] for r in roster.members(p)]
        loads = await store.open_loads(session, members, now)
        facts = LeadFacts(**row.facts)
        decision = decide(roster, facts, states, loads, now, exclude=frozenset(row.previous_assignees),
                          pool=row.waiting_pool, rule_id=row.rule, why="capacity freed up")
        if not is_routed(decision):
            continue
        log.info("waiting lead routed: capacity freed up", extra={"lead_id": row.lead_id, "pool": decision.pool})
        await apply(session, emit, roster, decision, states, row.lead_id, now, lead_row=row, facts=facts,
                    event=row.event, caused_by=caused_by, start=row.waiting_pool)
        metrics.WAITLIST_ROUTED.inc()
        routed += 1
        if routed >= max_routes:
            break
        locked = await store.try_lock_pools(session, sorted(locked)) or locked  # held already: fresh vtimes
    return routed
