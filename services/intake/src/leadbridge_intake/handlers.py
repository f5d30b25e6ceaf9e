"""What intake consumes and emits (``HANDLERS``, at the bottom): it follows scoring and routing to show a
lead's current status, and emits the leads, activities and follow-ups its HTTP API and webhooks accept."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, LeadActivityRecorded, LeadCaptured, LeadRouted, LeadScored
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import BatchContext, HandlerContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import leads

# a score may change a lead in these statuses; a route these and "routed" (a re-route): a late score never
# takes a routed lead back
_SCORABLE = ("captured", "nurture", "mql", "sql")
_SET_STATUS = text(
    f"UPDATE {leads.fullname} AS l SET status = x.status, status_detail = CAST(x.detail AS jsonb) "
    "FROM unnest(CAST(:id AS text[]), CAST(:status AS text[]), CAST(:detail AS text[]), CAST(:reroute AS boolean[])) "
    "AS x(id, status, detail, reroute) "
    f"WHERE l.id = x.id AND (l.status IN ({', '.join(repr(s) for s in _SCORABLE)}) "
    "OR (x.reroute AND l.status = 'routed'))")


def _status_of(event: Envelope[Any]) -> tuple[str, dict[str, Any], bool]:
    """(the status it sets, its status_detail, whether it also applies to a routed lead)."""
    d = event.data
    if isinstance(d, LeadScored):
        return d.stage.value, {"score": d.score, "grade": d.grade, "stage": d.stage.value, "reason": d.reason}, False
    status = "nurture" if d.outcome == "returned_to_nurture" else "routed"
    return status, {"assignee_id": d.assignee_id, "team": d.team, "routing_reason": d.reason,
                    "attempt": d.attempt}, True


async def set_statuses(session: AsyncSession, events: Sequence[Envelope[Any]]) -> None:
    """The statuses the events set, in their order, one statement per run of events of distinct leads: a
    lead's second event in the batch starts the next statement, so each lead's events apply in order."""
    run: dict[str, tuple[str, dict[str, Any], bool]] = {}
    for event in events:
        if event.data.lead_id in run:
            await _apply(session, run)
            run = {}
        run[event.data.lead_id] = _status_of(event)
    await _apply(session, run)


async def _apply(session: AsyncSession, run: dict[str, tuple[str, dict[str, Any], bool]]) -> None:
    if run:
        rows = list(run.values())
        await session.execute(_SET_STATUS, {"id": list(run), "status": [r[0] for r in rows],
                                            "detail": [json.dumps(r[1]) for r in rows],
                                            "reroute": [r[2] for r in rows]})


async def on_lead_scored(event: Envelope[LeadScored], ctx: HandlerContext[None]) -> None:
    await set_statuses(ctx.session, [event])


async def on_lead_routed(event: Envelope[LeadRouted], ctx: HandlerContext[None]) -> None:
    await set_statuses(ctx.session, [event])


async def on_status_events(events: list[Envelope[Any]], ctx: BatchContext[None]) -> None:
    await set_statuses(ctx.session, events)


HANDLERS = EventHandlers(
    on(LeadScored, on_lead_scored, batch=on_status_events),
    on(LeadRouted, on_lead_routed, batch=on_status_events),
    emits=(LeadCaptured, LeadActivityRecorded, FollowUpLogged),  # from the HTTP API, webhooks and the fetcher
)
