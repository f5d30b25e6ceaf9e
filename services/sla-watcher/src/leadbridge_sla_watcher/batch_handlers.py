"""lead-routed and follow-up-logged in batches: the same effects as ``handlers``, with multi-row statements.

A batch (one partition of one topic, one transaction) reads and locks what all its events need at once --
the lead rows (created if missing, locked in lead id order), their live deadlines (locked), their touches
-- then applies each event in order with the same pure functions as the one-event handlers
(``deadlines.on_route``, ``deadlines.apply_touch``) to that state held in memory, so a lead's later event
in the batch sees its earlier ones; then writes every changed deadline (upserted) and the leads' routing in
one statement. Events are emitted in order (the runner's one outbox insert). Every statement is constant SQL
on the driver (``batch_store``, ``store.save``): five round trips per batch, whatever its size.

Locks: lead rows first (the existing ones in lead id order, then the new ones), then their deadlines, as the one-event handlers do; the timer never waits
for a lock (SKIP LOCKED), so nothing here can deadlock with it or with a replica's batch.
"""

from __future__ import annotations

import logging
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, LeadRouted
from leadbridge_events.transaction import BatchContext

from . import batch_store, store
from .deadlines import LIVE, Deadline, Route, Touch, apply_touch, on_route
from .policies import SlaConfig

log = logging.getLogger("leadbridge.sla_watcher")


async def _save(session: Any, saved: dict[str, Deadline], routing: dict[str, dict[str, Any]]) -> None:
    """The batch's writes, one statement: each changed deadline's last version, the leads' routing."""
    await store.save(session, saved.values(), routing)


async def on_lead_routed_batch(events: list[Envelope[LeadRouted]], ctx: BatchContext[SlaConfig]) -> None:
    from .handlers import _new_id, announce_started  # its table names this module

    routed, config, now = events, ctx.deps, ctx.now()
    ids = [e.data.lead_id for e in routed]
    attempts = await batch_store.lock_leads(ctx.session, ids, now)
    live = await batch_store.live_deadlines(ctx.session, ids)
    known = await batch_store.lead_touches(ctx.session, ids)
    saved: dict[str, Deadline] = {}  # by id: the last version of each deadline the batch changed
    routing: dict[str, dict[str, Any]] = {}
    for event in routed:
        r: LeadRouted = event.data
        policy = config.resolve(r.sla_policy, team=r.team, tier=r.profile.custom.get("tier"), grade=r.grade)
        calendar = config.calendar_for(r.team, r.assignee_timezone)
        route = Route(lead_id=r.lead_id, attempt=r.attempt, routed_at=r.routed_at, assignee_id=r.assignee_id,
                      team=r.team, outcome=r.outcome)
        result = on_route(attempts[r.lead_id], live[r.lead_id], route, policy, calendar, known[r.lead_id], _new_id)
        extra = {"lead_id": r.lead_id, "event_id": event.id, "attempt": r.attempt, "policy": policy.name}
        if not result.accepted:
            log.info("stale or repeated routing ignored", extra={**extra, "current_attempt": attempts[r.lead_id]})
            continue
        for d in result.changed + result.created:
            saved[d.id] = d
        live[r.lead_id] = [d for d in result.created if d.status in LIVE]
        attempts[r.lead_id] = r.attempt
        routing[r.lead_id] = dict(attempt=r.attempt, assignee_id=r.assignee_id, team=r.team, policy=policy.name,
                                  routed_at=r.routed_at, updated_at=now)
        await announce_started(ctx, event, route, policy.name, result, extra)
    await _save(ctx.session, saved, routing)


async def _add_touches(session: Any, events: list[Envelope[Any]]) -> set[int]:
    """Keep the batch's touches (one multi-row insert); the positions of the events whose touch is new (a
    follow-up seen before, or earlier in the batch, is not)."""
    first: dict[tuple[str, str], int] = {}
    for i, e in enumerate(events):
        first.setdefault((e.data.lead_id, e.data.follow_up_id), i)
    new = await batch_store.add_touches(session, [
        (f.lead_id, f.follow_up_id, f.occurred_at, f.touch_type.value, f.outcome.value if f.outcome else None,
         f.logged_at) for f in (events[i].data for i in first.values())])
    return {first[key] for key in new}


async def on_follow_up_logged_batch(events: list[Envelope[FollowUpLogged]], ctx: BatchContext[SlaConfig]) -> None:
    from .handlers import _announce_met, _observe_first_touch  # its table names this module

    logged = events
    ids = [e.data.lead_id for e in logged]
    attempts = await batch_store.lock_leads(ctx.session, ids, ctx.now())
    new = await _add_touches(ctx.session, logged)
    live = await batch_store.live_deadlines(ctx.session, [lead for lead, a in attempts.items() if a is not None])
    saved: dict[str, Deadline] = {}
    for i, event in enumerate(logged):
        f: FollowUpLogged = event.data
        extra = {"lead_id": f.lead_id, "event_id": event.id, "follow_up_id": f.follow_up_id}
        if i not in new:
            log.info("follow-up already recorded", extra=extra)
            continue
        if attempts[f.lead_id] is None:
            log.info("touch kept for a lead not routed yet", extra=extra)
            continue
        touch = Touch(f.follow_up_id, f.occurred_at, f.touch_type, f.outcome)
        changed, still_live = 0, []
        for before in live[f.lead_id]:
            after = apply_touch(before, touch)
            if after != before:
                changed += 1
                saved[after.id] = after
                _observe_first_touch(before, after)
                await _announce_met(ctx, event, before, after)
            if after.status in LIVE:
                still_live.append(after)
        live[f.lead_id] = still_live
        log.info("touch applied", extra={**extra, "deadlines_changed": changed})
    await _save(ctx.session, saved, {})
