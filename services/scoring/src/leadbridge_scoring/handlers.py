"""Scoring's topic -> handler map: what it consumes, and what each event does.

    lead-captured      (lead-captured, lead-activity-recorded)  -> store activity, re-score, maybe emit
    follow-up-logged   (rejected -> nurture, qualified+BANT -> SQL)  -> maybe emit

Every change is emitted as lead-scored through ``ctx.emit`` (the outbox, same transaction). Scoring never
routes: it only states readiness.
"""

from __future__ import annotations

from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, LeadActivityRecorded, LeadCaptured
from leadbridge_contracts.topics import FOLLOW_UP_LOGGED, LEAD_CAPTURED
from leadbridge_events.batching import BatchContext, BatchHandler
from leadbridge_events.consumer import Handler, HandlerContext, PoisonEvent

from .model import ScoringModel
from .rescoring import Rescorer
from .scoring import Activity

SOURCE = "scoring"


def capture_activity(data: LeadCaptured) -> Activity:
    p = data.profile
    return Activity(activity_id=f"capture:{data.lead_id}", occurred_at=data.captured_at, kind="form_submission",
                    form_type=p.form_type, channel=p.channel, campaign=p.campaign,
                    asset=p.custom.get("asset") or p.utm.get("utm_content"))


def recorded_activity(data: LeadActivityRecorded) -> Activity:
    return Activity(activity_id=data.activity_id, occurred_at=data.occurred_at, kind=data.kind,
                    form_type=data.form_type, channel=data.channel, campaign=data.campaign, asset=data.asset)


def handlers_for(model: ScoringModel) -> dict[str, Handler]:
    rescorer = Rescorer(model)

    async def on_lead_event(event: Envelope[Any], ctx: HandlerContext) -> None:
        data = event.data
        if isinstance(data, LeadCaptured):
            scored = await rescorer.on_activity(ctx.session, data.lead_id, capture_activity(data), data.profile,
                                                captured=True)
        elif isinstance(data, LeadActivityRecorded):
            scored = await rescorer.on_activity(ctx.session, data.lead_id, recorded_activity(data), data.profile,
                                                captured=False)
        else:
            raise PoisonEvent(f"scoring does not handle {event.type} on {LEAD_CAPTURED.name}")
        if scored is not None:
            await ctx.emit(Envelope.of(scored, source=SOURCE, lead_id=scored.lead_id, caused_by=event))

    async def on_follow_up(event: Envelope[Any], ctx: HandlerContext) -> None:
        if not isinstance(event.data, FollowUpLogged):
            raise PoisonEvent(f"scoring does not handle {event.type} on {FOLLOW_UP_LOGGED.name}")
        scored = await rescorer.on_follow_up(ctx.session, event.data)
        if scored is not None:
            await ctx.emit(Envelope.of(scored, source=SOURCE, lead_id=scored.lead_id, caused_by=event))

    HANDLERS: dict[str, Handler] = {
        LEAD_CAPTURED.name: on_lead_event,
        FOLLOW_UP_LOGGED.name: on_follow_up,
    }
    return HANDLERS


def batch_handlers_for(model: ScoringModel) -> dict[str, BatchHandler]:
    """lead-captured in batches: the captures of new leads are scored and stored together (two statements);
    anything else, and a second event of a lead within the batch, goes through the one-event handler, in
    order, after the captures before it: per-lead order is kept."""
    rescorer = Rescorer(model)
    one = handlers_for(model)[LEAD_CAPTURED.name]

    async def on_lead_events(events: list[Envelope[Any]], ctx: BatchContext) -> None:
        waiting: list[tuple[Envelope[Any], LeadCaptured]] = []

        async def flush() -> None:
            if not waiting:
                return
            scored = await rescorer.first_sight_many(
                ctx.session, [(d.lead_id, capture_activity(d), d.profile) for _, d in waiting])
            for event, data in waiting:
                if data.lead_id not in scored:  # scoring knew it already (a replayed capture): the usual path
                    await one(event, ctx.for_event(event))
                elif (result := scored[data.lead_id]) is not None:
                    await ctx.emit(Envelope.of(result, source=SOURCE, lead_id=result.lead_id, caused_by=event))
            waiting.clear()

        for event in events:
            if isinstance(event.data, LeadCaptured) and all(d.lead_id != event.lead_id for _, d in waiting):
                waiting.append((event, event.data))
                continue
            if any(d.lead_id == event.lead_id for _, d in waiting):
                await flush()  # this lead's capture first
            await one(event, ctx.for_event(event))
        await flush()

    return {LEAD_CAPTURED.name: on_lead_events}
