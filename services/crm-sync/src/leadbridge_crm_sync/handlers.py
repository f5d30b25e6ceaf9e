"""The topic -> handler map: which events go where, queued in the consumer's transaction.

- ``lead-routed``: remember the assignee's CRM user ids (to attribute CRM activity back to the rep); queue
  the event for the team's CRM destinations (assignments only, not returns to nurture) and for every
  webhook subscription to ``lead-routed`` (of that team, or of all teams);
- ``sla-at-risk`` / ``sla-breached``: queue for the webhook subscriptions to that event type.

The delivery rows are written in the same transaction as the event's processed-id claim (the runner's),
so a routed lead is queued exactly once per destination, and the offset is committed only after it is.
"""

from __future__ import annotations

from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadRouted
from leadbridge_contracts.topics import LEAD_ROUTED, SLA_AT_RISK, SLA_BREACHED
from leadbridge_events.consumer import Handler, HandlerContext
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


def bind(config: CrmConfig) -> dict[str, Handler]:
    async def on_lead_routed(event: Envelope[Any], ctx: HandlerContext) -> None:
        d: LeadRouted = event.data
        await queue.remember_owner(ctx.session, d.assignee_crm_owner_ids, d.assignee_id)
        team = d.team or d.pool
        targets = config.destinations_for_team(team) if d.outcome in ASSIGNED else []
        targets += await subscribers(ctx.session, event.type, team)
        await queue.enqueue(ctx.session, event, targets)

    async def on_sla_event(event: Envelope[Any], ctx: HandlerContext) -> None:
        await queue.enqueue(ctx.session, event, await subscribers(ctx.session, event.type, event.data.team))

    return {LEAD_ROUTED.name: on_lead_routed, SLA_AT_RISK.name: on_sla_event, SLA_BREACHED.name: on_sla_event}
