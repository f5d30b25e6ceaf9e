"""What scoring consumes and emits (``HANDLERS``, at the bottom), and what each event does.

    lead-captured            -> store the capture, score, maybe emit lead-scored
    lead-activity-recorded   -> store the activity, re-score, maybe emit lead-scored
    follow-up-logged         -> rejected -> nurture, qualified+BANT -> SQL; maybe emit lead-scored

Every change is emitted as lead-scored through ``ctx.emit`` (the outbox, same transaction). Scoring never
routes: it only states readiness. The handlers reach the scoring model through ``ctx.deps`` (a
``Rescorer``, built by the composition root from the model file).
"""

from __future__ import annotations

from typing import Any

from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import FollowUpLogged, LeadActivityRecorded, LeadCaptured, LeadScored
from leadbridge_events.express import first_of_lead
from leadbridge_events.registry import EventHandlers, on
from leadbridge_events.transaction import BatchContext, HandlerContext

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


def scored_event(scored: LeadScored, cause: Envelope[Any]) -> Envelope[LeadScored]:
    """The lead-scored envelope; a lead's first score (no previous stage) is marked first-of-lead, with the time
    of the capture that caused it (express lane)."""
    event = Envelope.of(scored, source=SOURCE, lead_id=scored.lead_id, caused_by=cause)
    return first_of_lead(event, since=cause.time) if scored.previous_stage is None else event


async def _emit_scored(ctx: HandlerContext[Rescorer], scored: LeadScored | None, cause: Envelope[Any]) -> None:
    if scored is not None:
        await ctx.emit(scored_event(scored, cause))


async def on_lead_captured(event: Envelope[LeadCaptured], ctx: HandlerContext[Rescorer]) -> None:
    data = event.data
    await _emit_scored(ctx, await ctx.deps.on_activity(ctx.session, data.lead_id, capture_activity(data),
                                                       data.profile, captured=True), event)


async def on_lead_activity(event: Envelope[LeadActivityRecorded], ctx: HandlerContext[Rescorer]) -> None:
    data = event.data
    await _emit_scored(ctx, await ctx.deps.on_activity(ctx.session, data.lead_id, recorded_activity(data),
                                                       data.profile, captured=False), event)


async def on_follow_up(event: Envelope[FollowUpLogged], ctx: HandlerContext[Rescorer]) -> None:
    await _emit_scored(ctx, await ctx.deps.on_follow_up(ctx.session, event.data), event)


async def on_lead_events(events: list[Envelope[Any]], ctx: BatchContext[Rescorer]) -> None:
    """lead-captured's events in batches: the captures of new leads are scored and stored together (two
    statements); anything else, and a second event of a lead within the batch, goes through its one-event
    handler, in order, after the captures before it: per-lead order is kept."""
    waiting: dict[str, tuple[Envelope[Any], LeadCaptured]] = {}  # lead id -> its capture, in batch order

    async def one(event: Envelope[Any]) -> None:
        await HANDLERS[event.type].handler(event, ctx.for_event(event))

    async def flush() -> None:
        if not waiting:
            return
        scored = await ctx.deps.first_sight_many(
            ctx.session, [(d.lead_id, capture_activity(d), d.profile) for _, d in waiting.values()])
        for event, data in waiting.values():
            if data.lead_id not in scored:  # scoring knew it already (a replayed capture): the usual path
                await one(event)
            elif (result := scored[data.lead_id]) is not None:
                await ctx.emit(scored_event(result, event))
        waiting.clear()

    for event in events:
        if isinstance(event.data, LeadCaptured) and event.data.lead_id not in waiting:
            waiting[event.data.lead_id] = (event, event.data)
            continue
        if event.lead_id in waiting or event.data.lead_id in waiting:
            await flush()  # this lead's capture first
        await one(event)
    await flush()


HANDLERS = EventHandlers(
    on(LeadCaptured, on_lead_captured, batch=on_lead_events),
    on(LeadActivityRecorded, on_lead_activity, batch=on_lead_events),
    on(FollowUpLogged, on_follow_up),
    emits=(LeadScored,),
)
