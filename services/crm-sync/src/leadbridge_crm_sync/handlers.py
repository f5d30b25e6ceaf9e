"""What crm-sync consumes and emits (``HANDLERS``, at the bottom): which events go where, queued in the
consumer's transaction. It emits follow-up-logged (inbound CRM webhooks, ``inbound_api``) and
crm-delivery-recorded (each delivery attempt, ``sender``).

- ``lead-routed``: remember the assignee's CRM user ids (to attribute CRM activity back to the rep); queue
  the event for the team's CRM destinations (assignments only, not returns to nurture) and for every
  webhook subscription to ``lead-routed`` (of that team, or of all teams);
- ``sla-at-risk`` / ``sla-breached``: queue for the webhook subscriptions to that event type.

The delivery rows are written in the same transaction as the event's processed-id claim (the runner's),
so a routed lead is queued exactly once per destination, and the offset is committed only after it is.
The destinations file (``CrmConfig``) reaches the handlers as ``ctx.deps``.
"""

from __future__ import annotations

from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import CrmDeliveryRecorded, FollowUpLogged, LeadRouted, SlaAtRisk, SlaBreached
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import BatchContext, HandlerContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import queue
from .config import CrmConfig
from .tables import subscriptions

ASSIGNED = frozenset({"assigned", "fallback_owner"})
SUBSCRIBABLE = ("lead-routed", "sla-at-risk", "sla-breached")


async def subscribers(session: AsyncSession, event_type: str, team: str | None) -> list[str]:
    rows = (await session.execute(select(subscriptions.c.id, subscriptions.c.teams)
                                  .where(subscriptions.c.event_types.contains([event_type])))).all()
    return [f"webhook:{r.id}" for r in rows if not r.teams or (team is not None and team in r.teams)]


def _team(event: Envelope[Any]) -> str | None:
    return (event.data.team or event.data.pool) if isinstance(event.data, LeadRouted) else event.data.team


def _crm_targets(event: Envelope[Any], config: CrmConfig) -> list[str]:
    """The CRM destinations of a lead-routed (assignments only); none for the other types."""
    d = event.data
    return config.destinations_for_team(_team(event)) if isinstance(d, LeadRouted) and d.outcome in ASSIGNED else []


async def on_lead_routed(event: Envelope[LeadRouted], ctx: HandlerContext[CrmConfig]) -> None:
    d = event.data
    await queue.remember_owner(ctx.session, d.assignee_crm_owner_ids, d.assignee_id)
    targets = _crm_targets(event, ctx.deps) + await subscribers(ctx.session, event.type, _team(event))
    await queue.enqueue(ctx.session, event, targets)


async def on_sla_event(event: Envelope[Any], ctx: HandlerContext[CrmConfig]) -> None:
    await queue.enqueue(ctx.session, event, await subscribers(ctx.session, event.type, event.data.team))


async def on_events(events: list[Envelope[Any]], ctx: BatchContext[CrmConfig]) -> None:
    """All three types in batches, with the same effects as their one-event handlers in order: the
    subscriptions read once, the assignees' CRM user ids in one upsert (a later event's rep wins, as one by
    one), every event's deliveries in one insert, in event order (a lead's head-of-line order is kept)."""
    rows = (await ctx.session.execute(select(subscriptions.c.id, subscriptions.c.teams, subscriptions.c.event_types)
                                      .order_by(subscriptions.c.id))).all()
    owners: dict[tuple[str, str], str] = {}
    queued: list[tuple[Envelope[Any], list[str]]] = []
    for event in events:
        d, team = event.data, _team(event)
        if isinstance(d, LeadRouted) and d.assignee_id:
            owners.update({(crm, owner): d.assignee_id for crm, owner in d.assignee_crm_owner_ids.items() if owner})
        hooks = [f"webhook:{r.id}" for r in rows
                 if event.type in r.event_types and (not r.teams or (team is not None and team in r.teams))]
        queued.append((event, _crm_targets(event, ctx.deps) + hooks))
    await queue.remember_owners(ctx.session, owners)
    await queue.enqueue_many(ctx.session, queued)


HANDLERS = EventHandlers(
    on(LeadRouted, on_lead_routed, batch=on_events),
    on(SlaAtRisk, on_sla_event, batch=on_events),
    on(SlaBreached, on_sla_event, batch=on_events),
    emits=(FollowUpLogged, CrmDeliveryRecorded),
)
