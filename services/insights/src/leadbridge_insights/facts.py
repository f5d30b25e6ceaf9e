"""What the funnel needs to know about one lead, folded from its events. Pure: no I/O, no clock.

Events of one lead arrive on several topics, so not necessarily in the order they happened. The fold is
order-tolerant: flags only turn on, first times keep the minimum, "current" values keep the latest by
their own timestamp, and touches are counted by follow-up id (a replay under a new event id counts once).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any

from leadbridge_contracts.events import (
    EventData,
    FollowUpLogged,
    FollowUpOutcome,
    LeadActivityRecorded,
    LeadCaptured,
    LeadProfile,
    LeadRouted,
    LeadScored,
    SlaAtRisk,
    SlaBreached,
    SlaDeadlineMet,
    SlaDeadlinesSet,
    SlaKind,
    Stage,
    TouchType,
)

ROUTED_OUTCOMES = frozenset({"assigned", "fallback_owner"})
_TIMES = ("captured_at", "first_seen_at", "stage_at", "routed_at", "assigned_at", "first_touch_at",
          "first_touch_due_at", "first_touch_met_at", "mql_at", "last_touch_at", "route_event_at", "closed_at")


@dataclass(frozen=True)
class LeadFacts:
    lead_id: str
    captured: bool = False
    captured_at: datetime | None = None
    first_seen_at: datetime | None = None
    is_test: bool = False
    channel: str | None = None
    campaign: str | None = None
    source: str | None = None
    mql: bool = False
    stage: str | None = None          # the current stage (latest by time): nurture | mql | sql
    stage_at: datetime | None = None
    routed: bool = False              # ever assigned to a rep or a fallback owner
    routed_at: datetime | None = None
    team: str | None = None           # of the latest assignment
    rep: str | None = None
    assigned_at: datetime | None = None
    touch_ids: tuple[str, ...] = ()   # contact attempts (calls, emails, meetings, social), by follow-up id
    first_touch_at: datetime | None = None
    first_touch_due_at: datetime | None = None  # earliest first-touch deadline the SLA watcher reported
    first_touch_met_at: datetime | None = None  # the earliest first-touch deadline met (sla-deadline-met) ...
    first_touch_met_late: bool | None = None    # ... and whether that was late: the watcher's verdict
    sla_at_risk: bool = False
    sla_breached: bool = False
    accepted: bool = False
    rejected: bool = False
    rejected_reason: str | None = None
    qualified: bool = False
    won: bool = False
    won_amount: float | None = None
    lost: bool = False
    lost_reason: str | None = None
    mql_at: datetime | None = None          # when it first reached MQL (or SQL)
    rep_name: str | None = None             # of the latest assignment
    last_touch_at: datetime | None = None   # the latest touch (any follow-up the SLA watcher counts)
    route_event_at: datetime | None = None  # the latest lead-routed event, any outcome ...
    route_event: str | None = None          # ... its outcome and reason code, e.g. returned_to_nurture:capacity
    route_pool: str | None = None           # ... and its pool
    closed_at: datetime | None = None       # won or lost (the outcome's time)
    # SLA warnings, sorted: (deadline id, kind, state (at_risk|breached), due_at, fired_at, assignee) as
    # strings; the ids met (sla-deadline-met) or superseded by a re-route (sla-deadlines-set) no longer count
    sla_alerts: tuple[tuple[str | None, ...], ...] = ()
    resolved_deadlines: tuple[str, ...] = ()

    @property
    def touches(self) -> int:
        return len(self.touch_ids)

    @property
    def nurtured(self) -> bool:
        return self.stage == Stage.NURTURE.value

    @property
    def first_touch_within_sla(self) -> bool:
        """The watcher's verdict when it announced a first-touch deadline met; else inferred from the times."""
        if self.first_touch_met_late is not None:
            return not self.first_touch_met_late
        if self.first_touch_at is None:
            return False
        return self.first_touch_due_at is None or self.first_touch_at <= self.first_touch_due_at

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)  # every field (in field order), a scalar but the three below
        for name in _TIMES:
            if (at := out[name]) is not None:
                out[name] = at.isoformat()
        out["touch_ids"] = list(self.touch_ids)
        out["resolved_deadlines"] = list(self.resolved_deadlines)
        out["sla_alerts"] = [list(a) for a in self.sla_alerts]
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LeadFacts:
        values = {k: v for k, v in raw.items() if k in _KNOWN}
        for name in _TIMES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        values["touch_ids"] = tuple(values.get("touch_ids") or ())
        values["resolved_deadlines"] = tuple(values.get("resolved_deadlines") or ())
        values["sla_alerts"] = tuple(tuple(a) for a in values.get("sla_alerts") or ())
        if "lead_id" not in values:
            raise TypeError("stored facts without a lead_id")
        facts = object.__new__(cls)  # as ``cls(**values)``, without the frozen __init__'s setattr per field
        facts.__dict__.update(_DEFAULTS)
        facts.__dict__.update(values)
        return facts


