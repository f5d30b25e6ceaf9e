"""What the router consumes and emits (``HANDLERS``, at the bottom): sales-ready leads get routed, SLA
breaches get escalated, won/lost follow-ups close a lead's assignment (freeing the rep's slot for the
capacity waiting list). It emits lead-routed here, and roster-changed from its roster API.

Time comes from ``ctx.now()`` (the runtime's clock; tests pass one to ``create_app``)."""

from __future__ import annotations

import logging
from typing import Any

from leadbridge_contracts import Envelope, FollowUpLogged, LeadScored, SlaBreached, Stage
from leadbridge_contracts.events import FollowUpOutcome, LeadRouted, RosterChanged
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import BatchContext, HandlerContext

from . import assigner, metrics, store, waitlist
from .routing import ASSIGNED, FALLBACK_OWNER, HELD

log = logging.getLogger("leadbridge.router")
OWNED = (ASSIGNED, FALLBACK_OWNER, HELD)
CLOSED = "closed"  # won or lost: final, never routed again by any later event


def wants_routing(data: LeadScored) -> bool:
    """Route MQLs once when they cross the threshold, and SQLs."""
    return (data.stage == Stage.MQL and data.became_mql) or data.stage == Stage.SQL


async def on_lead_scored(event: Envelope[LeadScored], ctx: HandlerContext[None]) -> None:
    data = event.data
    if not wants_routing(data):
        if data.stage == Stage.NURTURE:
            await recycle(ctx, data, event)
        metrics.SKIPPED.labels("not_sales_ready").inc()
        return
    row = await store.lock_lead(ctx.session, data.lead_id)
    if row is not None and row.status == CLOSED:
        metrics.SKIPPED.labels("already_closed").inc()
        log.info("lead is closed; not routing it again",
                 extra={"lead_id": data.lead_id, "event_id": event.id, "outcome": row.closed_outcome})
        return
    if row is not None and row.status in OWNED:
        metrics.SKIPPED.labels("already_owned").inc()
        log.info("lead already routed; not routing again",
                 extra={"lead_id": data.lead_id, "event_id": event.id, "status": row.status})
        return
    await assigner.route(ctx.session, ctx.emit, data.lead_id, ctx.now(), lead_row=row, facts=assigner.facts_of(data),
                         event=data.model_dump(mode="json"), caused_by=event)


async def recycle(ctx: HandlerContext[None], data: LeadScored, event: Envelope[Any]) -> None:
    """A routed lead went back to nurture (e.g. sales rejected it): it frees its rep's open slot, and its next
    MQL crossing is routed afresh. A lead waiting for capacity that is no longer sales-ready stops waiting."""
    row = await store.lock_lead(ctx.session, data.lead_id)
    if row is not None and row.waiting_since is not None:
        await store.update_lead(ctx.session, data.lead_id, waiting_since=None, waiting_pool=None, updated_at=ctx.now())
        log.info("waiting lead went back to nurture; off the waiting list",
                 extra={"lead_id": data.lead_id, "event_id": event.id})
        return
    if row is None or row.status not in OWNED:
        return
    now = ctx.now()
    rep = await store.release_assignment(ctx.session, data.lead_id, now, "back to nurture", close_outcome="nurture")
    previous = list(row.previous_assignees) + ([row.assignee] if row.assignee else [])
    await store.update_lead(ctx.session, data.lead_id, status="recycled", assignee=None, hold_until=None,
                          previous_assignees=previous, reason=data.reason or "back to nurture", updated_at=now)
    log.info("routed lead went back to nurture; assignment released", extra={"lead_id": data.lead_id,
                                                                             "event_id": event.id})
    await waitlist.slot_freed(ctx.session, ctx.emit, rep, now, caused_by=event)


CLOSING = {FollowUpOutcome.WON: "won", FollowUpOutcome.LOST: "lost"}


async def on_follow_up_logged(event: Envelope[FollowUpLogged], ctx: HandlerContext[None]) -> None:
    """Won or lost closes the lead's open assignment: the rep's open slot frees up (the oldest waiting lead
    that fits gets it), and the outcome and its time are recorded. Other follow-ups change nothing here
    (a rejection reaches the router as lead-scored back to nurture, from scoring)."""
    data = event.data
    outcome = CLOSING.get(data.outcome) if data.outcome is not None else None
    if outcome is None:
        metrics.SKIPPED.labels("not_a_close").inc()
        return
    row = await store.lock_lead(ctx.session, data.lead_id)
    if row is None:  # closed before it was ever routed: remember it, so that no later lead-scored routes it
        metrics.SKIPPED.labels("unknown_lead").inc()
        log.info("close of a lead the router has not routed; recorded so it is never routed",
                 extra={"lead_id": data.lead_id, "event_id": event.id, "outcome": outcome})
        await store.save_lead(ctx.session, data.lead_id, status=CLOSED, closed_outcome=outcome,
                              closed_at=data.occurred_at, facts={}, event={}, updated_at=ctx.now())
        metrics.CLOSED.labels(outcome).inc()
        return
    if row.status == CLOSED:
        metrics.SKIPPED.labels("already_closed").inc()
        return
    now = ctx.now()
    rep = None
    if row.status in (ASSIGNED, FALLBACK_OWNER):
        rep = await store.release_assignment(ctx.session, data.lead_id, now, f"closed: {outcome}",
                                             close_outcome=outcome)
    await store.update_lead(ctx.session, data.lead_id, status=CLOSED, closed_outcome=outcome,
                          closed_at=data.occurred_at, hold_until=None, waiting_since=None, waiting_pool=None,
                          updated_at=now)
    metrics.CLOSED.labels(outcome).inc()
    log.info("lead closed; assignment released", extra={"lead_id": data.lead_id, "event_id": event.id,
                                                         "outcome": outcome, "assignee_id": rep})
    await waitlist.slot_freed(ctx.session, ctx.emit, rep, now, caused_by=event)


async def on_sla_breached(event: Envelope[SlaBreached], ctx: HandlerContext[None]) -> None:
    data = event.data
    if not data.escalate:
        metrics.SKIPPED.labels("no_escalation").inc()
        return
    row = await store.lock_lead(ctx.session, data.lead_id)
    stale = (row is None or row.status not in (ASSIGNED, FALLBACK_OWNER) or data.routing_attempt != row.attempt
             or (data.assignee_id is not None and data.assignee_id != row.assignee))
    if stale:
        metrics.SKIPPED.labels("stale_breach").inc()
        log.info("breach is not about the current assignment; ignored",
                 extra={"lead_id": data.lead_id, "event_id": event.id})
        return
    metrics.ESCALATIONS.labels(data.policy).inc()
    now = ctx.now()
    await assigner.reroute(ctx.session, ctx.emit, row, now, caused_by=event,
                           why=f"escalation: SLA '{data.policy}' ({data.kind}) breached by {row.assignee}",
                           release_reason="sla breached")
    await waitlist.slot_freed(ctx.session, ctx.emit, row.assignee, now, caused_by=event)


async def on_lead_scored_batch(events: list[Envelope[LeadScored]], ctx: BatchContext[None]) -> None:
    """lead-scored in batches, with multi-row statements (``batch_routing``)."""
    from .batch_routing import on_lead_scored_batch as route_batch  # it builds on this module

    await route_batch(events, ctx)


HANDLERS = EventHandlers(
    on(LeadScored, on_lead_scored, batch=on_lead_scored_batch),
    on(SlaBreached, on_sla_breached),
    on(FollowUpLogged, on_follow_up_logged),
    emits=(LeadRouted, RosterChanged),
)
