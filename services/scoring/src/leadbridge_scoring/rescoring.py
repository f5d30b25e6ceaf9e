"""Applying one incoming fact to one lead: store it, re-score, decide the stage, say what to emit.

The glue between the pure domain (``scoring``, ``lifecycle``) and the store; the Kafka side (``handlers``)
only decodes events and emits what this returns. Runs inside the consumer's transaction, with the lead's
row locked, so handling is ordered and idempotent per lead.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import replace
from datetime import datetime
from functools import lru_cache

from leadbridge_contracts.events import FollowUpLogged, LeadProfile, LeadScored, MatchedRule, Stage
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics, store
from .lifecycle import LeadState, Transition, after_follow_up, after_scoring, counted_activities
from .model import ScoringModel
from .scoring import Activity, Breakdown, score

log = logging.getLogger("leadbridge.scoring")
YIELD_EVERY = 50  # leads: scoring a batch of 500 is tens of ms of CPU on the one event loop


def merge_profile(old: LeadProfile, new: LeadProfile | None) -> LeadProfile:
    """Newer non-empty fields win; contact, utm and custom are merged key by key."""
    if new is None:
        return old
    base = old.model_dump()
    for key, value in new.model_dump(exclude_defaults=True).items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **{k: v for k, v in value.items() if v is not None}}
        elif value is not None:
            base[key] = value
    return LeadProfile.model_validate(base)


@lru_cache(maxsize=4096)
def _matched(rule: str, category: str, points: float, explanation: str) -> MatchedRule:
    """A rule hit as the event states it. Frozen, so one instance serves every lead with the same hit (most
    leads share most hits): validated once, not once per lead."""
    return MatchedRule(rule=rule, category=category, points=points, explanation=explanation)


def build_event(lead_id: str, profile: LeadProfile, breakdown: Breakdown, transition: Transition,
                now: datetime) -> LeadScored:
    return LeadScored(
        lead_id=lead_id, scored_at=now, score=breakdown.total, fit=breakdown.fit,
        engagement=breakdown.engagement, intent=breakdown.intent, negative=breakdown.negative,
        grade=breakdown.grade, stage=transition.state.stage, previous_stage=transition.previous_stage,
        became_mql=transition.became_mql, reason=transition.state.reason,
        matched_rules=[_matched(h.rule, h.category, h.points, h.explanation) for h in breakdown.matched],
        model_version=breakdown.model_version, profile=profile,
    )


class Rescorer:
    def __init__(self, model: ScoringModel) -> None:
        self.model = model

    async def on_activity(self, session: AsyncSession, lead_id: str, activity: Activity,
                          profile: LeadProfile | None, *, captured: bool) -> LeadScored | None:
        # A capture is nearly always of a new lead: score it and store it with one INSERT; an existing lead
        # (a replayed capture, or activity) takes the locking path below.
        lead = None if captured else await store.load_lead(session, lead_id)
        if lead is None:
            scored = await self._first_sight(session, lead_id, activity, profile or LeadProfile())
            if scored is not None:
                if not captured:
                    log.info("activity for a lead scoring has not seen captured", extra={"lead_id": lead_id})
                return scored
            lead = await store.load_lead(session, lead_id)
            assert lead is not None
        changed_profile = None
        if profile is not None:
            merged = merge_profile(lead.profile, profile)
            if merged != lead.profile:
                changed_profile = merged
                lead = replace(lead, profile=merged)
        writes = [store.activity_insert(lead_id, activity)]  # written with the new state: one round trip
        activities = [*lead.activities, activity] if all(
            a.activity_id != activity.activity_id for a in lead.activities) else lead.activities
        now = max([activity.occurred_at, *(a.occurred_at for a in activities)])
        state = lead.state if lead.last_signature is not None else None
        breakdown = score(lead.profile, counted_activities(activities, state), self.model, now)
        transition = after_scoring(state, breakdown, threshold=self.model.mql_threshold,
                                   is_test=lead.profile.is_test)
        return await self._save(session, lead, breakdown, transition, now, writes=writes, profile=changed_profile)

    async def _first_sight(self, session: AsyncSession, lead_id: str, activity: Activity,
                           profile: LeadProfile) -> LeadScored | None:
        """Score a lead scoring has never seen and store it in one statement; None if it exists already."""
        now = activity.occurred_at
        breakdown = score(profile, [activity], self.model, now)
        transition = after_scoring(None, breakdown, threshold=self.model.mql_threshold, is_test=profile.is_test)
        state = transition.state
        signature = [*breakdown.signature(), state.stage.value, state.reason]
        if not await store.insert_scored_lead(session, lead_id, profile, activity.occurred_at, activity, state,
                                              score=breakdown.total, grade=breakdown.grade,
                                              model_version=breakdown.model_version, signature=signature):
            return None
        return self._scored(lead_id, profile, breakdown, transition, now)

    async def first_sight_many(self, session: AsyncSession,
                               captures: list[tuple[str, Activity, LeadProfile]]) -> dict[str, LeadScored | None]:
        """``_first_sight`` for many new leads (distinct ids) in one statement. The result holds the leads
        stored (with their event, or None when there is nothing to say); a lead missing from it existed
        already: the caller handles it one by one (``on_activity``). Metrics and the INFO log line are per
        batch here (each lead at DEBUG)."""
        new: list[store.NewLead] = []
        decided: dict[str, tuple[LeadProfile, Breakdown, Transition, datetime]] = {}
        for i, (lead_id, activity, profile) in enumerate(captures):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the express lane and the fetchers run between chunks of a long batch
            breakdown = score(profile, [activity], self.model, activity.occurred_at)
            transition = after_scoring(None, breakdown, threshold=self.model.mql_threshold, is_test=profile.is_test)
            state = transition.state
            new.append(store.NewLead(
                lead_id, profile.model_dump_json(), profile.channel, profile.campaign, activity.occurred_at, state,
                breakdown.total, breakdown.grade, breakdown.model_version,
                json.dumps([*breakdown.signature(), state.stage.value, state.reason]), activity))
            decided[lead_id] = (profile, breakdown, transition, activity.occurred_at)
        stored = await store.insert_scored_leads(session, new)
        results = {lead_id: self._scored(lead_id, *decided[lead_id], count=False)
                   for lead_id in decided if lead_id in stored}
        _count([decided[lead_id][1:3] for lead_id in results])
        if results:
            log.info("leads scored", extra={"leads": len(results),
                                            "became_mql": sum(decided[i][2].became_mql for i in results)})
        return results

    async def on_follow_up(self, session: AsyncSession, follow_up: FollowUpLogged) -> LeadScored | None:
        lead = await store.load_lead(session, follow_up.lead_id)
        if lead is None:
            log.info("follow-up for a lead scoring does not know; ignored", extra={"lead_id": follow_up.lead_id})
            return None
        transition = after_follow_up(lead.state, outcome=follow_up.outcome, reason=follow_up.reason,
                                     bant=follow_up.bant, occurred_at=follow_up.occurred_at,
                                     min_bant=self.model.sql_min_bant)
        if transition is None:
            return None
        now = max([follow_up.occurred_at, *(a.occurred_at for a in lead.activities)])
        breakdown = score(lead.profile, counted_activities(lead.activities, transition.state), self.model, now)
        if transition.state.stage is Stage.NURTURE:
            metrics.RECYCLED.inc()
        elif transition.state.stage is Stage.SQL:
            metrics.BECAME_SQL.inc()
        return await self._save(session, lead, breakdown, transition, now)

    async def _save(self, session: AsyncSession, lead: store.StoredLead, breakdown: Breakdown,
                    transition: Transition, now: datetime, *, writes: list | None = None,
                    profile: LeadProfile | None = None) -> LeadScored | None:
        """Store the new state with ``writes`` (other rows' changes) and a changed ``profile``, in one go."""
        state: LeadState = transition.state
        writes = list(writes or ())
        signature = [*breakdown.signature(), state.stage.value, state.reason]
        if signature == lead.last_signature and not transition.became_mql:
            if profile is not None:
                writes.append(store.profile_update(lead.lead_id, profile))
            await store.execute_together(session, writes)
            return None  # nothing changed: nothing to say
        writes.append(store.state_update(lead.lead_id, state, score=breakdown.total, grade=breakdown.grade,
                                         model_version=breakdown.model_version, signature=signature,
                                         profile=profile))
        await store.execute_together(session, writes)
        return self._scored(lead.lead_id, lead.profile, breakdown, transition, now)

    def _scored(self, lead_id: str, profile: LeadProfile, breakdown: Breakdown, transition: Transition,
                now: datetime, *, count: bool = True) -> LeadScored:
        """The lead-scored event; with ``count`` its metrics and INFO log line too (else the caller's, per batch)."""
        state = transition.state
        if count:
            _count([(breakdown, transition)])
            log.info("lead scored", extra={"lead_id": lead_id, "score": breakdown.total, "stage": state.stage.value,
                                           "became_mql": transition.became_mql})
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("lead scored", extra={"lead_id": lead_id, "score": breakdown.total, "stage": state.stage.value,
                                            "became_mql": transition.became_mql})
        return build_event(lead_id, profile, breakdown, transition, now)


def _count(scored: list[tuple[Breakdown, Transition]]) -> None:
    """The metrics of scored leads (per stage, not per lead)."""
    stages = Counter(t.state.stage.value for _, t in scored)
    for stage, n in stages.items():
        metrics.LEADS_SCORED.labels(stage).inc(n)
    for breakdown, _ in scored:
        metrics.SCORES.observe(breakdown.total)
    mqls = sum(t.became_mql for _, t in scored)
    if mqls:
        metrics.BECAME_MQL.inc(mqls)
