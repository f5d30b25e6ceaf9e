"""What intake consumes and emits (``HANDLERS``, at the bottom): it follows scoring and routing to show a
lead's current status, and emits the leads, activities and follow-ups its HTTP API and webhooks accept."""

from __future__ import annotations

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, LeadActivityRecorded, LeadCaptured, LeadRouted, LeadScored
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import HandlerContext
from sqlalchemy import update

from .tables import leads

_OPEN = ("captured", "nurture", "mql", "sql", "routed")  # statuses a score or route may still change


async def on_lead_scored(event: Envelope[LeadScored], ctx: HandlerContext[None]) -> None:
    data = event.data
    await ctx.session.execute(update(leads).where(leads.c.id == data.lead_id, leads.c.status.in_(_OPEN[:-1]))
                              .values(status=data.stage.value,
                                      status_detail={"score": data.score, "grade": data.grade,
                                                     "stage": data.stage.value, "reason": data.reason}))


async def on_lead_routed(event: Envelope[LeadRouted], ctx: HandlerContext[None]) -> None:
    data = event.data
    status = "nurture" if data.outcome == "returned_to_nurture" else "routed"
    await ctx.session.execute(update(leads).where(leads.c.id == data.lead_id, leads.c.status.in_(_OPEN))
                              .values(status=status,
                                      status_detail={"assignee_id": data.assignee_id, "team": data.team,
                                                     "routing_reason": data.reason, "attempt": data.attempt}))


HANDLERS = EventHandlers(
    on(LeadScored, on_lead_scored),
    on(LeadRouted, on_lead_routed),
    emits=(LeadCaptured, LeadActivityRecorded, FollowUpLogged),  # from the HTTP API, webhooks and the fetcher
)
