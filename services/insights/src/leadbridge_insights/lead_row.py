"""One lead's facts as the flat, typed row the views filter and aggregate in SQL. Pure: no I/O, no clock.

Everything here follows from the facts alone, so the row can be rewritten whenever an event arrives:
the status a manager searches by, the two speed-to-lead durations, whether the lead is open (counts
against its rep's ``max_open``), unowned (a limbo candidate once old enough), waiting for capacity, and
its live SLA warning (at risk or breached, not yet met, superseded or followed by a touch).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .facts import LeadFacts
from .speed import bucket_of

STATUSES = ("won", "lost", "rejected", "qualified", "accepted", "touched", "routed", "waiting", "nurture", "mql",
            "captured")


def status_of(f: LeadFacts) -> str:
    """The furthest point the lead has reached, the outcome first (one word, for search and the list)."""
    if f.won:
        return "won"
    if f.lost:
        return "lost"
    if f.rejected:
        return "rejected"
    if f.qualified:
        return "qualified"
    if f.accepted:
        return "accepted"
    if waiting_pool(f):
        return "waiting"
    if f.nurtured:
        return "nurture"
    if f.routed and f.touches:
        return "touched"
    if f.routed:
        return "routed"
    return "mql" if f.mql else "captured"


def is_open(f: LeadFacts) -> bool:
    """Routed, not closed and not sent back to nurture: the lead takes one of its rep's max_open slots."""
    return f.routed and not (f.won or f.lost) and not f.nurtured and f.rep is not None


def waiting_pool(f: LeadFacts) -> str | None:
    """The pool whose capacity waiting list holds the lead: its latest routing returned it to nurture for
    capacity, and it was not scored back to nurture, routed or closed since."""
    if f.route_event != "returned_to_nurture:capacity" or f.won or f.lost or f.route_event_at is None:
        return None
    if f.stage_at is not None and f.stage_at > f.route_event_at:
        return None
    return f.route_pool


def live_alert(f: LeadFacts) -> tuple[str, str, datetime, str | None] | None:
    """(state, kind, due_at, assignee) of the lead's most pressing open SLA warning (breached first, then the
    earliest due), or None. A warning is closed by its deadline being met or superseded, by a touch at or
    after it fired, or by the lead closing or going back to nurture."""
    if f.won or f.lost or f.nurtured:
        return None
    live = []
    for deadline_id, kind, state, due, fired, assignee in f.sla_alerts:
        if deadline_id in f.resolved_deadlines:
            continue
        if f.last_touch_at is not None and f.last_touch_at >= datetime.fromisoformat(str(fired)):
            continue
        live.append((state != "breached", datetime.fromisoformat(str(due)), str(state), str(kind), assignee))
    if not live:
        return None
    _, due_at, alert_state, alert_kind, alert_assignee = min(live, key=lambda a: (a[0], a[1]))
    return alert_state, alert_kind, due_at, alert_assignee


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


def _bucket(seconds: float | None) -> int | None:
    return None if seconds is None else bucket_of(seconds)


def row_of(f: LeadFacts) -> dict[str, Any]:
    """The lead_views columns derived from the facts (the JSON facts are stored beside them in lead_facts)."""
    cohort = f.captured_at or f.first_seen_at
    alert = live_alert(f)
    touch_secs = _seconds(cohort, f.first_touch_at) if f.routed else None
    route_secs = _seconds(cohort, f.routed_at)
    return {
        "channel": f.channel, "campaign": f.campaign, "source": f.source, "team": f.team, "rep": f.rep,
        "rep_name": f.rep_name, "status": status_of(f), "mql_at": f.mql_at, "routed_at": f.routed_at,
        "assigned_at": f.assigned_at if f.routed else None, "first_touch_at": f.first_touch_at,
        "touch_secs": touch_secs, "route_secs": route_secs, "routed": f.routed,
        "touch_bucket": _bucket(touch_secs), "route_bucket": _bucket(route_secs),
        # the closed-loop funnel's own columns (``funnel``'s definitions)
        "mql": f.mql, "nurtured": f.nurtured, "sla_at_risk": f.sla_at_risk, "touches": f.touches,
        "within_sla": f.routed and f.first_touch_within_sla,
        "breached": f.sla_breached, "accepted": f.accepted, "rejected": f.rejected,
        "rejected_reason": (f.rejected_reason or "unspecified") if f.rejected else None, "qualified": f.qualified,
        "won": f.won, "won_amount": f.won_amount, "lost": f.lost,
        "lost_reason": (f.lost_reason or "unspecified") if f.lost else None,
        "is_open": is_open(f), "unowned": not f.routed and not f.nurtured,
        "waiting_pool": waiting_pool(f), "waiting_since": f.route_event_at if waiting_pool(f) else None,
        "alert_state": alert[0] if alert else None, "alert_kind": alert[1] if alert else None,
        "alert_due_at": alert[2] if alert else None, "alert_owner": (alert[3] or f.rep) if alert else None,
    }


def search_text(f: LeadFacts, contact: Mapping[str, str | None]) -> str:
    """What the lead search matches (``lead_search``): the lower-cased id, contact (name, email, company) and
    owner (rep id and name), whichever the lead has."""
    return " ".join(x for x in (f.lead_id, *contact.values(), f.rep, f.rep_name) if x).lower()