_NAMES = tuple(f.name for f in fields(LeadFacts))
_DEFAULTS = {f.name: None if f.default is MISSING else f.default  # in field order; all immutable (no factories)
             for f in fields(LeadFacts)}
_KNOWN = frozenset(_NAMES)


def _replace(f: LeadFacts, **changes: Any) -> LeadFacts:
    """``dataclasses.replace`` for the fold: the copy takes the 40 fields as they are instead of passing them
    through the frozen ``__init__`` (one ``object.__setattr__`` each: ~18% of insights' CPU in a drain)."""
    if not changes.keys() <= _KNOWN:
        raise TypeError(f"not fields of LeadFacts: {sorted(changes.keys() - _KNOWN)}")
    copy = object.__new__(LeadFacts)
    copy.__dict__.update(f.__dict__)
    copy.__dict__.update(changes)
    return copy


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _later(current: datetime | None, candidate: datetime) -> bool:
    return current is None or candidate >= current


def _with_profile(f: LeadFacts, p: LeadProfile | None, *, authoritative: bool) -> LeadFacts:
    """Attribution from the capture wins; later snapshots only fill gaps."""
    if p is None:
        return f
    def pick(old: str | None, new: str | None) -> str | None:
        return (new if new is not None else old) if authoritative else (old if old is not None else new)

    channel, campaign, source = pick(f.channel, p.channel), pick(f.campaign, p.campaign), pick(f.source, p.source)
    is_test = f.is_test or p.is_test
    if (channel, campaign, source, is_test) == (f.channel, f.campaign, f.source, f.is_test):
        return f  # nothing new: no copy of the 40 fields
    return _replace(f, channel=channel, campaign=campaign, source=source, is_test=is_test)


def _set_stage(f: LeadFacts, stage: str, at: datetime) -> LeadFacts:
    return _replace(f, stage=stage, stage_at=at) if _later(f.stage_at, at) else f


def apply_event(facts: LeadFacts, data: EventData, time: datetime) -> LeadFacts:
    """The facts after one more event (``time``: when it happened, the envelope time)."""
    first_seen = _min(facts.first_seen_at, time)
    f = facts if first_seen == facts.first_seen_at else _replace(facts, first_seen_at=first_seen)
    if isinstance(data, LeadCaptured):
        f = _replace(_with_profile(f, data.profile, authoritative=True), captured=True,
                    captured_at=_min(f.captured_at, data.captured_at))
    elif isinstance(data, LeadActivityRecorded):
        f = _with_profile(f, data.profile, authoritative=False)
    elif isinstance(data, LeadScored):
        f = _with_profile(f, data.profile, authoritative=False)
        if data.became_mql or data.stage in (Stage.MQL, Stage.SQL):
            f = _replace(f, mql=True, mql_at=_min(f.mql_at, data.scored_at))
        if data.stage == Stage.SQL:
            f = _replace(f, qualified=True)
        f = _set_stage(f, data.stage.value, data.scored_at)
    elif isinstance(data, LeadRouted):
        f = _with_profile(f, data.profile, authoritative=False)
        if _later(f.route_event_at, data.routed_at):
            f = _replace(f, route_event_at=data.routed_at, route_pool=data.pool or data.team,
                        route_event=f"{data.outcome}:{data.reason_code or ''}")
        if data.outcome == "returned_to_nurture":
            f = _set_stage(f, Stage.NURTURE.value, data.routed_at)
        elif data.outcome in ROUTED_OUTCOMES:
            f = _replace(f, routed=True, routed_at=_min(f.routed_at, data.routed_at))
            if _later(f.assigned_at, data.routed_at):
                f = _replace(f, team=data.team or data.pool, rep=data.assignee_id, assigned_at=data.routed_at,
                            rep_name=data.assignee_name)
    elif isinstance(data, FollowUpLogged):
        f = _apply_follow_up(f, data)
    elif isinstance(data, (SlaAtRisk, SlaBreached)):
        if data.kind == SlaKind.FIRST_TOUCH:
            f = _replace(f, first_touch_due_at=_min(f.first_touch_due_at, data.due_at))
        f = _replace(f, sla_breached=True) if isinstance(data, SlaBreached) else _replace(f, sla_at_risk=True)
        f = _add_alert(f, data)
    elif isinstance(data, SlaDeadlinesSet):
        for d in data.deadlines:
            if d.kind == SlaKind.FIRST_TOUCH:
                f = _replace(f, first_touch_due_at=_min(f.first_touch_due_at, d.due_at))
        f = _resolve(f, data.superseded_deadline_ids)
    elif isinstance(data, SlaDeadlineMet):
        f = _resolve(f, [data.deadline_id])
        if data.kind == SlaKind.FIRST_TOUCH:
            f = _apply_first_touch_met(f, data)
    return f


