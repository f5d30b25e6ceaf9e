"""The routing decision: rule -> pool -> available rep by weighted round robin -> else overflow. Pure.

Inputs are plain data (roster, lead facts, pool states, each rep's open routed leads, the clock); the
output is a ``Decision`` that says what to do and why, in words a sales manager can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from . import fairness
from .availability import RepLoad, is_on_shift, is_out_of_office, next_shift_start, unavailable_reason
from .fairness import PoolState
from .roster import Rep, Roster, Rule
from .rules import LeadFacts, first_match, rep_fits

ASSIGNED, FALLBACK_OWNER, NURTURE, HELD = "assigned", "fallback_owner", "returned_to_nurture", "held"


@dataclass(frozen=True)
class Decision:
    outcome: str
    rule: str
    reason: str
    reason_code: str
    pool: str | None = None
    team: str | None = None
    rep_id: str | None = None
    sla_policy: str | None = None
    hold_until: datetime | None = None
    overflowed: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)


def pool_chain(roster: Roster, start: str) -> list[str]:
    """``start`` and the pools its overflow leads to, in order, without cycles."""
    chain: list[str] = []
    pool: str | None = start
    while pool is not None and pool not in chain and roster.team(pool) is not None:
        chain.append(pool)
        team = roster.team(pool)
        pool = team.overflow.pool if team and team.overflow.kind == "next_pool" else None
    return chain


def pools_feeding(roster: Roster, pool: str) -> list[str]:
    """The pools whose leads can end up in ``pool`` (it is on their overflow chain), ``pool`` included, sorted:
    a slot freed in ``pool`` can serve a lead waiting in any of them."""
    return sorted(t.id for t in roster.teams if pool in pool_chain(roster, t.id))


def is_routed(decision: Decision) -> bool:
    """The lead got an owner (a waiting lead re-decided into nurture or a hold stays on the waiting list)."""
    return decision.outcome in (ASSIGNED, FALLBACK_OWNER)


def entry_point(roster: Roster, lead: LeadFacts) -> tuple[Rule | None, str | None]:
    rule = first_match(roster.rules, lead)
    return rule, (rule.pool if rule else roster.fallback_pool)


def decide(
    roster: Roster,
    lead: LeadFacts,
    states: Mapping[str, PoolState],
    open_leads: Mapping[str, RepLoad | list[datetime]],
    now: datetime,
    *,
    exclude: frozenset[str] = frozenset(),
    pool: str | None = None,
    rule_id: str | None = None,
    why: str | None = None,
    entry: tuple[Rule | None, str | None] | None = None,
) -> Decision:
    """Route ``lead``. ``entry``: its ``entry_point``, when the caller has it already. ``open_leads`` holds each rep's load (``RepLoad``; a plain list of datetimes means
    open leads assigned at those times). ``pool``/``rule_id`` re-route within a known pool (escalation); ``exclude`` lists
    reps who must not get it (previous assignees); ``why`` prefixes the reason (e.g. 'escalation')."""
    if pool is None:
        rule, pool = entry or entry_point(roster, lead)
        rule_id = rule.id if rule else "fallback"
        matched = f"rule '{rule.id}' matched" if rule else "no rule matched, fallback pool"
    else:
        rule = next((r for r in roster.rules if r.id == rule_id), None)
        rule_id = rule_id or "fallback"
        matched = f"re-routing in pool '{pool}'"
    prefix = f"{why}: " if why else ""
    if pool is None or roster.team(pool) is None:
        return Decision(NURTURE, rule_id, f"{prefix}{matched}, but there is no pool to route to", "no_pool")
    notes: list[str] = []
    skipped: dict[str, str] = {}
    overflowed: list[str] = []
    first = pool
    for current in pool_chain(roster, pool):
        team = roster.team(current)
        assert team is not None
        candidates: list[Rep] = []
        off_shift: list[Rep] = []
        for rep in roster.members(current):
            reason = "previous assignee of this lead" if rep.id in exclude else None
            reason = reason or rep_fits(rule if current == first else None, rep, lead)
            reason = reason or unavailable_reason(rep, open_leads.get(rep.id, []), now, check_shift=False)
            if reason is None and not is_on_shift(rep, now):
                off_shift.append(rep)
                reason = "off shift"
            if reason is None:
                candidates.append(rep)
            else:
                skipped[rep.id] = reason
        state = states.get(current, PoolState())
        chosen = fairness.pick(state, candidates)
        sla = (rule.sla_policy if rule and rule.sla_policy and current == first else None) or team.sla_policy
        if chosen is not None:
            c = state.counter(chosen.id)
            reason = (f"{prefix}{matched} -> pool '{current}'; {chosen.id} is next in the weighted round robin "
                      f"(weight {chosen.weight:g}, {c.assigned} leads so far, {len(candidates)} of "
                      f"{len(roster.members(current))} reps available)")
            if overflowed:
                reason += f"; overflowed from {', '.join(overflowed)}"
            return Decision(ASSIGNED, rule_id, reason, "assigned", current, team.id, chosen.id, sla,
                            overflowed=tuple(overflowed), skipped=skipped)
        if team.off_hours == "hold" and off_shift:
            until = min(t for t in (next_shift_start(r, now) for r in off_shift) if t is not None)
            reason = (f"{prefix}{matched} -> pool '{current}'; nobody on shift, held until the next shift starts "
                      f"at {until.isoformat()}")
            return Decision(HELD, rule_id, reason, "held_off_hours", current, team.id, None, sla, until,
                            tuple(overflowed), skipped)
        notes.append(f"nobody in pool '{current}' can take it ({_summary(roster.members(current), skipped)})")
        overflowed.append(current)
        if team.overflow.kind == "fallback_owner":
            owner = roster.rep(team.overflow.owner or "")
            if owner and owner.active and owner.id not in exclude and not is_out_of_office(owner, now):
                reason = f"{prefix}{matched}; {'; '.join(notes)}; overflow to fallback owner {owner.id}"
                return Decision(FALLBACK_OWNER, rule_id, reason, "capacity", current, owner.team, owner.id, sla,
                                overflowed=tuple(overflowed), skipped=skipped)
            notes.append(f"fallback owner {team.overflow.owner} is unavailable")
    reason = f"capacity: {prefix}{matched}; {'; '.join(notes)}; back to nurture"
    return Decision(NURTURE, rule_id, reason, "capacity", overflowed[-1] if overflowed else first, None, None,
                    None, overflowed=tuple(overflowed), skipped=skipped)


def _summary(members: list[Rep], skipped: Mapping[str, str]) -> str:
    if not members:
        return "no reps"
    counts: dict[str, int] = {}
    for rep in members:
        key = skipped.get(rep.id, "?").split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
