"""Deadline state transitions: routing, re-routing, touches (late, out of order, early), firing."""

import itertools
from datetime import UTC, datetime, timedelta

from leadbridge_contracts.events import FollowUpOutcome, SlaKind, TouchType
from leadbridge_sla_watcher.business_hours import Calendar
from leadbridge_sla_watcher.deadlines import (
    Firing,
    Route,
    Status,
    Touch,
    apply_touch,
    fire,
    on_route,
    plan_deadlines,
)
from leadbridge_sla_watcher.policies import SlaConfig

T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # Tuesday 10:00 UTC
CAL = Calendar.of("UTC")
CONFIG = SlaConfig.model_validate({"policies": {"standard": {
    "first_touch": {"minutes": 60}, "cadence": {"touches": 3, "days": 5}, "disposition": {"minutes": 480},
    "at_risk_fraction": 0.75}}})
POLICY = CONFIG.resolve(None)


def ids():
    counter = itertools.count(1)
    return lambda: f"d{next(counter)}"


def route(attempt=1, at=T0, outcome="assigned", assignee="rep-1"):
    return Route(lead_id="L1", attempt=attempt, routed_at=at, assignee_id=assignee, team="smb", outcome=outcome)


def touch(minutes, kind=TouchType.CALL, outcome=None, fid=None):
    return Touch(follow_up_id=fid or f"f{minutes}", occurred_at=T0 + timedelta(minutes=minutes), touch_type=kind,
                 outcome=outcome)


def by_kind(deadlines):
    return {d.kind: d for d in deadlines}


def test_route_plans_three_deadlines_with_at_risk_times():
    d = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))
    ft = d[SlaKind.FIRST_TOUCH]
    assert ft.due_at == T0 + timedelta(minutes=60) and ft.at_risk_at == T0 + timedelta(minutes=45)
    assert ft.next_fire_at == ft.at_risk_at
    assert d[SlaKind.DISPOSITION].due_at == T0 + timedelta(hours=7 + 16 + 1)  # 7h today, night, 1h tomorrow
    assert d[SlaKind.CADENCE].due_at == T0 + timedelta(days=5) and d[SlaKind.CADENCE].required == 3
    assert all(x.policy == "standard" and x.assignee_id == "rep-1" and x.attempt == 1 for x in d.values())


def test_business_hours_deadline_spans_the_night():
    late = route(at=datetime(2026, 3, 10, 16, 30, tzinfo=UTC))
    ft = by_kind(plan_deadlines(late, POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    assert ft.due_at == datetime(2026, 3, 11, 9, 30, tzinfo=UTC)
    assert ft.at_risk_at == datetime(2026, 3, 11, 9, 15, tzinfo=UTC)


def test_returned_to_nurture_starts_no_clock():
    assert plan_deadlines(route(outcome="returned_to_nurture"), POLICY, CAL, ids()) == []


def test_disabled_parts_of_policy_create_nothing():
    cfg = SlaConfig.model_validate({"policies": {"standard": {"cadence": None, "disposition": None,
                                                              "at_risk_fraction": None}}})
    (only,) = plan_deadlines(route(), cfg.resolve(None), CAL, ids())
    assert only.kind == SlaKind.FIRST_TOUCH and only.at_risk_at is None and only.next_fire_at == only.due_at


def test_touch_in_time_meets_first_touch():
    ft = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    met = apply_touch(ft, touch(20))
    assert met.status == Status.MET and met.met_at == T0 + timedelta(minutes=20) and met.next_fire_at is None


def test_note_is_not_a_touch():
    ft = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    assert apply_touch(ft, touch(20, kind=TouchType.NOTE)).status == Status.OPEN


def test_touch_before_routing_does_not_count():
    ft = by_kind(plan_deadlines(route(at=T0 + timedelta(minutes=30)), POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    assert apply_touch(ft, touch(10)).status == Status.OPEN


def test_late_touch_after_breach_is_met_late_and_breach_kept():
    ft = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    ft, fired = fire(ft, T0 + timedelta(minutes=61))
    assert fired == Firing.BREACH and ft.status == Status.BREACHED
    late = apply_touch(ft, touch(90))
    assert late.status == Status.MET_LATE and late.breach_fired_at is not None


def test_touch_that_happened_in_time_but_arrives_after_breach_is_recorded_as_in_time():
    ft = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    ft, _ = fire(ft, T0 + timedelta(minutes=61))
    rec = apply_touch(ft, touch(50))  # occurred at 50 min, logged after the breach fired
    assert rec.status == Status.MET and rec.breach_fired_at == T0 + timedelta(minutes=61)  # not retracted


def test_firing_sequence_at_risk_then_breach_once():
    ft = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    assert fire(ft, T0 + timedelta(minutes=44)) == (ft, None)
    ft, f1 = fire(ft, T0 + timedelta(minutes=45))
    assert f1 == Firing.AT_RISK and ft.next_fire_at == ft.due_at
    ft, f2 = fire(ft, T0 + timedelta(minutes=60))
    assert f2 == Firing.BREACH
    assert fire(ft, T0 + timedelta(minutes=70))[1] is None  # never twice


def test_overdue_deadline_fires_only_the_breach():
    ft = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.FIRST_TOUCH]
    ft, fired = fire(ft, T0 + timedelta(hours=3))
    assert fired == Firing.BREACH and ft.at_risk_fired_at is None


def test_cadence_counts_touches_in_any_order():
    cad = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.CADENCE]
    for m in (3000, 10, 1500):  # out of order
        cad = apply_touch(cad, touch(m))
    assert cad.status == Status.MET and cad.count == 3 and cad.met_at == T0 + timedelta(minutes=1500)


def test_cadence_touches_after_window_make_it_met_late():
    cad = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))[SlaKind.CADENCE]
    cad = apply_touch(apply_touch(cad, touch(10)), touch(20))
    cad, fired = fire(cad, T0 + timedelta(days=5))
    assert fired == Firing.BREACH
    cad = apply_touch(cad, touch(6 * 24 * 60))
    assert cad.status == Status.MET_LATE and (cad.count, cad.late_count) == (2, 1)


