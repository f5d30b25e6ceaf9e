"""Stages over time: MQL once on a later activity, recycle by sales, SQL with BANT, test leads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadbridge_contracts.events import Bant, FollowUpOutcome, LeadProfile, Stage
from leadbridge_scoring.lifecycle import LeadState, after_follow_up, after_scoring, counted_activities
from leadbridge_scoring.model_file import parse_model
from leadbridge_scoring.scoring import Activity, score

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
MODEL = parse_model("""
version: lc-1
mql_threshold: 40
sql_min_bant: 3
fit: [{id: vp, field: job_title, contains: [vp], points: 20}]
engagement: [{id: paper, asset_contains: [whitepaper], points: 5, max_times: 3}]
intent: [{id: demo, form_type: [demo_request], points: 30}]
grades: {bands: [{grade: A, min: 40}, {grade: B}]}
""")
VP = LeadProfile(job_title="VP Sales")


def step(state: LeadState | None, acts: list[Activity], profile: LeadProfile = VP):
    now = max(a.occurred_at for a in acts)
    b = score(profile, counted_activities(acts, state), MODEL, now)
    return after_scoring(state, b, threshold=MODEL.mql_threshold, is_test=profile.is_test), b


def paper(i: int) -> Activity:
    return Activity(f"p{i}", T0 + timedelta(hours=i), kind="download", asset="whitepaper")


def demo(i: int) -> Activity:
    return Activity(f"d{i}", T0 + timedelta(hours=i), form_type="demo_request")


def test_nurture_then_mql_on_a_later_activity_exactly_once() -> None:
    t1, b1 = step(None, [paper(0)])
    assert (t1.state.stage, t1.previous_stage, t1.became_mql) == (Stage.NURTURE, None, False)
    assert "below the MQL threshold 40" in t1.state.reason
    t2, b2 = step(t1.state, [paper(0), demo(1)])
    assert (t2.state.stage, t2.previous_stage, t2.became_mql) == (Stage.MQL, Stage.NURTURE, True)
    assert b2.total >= 40 > b1.total and "reached the MQL threshold" in t2.state.reason
    t3, _ = step(t2.state, [paper(0), demo(1), paper(2)])
    assert (t3.state.stage, t3.became_mql) == (Stage.MQL, False)


def test_mql_stays_mql_when_the_score_drops() -> None:
    t, _ = step(LeadState(stage=Stage.MQL, mql_emitted=True), [paper(0)])
    assert t.state.stage is Stage.MQL and not t.became_mql


def test_rejection_recycles_to_nurture_and_needs_new_activity_to_mql_again() -> None:
    mql, _ = step(None, [paper(0), demo(1)])
    assert mql.became_mql
    rejected = after_follow_up(mql.state, outcome=FollowUpOutcome.REJECTED, reason="no budget this year",
                               bant=None, occurred_at=T0 + timedelta(hours=5), min_bant=3)
    assert rejected is not None
    assert (rejected.state.stage, rejected.previous_stage) == (Stage.NURTURE, Stage.MQL)
    assert rejected.state.reason == "rejected by sales: no budget this year" and not rejected.state.mql_emitted
    # old activity no longer counts: a small new activity keeps it in nurture, with sales' reason visible
    again, b = step(rejected.state, [paper(0), demo(1), paper(6)])
    assert (again.state.stage, again.became_mql, b.total) == (Stage.NURTURE, False, 25)
    assert again.state.reason == "rejected by sales: no budget this year"
    # a new demo request makes it MQL again, announced once more
    back, _ = step(again.state, [paper(0), demo(1), paper(6), demo(7)])
    assert (back.state.stage, back.became_mql) == (Stage.MQL, True)


def test_rejection_without_reason() -> None:
    t = after_follow_up(LeadState(stage=Stage.MQL, mql_emitted=True), outcome=FollowUpOutcome.REJECTED,
                        reason="  ", bant=None, occurred_at=T0, min_bant=3)
    assert t is not None and t.state.reason == "rejected by sales: no reason given"


def test_qualified_with_bant_makes_sql() -> None:
    mql = LeadState(stage=Stage.MQL, mql_emitted=True)
    t = after_follow_up(mql, outcome=FollowUpOutcome.QUALIFIED, reason=None,
                        bant=Bant(budget=True, authority=True, need=True), occurred_at=T0, min_bant=3)
    assert t is not None and (t.state.stage, t.previous_stage) == (Stage.SQL, Stage.MQL)
    assert t.state.reason == "qualified by sales (BANT: budget, authority, need)"
    # an SQL stays SQL on new activity
    later, _ = step(t.state, [demo(3)])
    assert later.state.stage is Stage.SQL and not later.became_mql


def test_qualified_without_enough_bant_or_other_outcomes_change_nothing() -> None:
    mql = LeadState(stage=Stage.MQL, mql_emitted=True)
    assert after_follow_up(mql, outcome=FollowUpOutcome.QUALIFIED, reason=None, bant=Bant(budget=True),
                           occurred_at=T0, min_bant=3) is None
    assert after_follow_up(mql, outcome=FollowUpOutcome.QUALIFIED, reason=None, bant=None,
                           occurred_at=T0, min_bant=3) is None
    for outcome in (None, FollowUpOutcome.CONNECTED, FollowUpOutcome.ACCEPTED, FollowUpOutcome.WON):
        assert after_follow_up(mql, outcome=outcome, reason=None, bant=None, occurred_at=T0, min_bant=3) is None


def test_test_lead_stays_in_nurture_with_reason() -> None:
    t, b = step(None, [demo(0), paper(1)], LeadProfile(job_title="VP", is_test=True))
    assert b.total >= 40 and t.state.stage is Stage.NURTURE and "test lead" in t.state.reason
