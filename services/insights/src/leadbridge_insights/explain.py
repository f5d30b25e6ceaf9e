"""One line per event that a sales or marketing manager can read: why each decision was taken.

Pure functions of the event data (no I/O, no clock). Never includes personal data (emails, phones, names
of prospects): only ids, scores, rules, teams, reps and reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from leadbridge_contracts.events import (
    CrmDeliveryRecorded,
    EventData,
    FollowUpLogged,
    LeadActivityRecorded,
    LeadCaptured,
    LeadProfile,
    LeadRouted,
    LeadScored,
    SlaAtRisk,
    SlaBreached,
    SlaDeadline,
    SlaDeadlineMet,
    SlaDeadlinesSet,
    SlaKind,
)

_SLA_KIND = {SlaKind.FIRST_TOUCH: "First-touch", SlaKind.CADENCE: "Follow-up cadence",
             SlaKind.DISPOSITION: "Disposition"}
_DEADLINE = {SlaKind.FIRST_TOUCH: "first touch", SlaKind.CADENCE: "follow-up cadence",
             SlaKind.DISPOSITION: "disposition"}


def _num(value: float) -> str:
    return f"{value:g}"


def _signed(value: float) -> str:
    return f"{value:+g}"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _clock(value: datetime, since: datetime) -> str:
    """The time of day when on the same UTC day as ``since`` (then the date is already said), else date and time."""
    utc, ref = value.astimezone(UTC), since.astimezone(UTC)
    return utc.strftime("%H:%M") if utc.date() == ref.date() else _when(value)


def _parts(**fields: Any) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fields.items() if v not in (None, ""))


def _origin(profile: LeadProfile) -> str:
    return _parts(source=profile.source, channel=profile.channel, campaign=profile.campaign,
                  form=profile.form_type)


def explain_captured(d: LeadCaptured) -> str:
    origin = _origin(d.profile)
    text = "Captured" + (f" ({origin})" if origin else "")
    if d.profile.is_test:
        text += "; platform test lead, kept out of the funnel"
    return text


def explain_activity(d: LeadActivityRecorded) -> str:
    details = _parts(form=d.form_type, channel=d.channel, campaign=d.campaign, asset=d.asset)
    return f"Activity: {d.kind}" + (f" ({details})" if details else "")


def explain_scored(d: LeadScored) -> str:
    stage = d.stage.value.upper()
    text = (f"Scored {_num(d.score)} (grade {d.grade}): fit {_num(d.fit)}, engagement {_num(d.engagement)}, "
            f"intent {_num(d.intent)}, negative {_num(d.negative)} -> {stage}")
    if d.became_mql:
        text += " (crossed the MQL threshold)"
    elif d.previous_stage is not None and d.previous_stage != d.stage:
        text += f" (was {d.previous_stage.value.upper()})"
    if d.reason:
        text += f"; reason: {d.reason}"
    if d.matched_rules:
        rules = "; ".join(f"{r.rule} {_signed(r.points)}" + (f" ({r.explanation})" if r.explanation else "")
                          for r in d.matched_rules)
        text += f". Rules: {rules}"
    return text + f" [model {d.model_version}]"


def explain_routed(d: LeadRouted) -> str:
    rule = f"rule {d.rule}" if d.rule else "no rule"
    if d.outcome == "returned_to_nurture":
        text = f"Returned to nurture ({rule}): {d.reason}"
    else:
        who = d.assignee_name or d.assignee_id or "nobody"
        if d.assignee_name and d.assignee_id and d.assignee_name != d.assignee_id:
            who = f"{d.assignee_name} ({d.assignee_id})"
        verb = "Sent to fallback owner" if d.outcome == "fallback_owner" else "Assigned to"
        where = _parts(team=d.team, pool=d.pool)
        text = f"{verb} {who}" + (f", {where}" if where else "") + f" by {rule}: {d.reason}"
    if d.sla_policy:
        text += f"; SLA policy {d.sla_policy}"
    if d.attempt > 1:
        text += f"; re-route #{d.attempt}"
        if d.previous_assignees:
            text += f" (previously {', '.join(d.previous_assignees)})"
    return text


def explain_follow_up(d: FollowUpLogged) -> str:
    text = d.touch_type.value.capitalize() + (f" by {d.actor}" if d.actor else "")
    if d.outcome is not None:
        text += f": {d.outcome.value}"
        if d.reason:
            text += f" ({d.reason})"
        if d.bant is not None:
            met = [k for k in ("budget", "authority", "need", "timing") if getattr(d.bant, k)]
            text += f" (BANT: {', '.join(met) if met else 'none'})"
        if d.amount is not None:
            text += f" (amount {_num(d.amount)})"
    elif d.reason:
        text += f" ({d.reason})"
    return text


def _sla_who(d: SlaAtRisk | SlaBreached) -> str:
    who = _parts(rep=d.assignee_id, team=d.team)
    return f"policy {d.policy}" + (f", {who}" if who else "")


def explain_at_risk(d: SlaAtRisk) -> str:
    return f"{_SLA_KIND[d.kind]} SLA at risk: due {_when(d.due_at)} ({_sla_who(d)})"


def explain_breached(d: SlaBreached) -> str:
    text = f"{_SLA_KIND[d.kind]} SLA breached: was due {_when(d.due_at)} ({_sla_who(d)})"
    return text + ("; escalated for re-assignment" if d.escalate else "; not escalated")


def _deadline(d: SlaDeadline) -> str:
    text = f"{_DEADLINE[d.kind]} due {_when(d.due_at)}"
    return text + (f" (at risk {_clock(d.at_risk_at, d.due_at)})" if d.at_risk_at is not None else "")


def explain_deadlines_set(d: SlaDeadlinesSet) -> str:
    who = d.assignee_id or "nobody"
    where = f" (team {d.team})" if d.team else ""
    replaced = len(d.superseded_deadline_ids)
    if not d.deadlines:
        return (f"SLA clock stopped: {replaced} deadline{'s' if replaced != 1 else ''} of the previous assignment "
                f"no longer count (policy {d.policy})")
    text = "; ".join(_deadline(x) for x in d.deadlines) + f" for {who}{where} under policy {d.policy}"
    text = text[0].upper() + text[1:]
    if d.routing_attempt > 1:
        text += f"; re-route #{d.routing_attempt}"
    if replaced:
        text += f"; replaces {replaced} earlier deadline{'s' if replaced != 1 else ''}"
    return text


def explain_deadline_met(d: SlaDeadlineMet) -> str:
    verdict = "met late" if d.late else "met"
    text = f"{_SLA_KIND[d.kind]} SLA {verdict}: touched {_when(d.met_at)}"
    if d.due_at is not None:
        text += f", {'was due' if d.late else 'due'} {_clock(d.due_at, d.met_at)}"
    return text


def explain_crm_delivery(d: CrmDeliveryRecorded) -> str:
    code = f" (HTTP {d.status_code})" if d.status_code is not None else ""
    text = f"{d.delivered_event_type} to {d.destination}, attempt {d.attempt}: {d.result}{code}"
    if d.error and d.result != "delivered":
        text += f"; {d.error}"
    if d.next_attempt_at is not None:
        text += f"; retry at {_when(d.next_attempt_at)}"
    return text


EXPLAINERS: dict[type[EventData], Callable[[Any], str]] = {
    CrmDeliveryRecorded: explain_crm_delivery,
    LeadCaptured: explain_captured,
    LeadActivityRecorded: explain_activity,
    LeadScored: explain_scored,
    LeadRouted: explain_routed,
    FollowUpLogged: explain_follow_up,
    SlaAtRisk: explain_at_risk,
    SlaBreached: explain_breached,
    SlaDeadlinesSet: explain_deadlines_set,
    SlaDeadlineMet: explain_deadline_met,
}


def explain(data: EventData) -> str:
    """The one-line explanation of any LeadBridge event (a generic line for types added later)."""
    explainer = EXPLAINERS.get(type(data))
    return explainer(data) if explainer else f"{data.event_type} event"