def test_disposition_needs_an_outcome_and_rejection_closes_cadence():
    d = by_kind(plan_deadlines(route(), POLICY, CAL, ids()))
    assert apply_touch(d[SlaKind.DISPOSITION], touch(5)).status == Status.OPEN
    rejected = touch(30, outcome=FollowUpOutcome.REJECTED)
    assert apply_touch(d[SlaKind.DISPOSITION], rejected).status == Status.MET
    assert apply_touch(d[SlaKind.CADENCE], rejected).status == Status.CLOSED


def test_reroute_supersedes_open_deadlines_and_restarts_for_new_assignee():
    first = plan_deadlines(route(), POLICY, CAL, ids())
    breached_ft, _ = fire(by_kind(first)[SlaKind.FIRST_TOUCH], T0 + timedelta(minutes=60))
    existing = [breached_ft] + [d for d in first if d.kind != SlaKind.FIRST_TOUCH]
    later = T0 + timedelta(minutes=61)
    res = on_route(1, existing, route(attempt=2, at=later, assignee="rep-2"), POLICY, CAL, [], ids())
    assert res.accepted
    assert {d.status for d in res.changed} == {Status.SUPERSEDED} and len(res.changed) == 3
    old_ft = next(d for d in res.changed if d.kind == SlaKind.FIRST_TOUCH)
    assert old_ft.breach_fired_at == T0 + timedelta(minutes=60)  # the emitted breach stays on record
    assert all(d.assignee_id == "rep-2" and d.attempt == 2 and d.starts_at == later for d in res.created)


def test_stale_or_repeated_route_is_ignored():
    res = on_route(2, [], route(attempt=2), POLICY, CAL, [], ids())
    assert not res.accepted and res.created == [] and res.changed == []
    assert not on_route(2, [], route(attempt=1), POLICY, CAL, [], ids()).accepted


def test_touches_seen_before_the_lead_are_applied_when_it_arrives():
    early = [touch(20, outcome=FollowUpOutcome.ACCEPTED), touch(-30, fid="before-route")]
    res = on_route(None, [], route(), POLICY, CAL, early, ids())
    d = by_kind(res.created)
    assert d[SlaKind.FIRST_TOUCH].status == Status.MET
    assert d[SlaKind.DISPOSITION].status == Status.MET
    assert d[SlaKind.CADENCE].count == 1  # the touch before the routing does not count
