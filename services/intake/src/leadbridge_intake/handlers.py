"""Intake's topic -> handler map: it follows scoring and routing to show a lead's current status."""

from __future__ import annotations

from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadRouted, LeadScored
from leadbridge_contracts.topics import LEAD_ROUTED, LEAD_SCORED
from leadbridge_events.consumer import HandlerContext
from sqlalchemy import update

from .tables import leads

_OPEN = ("captured", "nurture", "mql", "sql", "routed")  # statuses a score or route may still change


async def on_lead_scored(event: Envelope[Any], ctx: HandlerContext) -> None:
    data: LeadScored = event.data
    await ctx.session.execute(update(leads).where(leads.c.id == data.lead_id, leads.c.status.in_(_OPEN[:-1]))
                              .values(status=data.stage.value,
                                      status_detail={"score": data.score, "grade": data.grade,
                                                     "stage": data.stage.value, "reason": data.reason}))


async def on_lead_routed(event: Envelope[Any], ctx: HandlerContext) -> None:
    data: LeadRouted = event.data
    status = "nurture" if data.outcome == "returned_to_nurture" else "routed"
    await ctx.session.execute(update(leads).where(leads.c.id == data.lead_id, leads.c.status.in_(_OPEN))
                              .values(status=status,
                                      status_detail={"assignee_id": data.assignee_id, "team": data.team,
                                                     "routing_reason": data.reason, "attempt": data.attempt}))


HANDLERS = {LEAD_SCORED.name: on_lead_scored, LEAD_ROUTED.name: on_lead_routed}