def _add_alert(f: LeadFacts, d: SlaAtRisk | SlaBreached) -> LeadFacts:
    """Keep the strongest warning per deadline (a breach outranks its at-risk warning, in any order)."""
    state = "breached" if isinstance(d, SlaBreached) else "at_risk"
    current = next((a for a in f.sla_alerts if a[0] == d.deadline_id), None)
    if current is not None and (current[2] == "breached" or state == "at_risk"):
        return f
    alert = (d.deadline_id, d.kind.value, state, d.due_at.isoformat(), d.fired_at.isoformat(), d.assignee_id)
    others = tuple(a for a in f.sla_alerts if a[0] != d.deadline_id)
    return _replace(f, sla_alerts=tuple(sorted(others + (alert,), key=lambda a: str(a[0]))))


def _resolve(f: LeadFacts, deadline_ids: list[str]) -> LeadFacts:
    new = set(deadline_ids) - set(f.resolved_deadlines)
    return _replace(f, resolved_deadlines=tuple(sorted(set(f.resolved_deadlines) | new))) if new else f


def _apply_first_touch_met(f: LeadFacts, d: SlaDeadlineMet) -> LeadFacts:
    """Keep the verdict on the earliest met first-touch deadline (ties: in time wins, so any order agrees)."""
    current = (f.first_touch_met_at, f.first_touch_met_late)
    candidate = (d.met_at, d.late)
    if current[0] is None or candidate < current:
        f = _replace(f, first_touch_met_at=d.met_at, first_touch_met_late=d.late)
    if d.due_at is not None:
        f = _replace(f, first_touch_due_at=_min(f.first_touch_due_at, d.due_at))
    return f


def _apply_follow_up(f: LeadFacts, d: FollowUpLogged) -> LeadFacts:
    if d.touch_type != TouchType.NOTE and d.follow_up_id not in f.touch_ids:
        f = _replace(f, touch_ids=tuple(sorted(f.touch_ids + (d.follow_up_id,))))
    if d.touch_type != TouchType.NOTE or d.outcome is not None:  # the SLA watcher's notion of a touch
        last = d.occurred_at if f.last_touch_at is None else max(f.last_touch_at, d.occurred_at)
        f = _replace(f, first_touch_at=_min(f.first_touch_at, d.occurred_at), last_touch_at=last)
    match d.outcome:
        case FollowUpOutcome.ACCEPTED:
            f = _replace(f, accepted=True)
        case FollowUpOutcome.REJECTED:
            f = _replace(f, rejected=True, rejected_reason=d.reason or f.rejected_reason)
        case FollowUpOutcome.QUALIFIED:
            f = _replace(f, qualified=True, accepted=True)
        case FollowUpOutcome.WON:
            f = _replace(f, won=True, won_amount=d.amount if d.amount is not None else f.won_amount,
                        closed_at=_min(f.closed_at, d.occurred_at))
        case FollowUpOutcome.LOST:
            f = _replace(f, lost=True, lost_reason=d.reason or f.lost_reason, closed_at=_min(f.closed_at, d.occurred_at))
    return f
