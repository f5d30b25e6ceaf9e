"""What insights consumes (``HANDLERS``, at the bottom): every event type, on every topic; it emits nothing.

Each lead event, in the consumer's transaction: explain it (``explain``), append it to the lead's timeline,
and fold it into the lead's funnel facts (``facts.apply_event``) and their flat row; a breach and a routing
that overflowed also get a row of their own (the weekly counts per rep and pool). The ``roster`` topic is
not about a lead: its ``roster-changed`` replaces the stored roster (the rep-load view's caps and shifts).
Redeliveries are skipped by the runner (idempotency by event id); the timeline's unique event id is a
second guard.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import (
    CrmDeliveryRecorded,
    FollowUpLogged,
    LeadActivityRecorded,
    LeadCaptured,
    LeadRouted,
    LeadScored,
    RosterChanged,
    SlaAtRisk,
    SlaBreached,
    SlaDeadlineMet,
    SlaDeadlinesSet,
)
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import BatchContext, HandlerContext

from . import batch_store, store
from .explain import explain
from .facts import apply_event
from .metrics import EVENTS_PROJECTED


def _contact(data: Any, known: dict[str, str | None]) -> dict[str, str | None]:
    """Name, email and company for the search: the capture's win, later snapshots only fill gaps."""
    profile = getattr(data, "profile", None)
    if profile is None or not isinstance(data, (LeadCaptured, LeadActivityRecorded, LeadScored, LeadRouted)):
        return known
    seen = {"name": profile.contact.name, "email": profile.contact.email, "company": profile.company}
    if isinstance(data, LeadCaptured):
        return {k: seen[k] or known.get(k) for k in seen}
    return {k: known.get(k) or seen[k] for k in seen}


async def project(event: Envelope[Any], ctx: HandlerContext[None]) -> None:
    if await store.append_to_timeline(ctx.session, event, explain(event.data)):
        await _fold(event, ctx.session)


async def _fold(event: Envelope[Any], session: Any) -> None:
    """The facts, the views' row, and the breach / overflow rows of one event already on the timeline."""
    facts, contact = await store.load_facts_for_update(session, event.lead_id)
    await store.save_facts(session, apply_event(facts, event.data, event.time), _contact(event.data, contact))
    data = event.data
    if isinstance(data, SlaBreached):
        await store.record_breach(session, event.id, event.lead_id, data)
    elif isinstance(data, LeadRouted):
        await store.record_overflows(session, event.id, event.lead_id, _overflowed(data), data.outcome,
                                     data.routed_at)
    EVENTS_PROJECTED.labels(event.type).inc()


def _overflowed(data: LeadRouted) -> list[str]:
    """The pools a routing overflowed from (a capacity return to nurture names its pool alone)."""
    return data.overflowed_from or ([data.pool] if data.reason_code == "capacity" and data.pool else [])


async def roster_changed(event: Envelope[RosterChanged], ctx: HandlerContext[None]) -> None:
    await store.save_roster(ctx.session, event.data.changed_at, event.data.model_dump(mode="json"))
    EVENTS_PROJECTED.labels(event.type).inc()


async def roster_changed_many(events: list[Envelope[RosterChanged]], ctx: BatchContext[None]) -> None:
    for event in events:
        await roster_changed(event, ctx.for_event(event))


async def project_many(events: list[Envelope[Any]], ctx: BatchContext[None]) -> None:
    """``project`` for a batch, in three statements whatever its size: the timeline rows; the leads' facts and
    contact, locked in lead id order (concurrent replicas cannot deadlock); then each new event folded in
    the batch's order (the lead's) into that state in memory (``facts.apply_event``, as ``project`` does);
    then one row per lead into ``lead_facts`` and ``lead_views``, with the batch's breach and overflow rows."""
    fresh = await batch_store.append_timeline(ctx.session, [(e, explain(e.data)) for e in events])
    first: dict[str, Envelope[Any]] = {}
    for e in events:
        if e.id in fresh:
            first.setdefault(e.id, e)  # an event twice in the batch is folded once, as one by one
    todo = list(first.values())
    if not todo:
        return
    state = await batch_store.load_for_update(ctx.session, [e.lead_id for e in todo])
    breaches: list[tuple[str, str, Any]] = []
    overflows: list[tuple[str, str, list[str], str, datetime]] = []
    for event in todo:
        facts, contact = state[event.lead_id]
        state[event.lead_id] = apply_event(facts, event.data, event.time), _contact(event.data, contact)
        data = event.data
        if isinstance(data, SlaBreached):
            breaches.append((event.id, event.lead_id, data))
        elif isinstance(data, LeadRouted):
            overflows.append((event.id, event.lead_id, _overflowed(data), data.outcome, data.routed_at))
    await batch_store.save(ctx.session, list(state.values()), breaches, overflows)
    for event_type, n in Counter(e.type for e in todo).items():
        EVENTS_PROJECTED.labels(event_type).inc(n)


HANDLERS = EventHandlers(
    on(LeadCaptured, project, batch=project_many),
    on(LeadActivityRecorded, project, batch=project_many),
    on(LeadScored, project, batch=project_many),
    on(LeadRouted, project, batch=project_many),
    on(FollowUpLogged, project, batch=project_many),
    on(SlaAtRisk, project, batch=project_many),
    on(SlaBreached, project, batch=project_many),
    on(SlaDeadlinesSet, project, batch=project_many),
    on(SlaDeadlineMet, project, batch=project_many),
    on(CrmDeliveryRecorded, project, batch=project_many),
    on(RosterChanged, roster_changed, batch=roster_changed_many),
    emits=(),
)
