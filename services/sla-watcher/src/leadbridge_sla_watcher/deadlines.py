"""Deadline state transitions. Pure: plain data in, plain data out; the clock is passed in.

- a routing creates the policy's deadlines (first touch, cadence, disposition) for the new assignee;
  a re-route (higher attempt) supersedes the previous attempt's live deadlines and starts new ones;
  a stale or repeated routing changes nothing;
- a touch stops a first-touch deadline, advances a cadence count, and an outcome meets a disposition.
  What counts is the touch's ``occurred_at``: a touch that arrives late but happened before the deadline
  is recorded as met in time, even after the breach was emitted (the breach is never retracted);
- firing: at ``at_risk_at`` an at-risk warning, at ``due_at`` a breach (an overdue deadline whose
  warning never went out gets only the breach: warnings come before breaches or not at all).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from leadbridge_contracts.events import FollowUpOutcome, SlaKind, TouchType

from .business_hours import Calendar, add_business_minutes, add_wall_minutes
from .policies import Clock, ResolvedPolicy, TimeLimit


class Status(StrEnum):
    OPEN = "open"  # running: will fire
    BREACHED = "breached"  # breach emitted; a late touch may still be recorded
    MET = "met"  # met by a touch that occurred in time (breach_fired_at set = reported after the breach)
    MET_LATE = "met_late"  # met by a touch that occurred after the due time
    SUPERSEDED = "superseded"  # the lead was re-routed or returned to nurture before it was due
    CLOSED = "closed"  # the lead was rejected, won or lost: nothing more is required
    UNREADABLE = "unreadable"  # the timer could not read the row: parked and reported, never fired


LIVE = frozenset({Status.OPEN, Status.BREACHED})
DISPOSITIONS = frozenset({FollowUpOutcome.ACCEPTED, FollowUpOutcome.REJECTED, FollowUpOutcome.QUALIFIED,
                          FollowUpOutcome.WON, FollowUpOutcome.LOST})
ENDINGS = frozenset({FollowUpOutcome.REJECTED, FollowUpOutcome.WON, FollowUpOutcome.LOST})


class Firing(StrEnum):
    AT_RISK = "at_risk"
    BREACH = "breach"


@dataclass(frozen=True)
class Route:
    """What the watcher needs from a lead-routed event."""

    lead_id: str
    attempt: int
    routed_at: datetime
    assignee_id: str | None
    team: str | None
    outcome: str = "assigned"

    @property
    def starts_clock(self) -> bool:
        return self.outcome != "returned_to_nurture"


@dataclass(frozen=True)
class Touch:
    """What the watcher needs from a follow-up-logged event."""

    follow_up_id: str
    occurred_at: datetime
    touch_type: TouchType
    outcome: FollowUpOutcome | None = None

    @property
    def is_contact(self) -> bool:
        """A touch of the prospect; a bare note is not one."""
        return self.touch_type != TouchType.NOTE or self.outcome is not None


@dataclass(frozen=True)
class Deadline:
    id: str
    lead_id: str
    kind: SlaKind
    policy: str
    attempt: int
    assignee_id: str | None
    team: str | None
    starts_at: datetime
    due_at: datetime
    at_risk_at: datetime | None = None
    required: int = 1
    count: int = 0
    late_count: int = 0
    escalate: bool = True
    status: Status = Status.OPEN
    at_risk_fired_at: datetime | None = None
    breach_fired_at: datetime | None = None
    met_at: datetime | None = None  # occurred_at of the touch that met it

    @property
    def next_fire_at(self) -> datetime | None:
        if self.status != Status.OPEN:
            return None
        if self.at_risk_at is not None and self.at_risk_fired_at is None and self.at_risk_at < self.due_at:
            return self.at_risk_at
        return self.due_at


# -- routing --------------------------------------------------------------------------------------


def _limit_end(start: datetime, limit: TimeLimit, fraction: float, calendar: Calendar) -> datetime:
    minutes = limit.minutes * fraction
    if limit.clock == Clock.WALL:
        return add_wall_minutes(start, minutes)
    return add_business_minutes(start, minutes, calendar)


def plan_deadlines(route: Route, policy: ResolvedPolicy, calendar: Calendar, new_id: Callable[[], str]
                   ) -> list[Deadline]:
    """The deadlines a routing starts, per the policy; none for a lead returned to nurture."""
    if not route.starts_clock:
        return []
    cfg = policy.config
    frac = cfg.at_risk_fraction
    deadline = partial(Deadline, lead_id=route.lead_id, policy=policy.name, attempt=route.attempt,
                       assignee_id=route.assignee_id, team=route.team, starts_at=route.routed_at, escalate=cfg.escalate)
    out: list[Deadline] = []
    for kind, limit in ((SlaKind.FIRST_TOUCH, cfg.first_touch), (SlaKind.DISPOSITION, cfg.disposition)):
        if limit is None:
            continue
        out.append(deadline(
            id=new_id(), kind=kind, due_at=_limit_end(route.routed_at, limit, 1.0, calendar),
            at_risk_at=_limit_end(route.routed_at, limit, frac, calendar) if frac else None,
        ))
    if cfg.cadence is not None:
        span = timedelta(days=cfg.cadence.days)
        out.append(deadline(
            id=new_id(), kind=SlaKind.CADENCE, due_at=route.routed_at + span, required=cfg.cadence.touches,
            at_risk_at=route.routed_at + span * frac if frac else None,
        ))
    return out


@dataclass(frozen=True)
class RouteResult:
    accepted: bool  # False: stale or repeated routing, nothing changed
    changed: list[Deadline]  # superseded deadlines of the previous attempt
    created: list[Deadline]  # new deadlines, with the lead's known touches already applied


def on_route(current_attempt: int | None, existing: list[Deadline], route: Route, policy: ResolvedPolicy,
             calendar: Calendar, touches: list[Touch], new_id: Callable[[], str]) -> RouteResult:
    if current_attempt is not None and route.attempt <= current_attempt:
        return RouteResult(False, [], [])
    # the previous assignee is no longer accountable: open deadlines stop, breached ones leave the live set
    # (their breach_fired_at stays: what was emitted is history, never retracted)
    superseded = [replace(d, status=Status.SUPERSEDED) for d in existing if d.status in LIVE]
    created = plan_deadlines(route, policy, calendar, new_id)
    for touch in sorted(touches, key=lambda t: t.occurred_at):  # touches that arrived before the lead
        created = [apply_touch(d, touch) for d in created]
    return RouteResult(True, superseded, created)


# -- touches --------------------------------------------------------------------------------------


def apply_touch(d: Deadline, touch: Touch) -> Deadline:
    """The deadline after ``touch``; unchanged if the touch does not concern it."""
    if d.status not in LIVE or touch.occurred_at < d.starts_at:
        return d
    in_time = touch.occurred_at <= d.due_at
    met_status = Status.MET if in_time else Status.MET_LATE
    if d.kind == SlaKind.FIRST_TOUCH:
        if touch.is_contact:
            return replace(d, status=met_status, met_at=touch.occurred_at, count=d.count + 1)
        return d
    if d.kind == SlaKind.DISPOSITION:
        if touch.outcome in DISPOSITIONS:
            return replace(d, status=met_status, met_at=touch.occurred_at)
        return d
    # cadence: touches inside the window count; later ones only make it "met late"
    if touch.outcome in ENDINGS:
        return replace(d, status=Status.CLOSED, met_at=touch.occurred_at) if d.status == Status.OPEN else d
    if not touch.is_contact:
        return d
    if in_time:
        d = replace(d, count=d.count + 1)
        if d.count >= d.required:
            return replace(d, status=Status.MET, met_at=touch.occurred_at)
        return d
    d = replace(d, late_count=d.late_count + 1)
    if d.count + d.late_count >= d.required:
        return replace(d, status=Status.MET_LATE, met_at=touch.occurred_at)
    return d


# -- firing ---------------------------------------------------------------------------------------


def due_firing(d: Deadline, now: datetime) -> Firing | None:
    """What ``fire`` fires at ``now``: the at-risk warning, the breach, or nothing (None)."""
    due = d.next_fire_at
    if due is None or now < due:
        return None
    return Firing.BREACH if now >= d.due_at else Firing.AT_RISK


def fire(d: Deadline, now: datetime) -> tuple[Deadline, Firing | None]:
    """Fire what is due at ``now``: an at-risk warning, or the breach. (None if nothing is due.)"""
    firing = due_firing(d, now)
    if firing is None:
        return d, None
    if firing == Firing.BREACH:
        return replace(d, status=Status.BREACHED, breach_fired_at=now), Firing.BREACH
    return replace(d, at_risk_fired_at=now), Firing.AT_RISK
