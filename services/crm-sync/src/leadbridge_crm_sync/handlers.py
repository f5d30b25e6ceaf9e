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
from leadbridge_events.transaction import HandlerContext
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


async def on_lead_routed(event: Envelope[LeadRouted], ctx: HandlerContext[CrmConfig]) -> None:
    d = event.data
    await queue.remember_owner(ctx.session, d.assignee_crm_owner_ids, d.assignee_id)
    team = d.team or d.pool
    targets = ctx.deps.destinations_for_team(team) if d.outcome in ASSIGNED else []
    targets += await subscribers(ctx.session, event.type, team)
    await queue.enqueue(ctx.session, event, targets)


async def on_sla_event(event: Envelope[Any], ctx: HandlerContext[CrmConfig]) -> None:
    await queue.enqueue(ctx.session, event, await subscribers(ctx.session, event.type, event.data.team))


HANDLERS = EventHandlers(
    on(LeadRouted, on_lead_routed),
    on(SlaAtRisk, on_sla_event),
    on(SlaBreached, on_sla_event),
    emits=(FollowUpLogged, CrmDeliveryRecorded),
)
