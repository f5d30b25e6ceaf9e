"""Routing inside one database transaction: lock, decide (pure), persist, emit LeadRouted to the outbox.

Used by the event handlers (lead-scored, sla-breached), the roster API (a deactivated rep's leads) and
the held-lead scheduler. Every path locks the lead row first, then the pools' rows in name order, so
two replicas never exceed a cap and never assign one lead twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from leadbridge_contracts import Envelope, LeadProfile, LeadRouted, LeadScored
from sqlalchemy.ext.asyncio import AsyncSession

from . import fairness, metrics, store
from .fairness import PoolState
from .roster import Roster
from .routing import ASSIGNED, FALLBACK_OWNER, HELD, NURTURE, Decision, decide, entry_point, pool_chain
from .rules import LeadFacts

log = logging.getLogger("leadbridge.router")
SOURCE = "router"
Emit = Callable[[Envelope[Any]], Awaitable[None]]


_FACT_FIELDS = tuple(f.name for f in fields(LeadFacts))


def facts_dict(facts: LeadFacts) -> dict[str, Any]:
    """``dataclasses.asdict(facts)`` (its fields are plain values), without its recursion."""
    return {name: getattr(facts, name) for name in _FACT_FIELDS}


def facts_of(data: LeadScored) -> LeadFacts:
    p = data.profile
    return LeadFacts(lead_id=data.lead_id, score=data.score, grade=data.grade, stage=str(data.stage),
                     language=p.language, country=p.country, company_size=p.company_size,
                     segment=p.custom.get("segment"))


async def route(
    session: AsyncSession,
    emit: Emit,
    lead_id: str,
    now: datetime,
    *,
    lead_row: Any,
    facts: LeadFacts,
    event: dict[str, Any],
    caused_by: Envelope[Any] | None = None,
    why: str | None = None,
    pool: str | None = None,
    rule_id: str | None = None,
    exclude: frozenset[str] = frozenset(),
) -> Decision:
    """Decide and apply one routing of a lead whose row is locked already (``lead_row`` may be None)."""
    roster = await store.load_roster(session)
    start = pool or entry_point(roster, facts)[1]
    chain = pool_chain(roster, start) if start else []
    _, states = await store.lock_pool_states(session, sorted(chain))
    members = [r for p in chain for r in roster.members(p)]
    loads = await store.open_loads(session, members, now)
    decision = decide(roster, facts, states, loads, now, exclude=exclude, pool=pool, rule_id=rule_id, why=why)
    await apply(session, emit, roster, decision, states, lead_id, now, lead_row=lead_row, facts=facts,
                event=event, caused_by=caused_by, start=start)
    return decision


@dataclass(frozen=True)
class Applied:
    """What applying a decision writes and emits: the lead's row, its new assignment, the pool's new state."""

    lead: dict[str, Any]  # the lead row's values (every column but lead_id, the same keys for every outcome)
    assignment: dict[str, Any] | None = None
    pool_state: tuple[str, PoolState, str] | None = None  # (pool, its state after the assignment, rep id)
    event: Envelope[Any] | None = None  # the lead-routed to emit (none for a hold)


async def apply(session: AsyncSession, emit: Emit, roster: Roster, d: Decision, states: dict, lead_id: str,
                now: datetime, *, lead_row: Any, facts: LeadFacts, event: dict[str, Any],
                caused_by: Envelope[Any] | None, start: str | None) -> None:
    """Persist decision ``d`` about a lead whose row (and pools) are locked, and emit its LeadRouted."""
    applied = plan(roster, d, states, lead_id, now, lead_row=lead_row, facts=facts, event=event,
                   caused_by=caused_by, start=start)
    if applied is None:
        return
    writes = []  # one round trip for the pool's counters, the assignment and the lead (all rows locked)
    if applied.pool_state is not None:
        writes += store.pool_state_writes(*applied.pool_state)
    if applied.assignment is not None:
        writes.append(store.assignment_insert(**applied.assignment))
    writes.append(store.lead_upsert(lead_id, **applied.lead))
    await store.execute_together(session, writes)
    if applied.event is not None:
        await emit(applied.event)


def plan(roster: Roster, d: Decision, states: dict, lead_id: str, now: datetime, *, lead_row: Any,
         facts: LeadFacts, event: Any, caused_by: Envelope[Any] | None, start: str | None,
         scored: LeadScored | None = None, log_level: int = logging.INFO) -> Applied | None:
    """What persisting decision ``d`` writes and emits (``apply`` one at a time, ``batch_routing`` many).
    ``start`` is the pool routing started from: a lead returned to nurture for capacity waits there.
    A closed (won/lost) lead is never routed again, whichever path got here: nothing is written or emitted.
    ``event`` is the lead-scored data stored with the lead (its JSON dict); with ``scored`` (that data as
    the model, ``batch_routing``) it may be its JSON text instead, and the score, grade and profile of the
    lead-routed come from the model rather than from re-validating the dict. ``log_level``: of the line
    about the lead (``batch_routing`` logs one INFO line per batch, each lead at DEBUG)."""
    if lead_row is not None and lead_row.status == "closed":
        metrics.SKIPPED.labels("already_closed").inc()
        log.warning("refused to route a closed lead", extra={"lead_id": lead_id, "outcome": d.outcome})
        return None
    previous = list(lead_row.previous_assignees) if lead_row is not None else []
    attempt = (lead_row.attempt if lead_row is not None else 0) + (0 if d.outcome == HELD else 1)
    for pool in d.overflowed:
        metrics.OVERFLOWS.labels(pool, d.outcome).inc()
    metrics.ROUTED.labels(d.outcome).inc()
    waits = d.outcome == NURTURE and d.reason_code == "capacity" and start is not None
    since = getattr(lead_row, "waiting_since", None) or now
    common = dict(status=d.outcome, attempt=attempt, rule=d.rule, pool=d.pool, facts=facts_dict(facts), event=event,
                  reason=d.reason, updated_at=now, previous_assignees=previous,
                  waiting_since=since if waits else None, waiting_pool=start if waits else None,
                  closed_outcome=None, closed_at=None)
    if d.outcome == HELD:
        log.log(log_level, "lead held until shift start", extra={"lead_id": lead_id, "pool": d.pool})
        return Applied(lead=dict(assignee=None, hold_until=d.hold_until, **common))
    assignment = pool_state = None
    if d.outcome in (ASSIGNED, FALLBACK_OWNER):
        assert d.rep_id and d.pool
        if d.outcome == ASSIGNED:
            pool_state = (d.pool, fairness.record(states[d.pool], roster.rep(d.rep_id), now), d.rep_id)
        assignment = dict(lead_id=lead_id, rep_id=d.rep_id, pool=d.pool, rule=d.rule, outcome=d.outcome,
                          attempt=attempt, assigned_at=now)
    rep = roster.rep(d.rep_id) if d.rep_id else None
    data = LeadRouted(
        lead_id=lead_id, routed_at=now, outcome=d.outcome, assignee_id=d.rep_id,
        assignee_name=rep.name if rep else None, team=d.team, pool=d.pool, rule=d.rule, reason=d.reason,
        reason_code=d.reason_code, sla_policy=d.sla_policy, attempt=attempt, previous_assignees=previous,
        overflowed_from=list(d.overflowed),
        assignee_timezone=rep.timezone if rep else None,
        assignee_crm_owner_ids=dict(rep.crm_owner_ids) if rep else {},
        score=scored.score if scored is not None else event.get("score"),
        grade=scored.grade if scored is not None else event.get("grade"),
        profile=scored.profile if scored is not None else LeadProfile.model_validate(event.get("profile") or {}),
    )
    log.log(log_level, "lead routed", extra={"lead_id": lead_id, "outcome": d.outcome, "rule": d.rule, "pool": d.pool,
                                   "assignee_id": d.rep_id, "attempt": attempt})
    return Applied(lead=dict(assignee=d.rep_id, hold_until=None, **common), assignment=assignment,
                   pool_state=pool_state,
                   event=Envelope.of(data, source=SOURCE, lead_id=lead_id, caused_by=caused_by, time=now))


async def reroute(session: AsyncSession, emit: Emit, lead_row: Any, now: datetime, *, why: str,
                  release_reason: str, caused_by: Envelope[Any] | None = None) -> Decision:
    """Take a lead away from its current owner and route it again in its pool, never to anyone who had it."""
    previous = list(lead_row.previous_assignees)
    if lead_row.assignee and lead_row.assignee not in previous:
        previous.append(lead_row.assignee)
    await store.release_assignment(session, lead_row.lead_id, now, release_reason)
    row = _with(lead_row, previous_assignees=previous)
    return await route(session, emit, lead_row.lead_id, now, lead_row=row, facts=LeadFacts(**lead_row.facts),
                       event=lead_row.event, caused_by=caused_by, why=why, pool=lead_row.pool,
                       rule_id=lead_row.rule, exclude=frozenset(previous))


class _Row:
    def __init__(self, base: Any, **over: Any) -> None:
        self.__dict__.update(dict(base._mapping), **over)


def _with(row: Any, **over: Any) -> Any:
    return _Row(row, **over)
