"""Insights' topic -> handler map: it listens to every topic and emits nothing.

Each event, in the consumer's transaction: explain it (``explain``), append it to the lead's timeline,
and fold it into the lead's funnel facts (``facts.apply_event``). Redeliveries are skipped by the runner
(idempotency by event id); the timeline's unique event id is a second guard.
"""

from __future__ import annotations

from typing import Any

from leadbridge_events.batching import BatchContext, BatchHandler
from leadbridge_events.consumer import Handler, HandlerContext
from leadbridge_events.envelope import Envelope
from leadbridge_events.topics import ALL_TOPICS

from . import store
from .explain import explain
from .facts import apply_event
from .metrics import EVENTS_PROJECTED


async def project(event: Envelope[Any], ctx: HandlerContext) -> None:
    if not await store.append_to_timeline(ctx.session, event, explain(event.data)):
        return
    facts = await store.load_facts_for_update(ctx.session, event.lead_id)
    await store.save_facts(ctx.session, apply_event(facts, event.data, event.time))
    EVENTS_PROJECTED.labels(event.type).inc()


async def project_many(events: list[Envelope[Any]], ctx: BatchContext) -> None:
    """``project`` for a batch in three statements: the timeline rows, the leads' facts locked (in lead id
    order), the folded facts saved. Each lead's events are folded in the batch's order, i.e. the lead's."""
    fresh = await store.append_many_to_timeline(ctx.session, [(e, explain(e.data)) for e in events])
    todo = [e for e in events if e.id in fresh]
    if not todo:
        return
    facts = await store.load_many_facts_for_update(ctx.session, [e.lead_id for e in todo])
    for event in todo:
        facts[event.lead_id] = apply_event(facts[event.lead_id], event.data, event.time)
        EVENTS_PROJECTED.labels(event.type).inc()
    await store.save_many_facts(ctx.session, list(facts.values()))


HANDLERS: dict[str, Handler] = {topic.name: project for topic in ALL_TOPICS}
BATCH_HANDLERS: dict[str, BatchHandler] = {topic.name: project_many for topic in ALL_TOPICS}
