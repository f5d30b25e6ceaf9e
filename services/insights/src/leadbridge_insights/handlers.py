"""Insights' topic -> handler map: it listens to every topic and emits nothing.

Each lead event, in the consumer's transaction: explain it (``explain``), append it to the lead's timeline,
and fold it into the lead's funnel facts (``facts.apply_event``) and their flat row; a breach and a routing
that overflowed also get a row of their own (the weekly counts per rep and pool). The ``roster`` topic is
not about a lead: its ``roster-changed`` replaces the stored roster (the rep-load view's caps and shifts).
Redeliveries are skipped by the runner (idempotency by event id); the timeline's unique event id is a
second guard.
"""

from __future__ import annotations

from typing import Any

from leadbridge_events.consumer import Handler, HandlerContext
from leadbridge_events.contracts import LeadActivityRecorded, LeadCaptured, LeadRouted, LeadScored, SlaBreached
from leadbridge_events.envelope import Envelope
from leadbridge_events.topics import ALL_TOPICS, ROSTER

from . import store
from .explain import explain
from .facts import apply_event
from .metrics import EVENTS_PROJECTED


def _contact(data: Any, known: dict[str, str | None]) -> dict[str, str | None]:
    """Name, email and company for the search: the capture's win, later snapshots only fill gaps."""
    profile = getattr(data, "profile", None)
    if profile is None or not isinstance(data, (LeadCaptured, LeadActivityRecorded, LeadScored, LeadRouted)):
        return known
    seen = {"name": profile.contact.name, "email": profile.contact.email, "company": profile.company}
    if isinstance(data, LeadCaptured):
        return {k: seen[k] or known.get(k) for k in seen}
    return {k: known.get(k) or seen[k] for k in seen}


async def project(event: Envelope[Any], ctx: HandlerContext) -> None:
    if not await store.append_to_timeline(ctx.session, event, explain(event.data)):
        return
    facts, contact = await store.load_facts_for_update(ctx.session, event.lead_id)
    await store.save_facts(ctx.session, apply_event(facts, event.data, event.time), _contact(event.data, contact))
    data = event.data
    if isinstance(data, SlaBreached):
        await store.record_breach(ctx.session, event.id, event.lead_id, data)
    elif isinstance(data, LeadRouted):
        pools = data.overflowed_from or ([data.pool] if data.reason_code == "capacity" and data.pool else [])
        await store.record_overflows(ctx.session, event.id, event.lead_id, pools, data.outcome, data.routed_at)
    EVENTS_PROJECTED.labels(event.type).inc()


async def roster_changed(event: Envelope[Any], ctx: HandlerContext) -> None:
    await store.save_roster(ctx.session, event.data.changed_at, event.data.model_dump(mode="json"))
    EVENTS_PROJECTED.labels(event.type).inc()


HANDLERS: dict[str, Handler] = {topic.name: project for topic in ALL_TOPICS} | {ROSTER.name: roster_changed}
