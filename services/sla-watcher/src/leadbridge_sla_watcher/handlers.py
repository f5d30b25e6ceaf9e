"""What the SLA watcher consumes and emits (``HANDLERS``, at the bottom): lead-routed starts or restarts
deadlines, follow-up-logged stops/advances them; the timer (``timer``) fires sla-at-risk and sla-breached.

Both announce what they changed on the ``sla-deadlines`` topic, through the outbox in the same transaction:
``sla-deadlines-set`` when a routing starts (or supersedes) deadlines, ``sla-deadline-met`` when a touch
meets one (see ``announcements``).

Each handler runs in the consumer's transaction and first locks the lead's row, so a lead's routing and
its touches (on two topics) are applied one at a time, and never concurrently with the timer firing one
of its deadlines (the timer skips locked rows; a handler waits for a row the timer holds). The SLA policy
configuration reaches the handlers as ``ctx.deps``; time as ``ctx.now()``.
"""

from __future__ import annotations

import logging
from typing import Any

from leadbridge_contracts.envelope import Envelope, new_event_id
from leadbridge_contracts.events import (
    FollowUpLogged,
    LeadRouted,
    SlaAtRisk,
    SlaBreached,
    SlaDeadlineMet,
    SlaDeadlinesSet,
    SlaKind,
)
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import HandlerContext

from . import metrics, store
from .announcements import deadline_met, deadlines_set, event_time, met_event_id, set_event_id
from .batch_handlers import on_follow_up_logged_batch, on_lead_routed_batch
from .deadlines import Deadline, Route, RouteResult, Status, Touch, apply_touch, on_route
from .policies import SlaConfig

log = logging.getLogger("leadbridge.sla_watcher")


SOURCE = "sla-watcher"


def _new_id() -> str:
    return new_event_id()  # a random UUID, the fast way


async def _announce_met(ctx: HandlerContext[SlaConfig], cause: Envelope[Any], before: Deadline | None, after: Deadline) -> None:
    met = deadline_met(before, after)
    if met is not None:
        await ctx.emit(Envelope.of(met, source=SOURCE, lead_id=after.lead_id, caused_by=cause,
                                   event_id=met_event_id(after.id), time=event_time(met, cause.time)))


def _observe_first_touch(before: Deadline | None, after: Deadline) -> None:
    if after.kind != SlaKind.FIRST_TOUCH or after.met_at is None or (before and before.met_at is not None):
        return
    team = metrics.team_label(after.team)
    metrics.TIME_TO_FIRST_TOUCH.labels(team).observe(max((after.met_at - after.starts_at).total_seconds(), 0))
    if after.breach_fired_at is not None:
        when = "in_time" if after.status == Status.MET else "late"
        metrics.TOUCHES_AFTER_BREACH.labels(after.policy, team, when).inc()


async def on_lead_routed(event: Envelope[LeadRouted], ctx: HandlerContext[SlaConfig]) -> None:
    r, config = event.data, ctx.deps
    lead = await store.lock_lead(ctx.session, r.lead_id, ctx.now())
    existing = await store.live_deadlines(ctx.session, r.lead_id)
    touches = await store.lead_touches(ctx.session, r.lead_id)
    policy = config.resolve(r.sla_policy, team=r.team, tier=r.profile.custom.get("tier"), grade=r.grade)
    calendar = config.calendar_for(r.team, r.assignee_timezone)
    route = Route(lead_id=r.lead_id, attempt=r.attempt, routed_at=r.routed_at, assignee_id=r.assignee_id,
                  team=r.team, outcome=r.outcome)
    result = on_route(lead.attempt, existing, route, policy, calendar, touches, _new_id)
    extra = {"lead_id": r.lead_id, "event_id": event.id, "attempt": r.attempt, "policy": policy.name}
    if not result.accepted:
        log.info("stale or repeated routing ignored", extra={**extra, "current_attempt": lead.attempt})
        return
    await store.save(ctx.session, result.changed + result.created, {r.lead_id: dict(
        attempt=r.attempt, assignee_id=r.assignee_id, team=r.team, policy=policy.name, routed_at=r.routed_at,
        updated_at=ctx.now())})
    await announce_started(ctx, event, route, policy.name, result, extra)


async def announce_started(ctx: HandlerContext[SlaConfig], event: Envelope[LeadRouted], route: Route, policy: str,
                           result: RouteResult, extra: dict[str, Any]) -> None:
    """What a routing that started deadlines announces (one event and batch paths alike): the deadlines set,
    and each deadline already met by a touch that arrived before the routing."""
    r = event.data
    announcement = deadlines_set(route, policy, result)
    if announcement is not None:
        await ctx.emit(Envelope.of(announcement, source=SOURCE, lead_id=r.lead_id, caused_by=event,
                                   event_id=set_event_id(r.lead_id, r.attempt),
                                   time=event_time(announcement, event.time)))
    for d in result.created:
        _observe_first_touch(None, d)
        await _announce_met(ctx, event, None, d)  # met by a touch that arrived before the routing
    log.info("deadlines started", extra={**extra, "deadlines_created": len(result.created),
                                         "deadlines_superseded": len(result.changed), "outcome": r.outcome})


async def on_follow_up_logged(event: Envelope[FollowUpLogged], ctx: HandlerContext[SlaConfig]) -> None:
    f = event.data
    touch = Touch(f.follow_up_id, f.occurred_at, f.touch_type, f.outcome)
    lead = await store.lock_lead(ctx.session, f.lead_id, ctx.now())
    extra = {"lead_id": f.lead_id, "event_id": event.id, "follow_up_id": f.follow_up_id}
    if not await store.add_touch(ctx.session, f.lead_id, touch, f.logged_at):
        log.info("follow-up already recorded", extra=extra)
        return
    if lead.attempt is None:
        log.info("touch kept for a lead not routed yet", extra=extra)
        return
    changed = []
    for before in await store.live_deadlines(ctx.session, f.lead_id):
        after = apply_touch(before, touch)
        if after != before:
            changed.append(after)
            _observe_first_touch(before, after)
            await _announce_met(ctx, event, before, after)
    await store.save(ctx.session, changed)
    log.info("touch applied", extra={**extra, "deadlines_changed": len(changed)})


HANDLERS = EventHandlers(
    on(LeadRouted, on_lead_routed, batch=on_lead_routed_batch),
    on(FollowUpLogged, on_follow_up_logged, batch=on_follow_up_logged_batch),
    emits=(SlaDeadlinesSet, SlaDeadlineMet, SlaAtRisk, SlaBreached),  # the last two from the timer
)
