"""lead-routed and follow-up-logged in batches: the same effects as ``handlers``, with multi-row statements.

A batch (one partition of one topic, one transaction) reads and locks what all its events need at once --
the lead rows (created if missing, locked in lead id order), their live deadlines (locked), their touches
-- then applies each event in order with the same pure functions as the one-event handlers
(``deadlines.on_route``, ``deadlines.apply_touch``) to that state held in memory, so a lead's later event
in the batch sees its earlier ones; then writes every changed deadline in one multi-row upsert and the
leads' routing in one multi-row update. Events are emitted in order (the runner's one outbox insert).

Locks: lead rows first (sorted), then their deadlines, as the one-event handlers do; the timer never waits
for a lock (SKIP LOCKED), so nothing here can deadlock with it or with a replica's batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, FollowUpOutcome, LeadRouted, TouchType
from leadbridge_events.transaction import BatchContext
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from . import store
from .deadlines import LIVE, Deadline, Route, Touch, apply_touch, on_route
from .policies import SlaConfig
from .tables import deadlines, leads, touches

log = logging.getLogger("leadbridge.sla_watcher")


async def lock_leads(session: Any, lead_ids: list[str], now: datetime) -> dict[str, Any]:
    """The leads' rows, created if missing and locked in lead id order (two statements for the batch)."""
    ids = sorted(set(lead_ids))
    await session.execute(text(
        f"INSERT INTO {leads.fullname} (lead_id, updated_at) SELECT id, :now FROM unnest(CAST(:ids AS text[])) AS id "
        "ORDER BY id ON CONFLICT DO NOTHING"), {"ids": ids, "now": now})
    rows = await session.execute(select(leads).where(leads.c.lead_id.in_(ids)).order_by(leads.c.lead_id)
                                 .with_for_update())
    return {r.lead_id: dict(r._mapping) for r in rows}


async def live_deadlines(session: Any, lead_ids: list[str]) -> dict[str, list[Deadline]]:
    """Each lead's open and breached deadlines, locked (the timer skips them meanwhile), in due order."""
    out: dict[str, list[Deadline]] = defaultdict(list)
    if lead_ids:
        rows = await session.execute(
            select(deadlines).where(deadlines.c.lead_id.in_(sorted(set(lead_ids))),
                                    deadlines.c.status.in_([s.value for s in LIVE]))
            .order_by(deadlines.c.lead_id, deadlines.c.due_at).with_for_update())
        for r in rows:
            out[r.lead_id].append(store.from_row(r))
    return out


async def lead_touches(session: Any, lead_ids: list[str]) -> dict[str, list[Touch]]:
    out: dict[str, list[Touch]] = defaultdict(list)
    rows = await session.execute(select(touches).where(touches.c.lead_id.in_(sorted(set(lead_ids)))))
    for r in rows:
        out[r.lead_id].append(Touch(r.follow_up_id, r.occurred_at, TouchType(r.touch_type),
                                    FollowUpOutcome(r.outcome) if r.outcome else None))
    return out


async def _save_routing(session: Any, routing: dict[str, dict[str, Any]]) -> None:
    if routing:
        rows = list(routing.values())
        await session.execute(text(
            f"UPDATE {leads.fullname} AS l SET attempt = r.attempt, assignee_id = r.assignee_id, team = r.team, "
            "policy = r.policy, routed_at = r.routed_at, updated_at = r.updated_at "
            "FROM unnest(CAST(:ids AS text[]), CAST(:attempts AS int[]), CAST(:assignees AS text[]), "
            "CAST(:teams AS text[]), CAST(:policies AS text[]), CAST(:routed AS timestamptz[]), "
            "CAST(:updated AS timestamptz[])) AS r(lead_id, attempt, assignee_id, team, policy, routed_at, updated_at) "
            "WHERE l.lead_id = r.lead_id"),
            {"ids": list(routing), "attempts": [r["attempt"] for r in rows],
             "assignees": [r["assignee_id"] for r in rows], "teams": [r["team"] for r in rows],
             "policies": [r["policy"] for r in rows], "routed": [r["routed_at"] for r in rows],
             "updated": [r["updated_at"] for r in rows]})


async def on_lead_routed_batch(events: list[Envelope[LeadRouted]], ctx: BatchContext[SlaConfig]) -> None:
    from .handlers import _new_id, announce_started  # its table names this module

    routed, config, now = events, ctx.deps, ctx.now()
    ids = [e.data.lead_id for e in routed]
    rows = await lock_leads(ctx.session, ids, now)
    live = await live_deadlines(ctx.session, ids)
    known = await lead_touches(ctx.session, ids)
    attempts = {lead: row["attempt"] for lead, row in rows.items()}
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
    await store.save(ctx.session, saved.values())
    await _save_routing(ctx.session, routing)


async def _add_touches(session: Any, events: list[Envelope[Any]]) -> set[int]:
    """Keep the batch's touches (one multi-row insert); the positions of the events whose touch is new (a
    follow-up seen before, or earlier in the batch, is not)."""
    first: dict[tuple[str, str], int] = {}
    for i, e in enumerate(events):
        first.setdefault((e.data.lead_id, e.data.follow_up_id), i)
    stmt = insert(touches).values([
        dict(lead_id=f.lead_id, follow_up_id=f.follow_up_id, occurred_at=f.occurred_at,
             touch_type=f.touch_type.value, outcome=f.outcome.value if f.outcome else None, logged_at=f.logged_at)
        for f in (events[i].data for i in first.values())
    ]).on_conflict_do_nothing().returning(touches.c.lead_id, touches.c.follow_up_id)
    return {first[(r.lead_id, r.follow_up_id)] for r in await session.execute(stmt)}


async def on_follow_up_logged_batch(events: list[Envelope[FollowUpLogged]], ctx: BatchContext[SlaConfig]) -> None:
    from .handlers import _announce_met, _observe_first_touch  # its table names this module

    logged = events
    ids = [e.data.lead_id for e in logged]
    rows = await lock_leads(ctx.session, ids, ctx.now())
    new = await _add_touches(ctx.session, logged)
    live = await live_deadlines(ctx.session, [lead for lead, row in rows.items() if row["attempt"] is not None])
    saved: dict[str, Deadline] = {}
    for i, event in enumerate(logged):
        f: FollowUpLogged = event.data
        extra = {"lead_id": f.lead_id, "event_id": event.id, "follow_up_id": f.follow_up_id}
        if i not in new:
            log.info("follow-up already recorded", extra=extra)
            continue
        if rows[f.lead_id]["attempt"] is None:
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
    await store.save(ctx.session, saved.values())
