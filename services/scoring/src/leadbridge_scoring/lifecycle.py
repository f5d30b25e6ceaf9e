"""A lead's stage over time: nurture -> MQL (once, by score) -> SQL (by sales), and back to nurture on a recycle.

Pure: plain data in, plain data out.

- A lead in nurture becomes MQL when its score reaches the threshold; ``became_mql`` is true on that one
  event only. An MQL stays MQL while its score moves (sales owns it now).
- Sales rejecting the lead (a follow-up with outcome ``rejected``) recycles it: back to nurture with the
  reason recorded, and engagement and intent earned before the recycle stop counting, so it becomes MQL
  again only on new activity.
- Sales qualifying it with enough BANT criteria (``sql_min_bant`` in the model) makes it SQL.
- A platform test lead never becomes MQL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from leadbridge_contracts.events import Bant, FollowUpOutcome, Stage

from .scoring import Activity, Breakdown

BANT_NAMES = ("budget", "authority", "need", "timing")


@dataclass(frozen=True)
class LeadState:
    stage: Stage = Stage.NURTURE
    mql_emitted: bool = False
    reason: str | None = None
    recycled_at: datetime | None = None


@dataclass(frozen=True)
class Transition:
    state: LeadState
    previous_stage: Stage | None
    became_mql: bool = False


def counted_activities(activities: list[Activity], state: LeadState | None) -> list[Activity]:
    """The activities that earn points: after a recycle, only those after it."""
    if state is None or state.recycled_at is None:
        return list(activities)
    return [a for a in activities if a.occurred_at > state.recycled_at]


def after_scoring(state: LeadState | None, breakdown: Breakdown, *, threshold: float,
                  is_test: bool = False) -> Transition:
    """The stage after a (re)score on new data."""
    previous = state.stage if state else None
    state = state or LeadState()
    if state.stage is Stage.NURTURE:
        if breakdown.stage is Stage.MQL and not state.mql_emitted:
            reason = f"score {breakdown.total:g} reached the MQL threshold {threshold:g}"
            return Transition(replace(state, stage=Stage.MQL, mql_emitted=True, reason=reason), previous, True)
        if is_test:
            reason = "platform test lead: kept out of the funnel"
        elif state.recycled_at is not None and state.reason:
            reason = state.reason  # keep sales' reason visible until the lead qualifies again
        else:
            reason = f"score {breakdown.total:g} is below the MQL threshold {threshold:g}"
        return Transition(replace(state, reason=reason), previous)
    return Transition(state, previous)


def after_follow_up(state: LeadState, *, outcome: FollowUpOutcome | None, reason: str | None,
                    bant: Bant | None, occurred_at: datetime, min_bant: int) -> Transition | None:
    """The stage after sales reported an outcome; None when the outcome does not change readiness."""
    if outcome is FollowUpOutcome.REJECTED:
        why = f"rejected by sales: {reason.strip() if reason and reason.strip() else 'no reason given'}"
        new = LeadState(stage=Stage.NURTURE, mql_emitted=False, reason=why, recycled_at=occurred_at)
        return Transition(new, state.stage)
    if outcome is FollowUpOutcome.QUALIFIED and state.stage is not Stage.SQL:
        met = [n for n in BANT_NAMES if bant is not None and getattr(bant, n)]
        if bant is None or len(met) < min_bant:
            return None
        why = "qualified by sales" + (f" (BANT: {', '.join(met)})" if met else "")
        return Transition(replace(state, stage=Stage.SQL, reason=why), state.stage)
    return None
