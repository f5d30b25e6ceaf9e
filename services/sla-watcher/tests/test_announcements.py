"""What the watcher announces: deadlines set on a routing (and superseded on a re-route), deadlines met once."""

import itertools
from datetime import UTC, datetime, timedelta

from leadbridge_contracts.events import FollowUpOutcome, SlaKind, TouchType
from leadbridge_sla_watcher.announcements import deadline_met, deadlines_set, event_time, met_event_id, set_event_id
from leadbridge_sla_watcher.business_hours import Calendar
from leadbridge_sla_watcher.deadlines import Route, Touch, apply_touch, on_route
from leadbridge_sla_watcher.policies import SlaConfig

T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # Tuesday 10:00 UTC
CAL = Calendar.of("UTC")
POLICY = SlaConfig.model_validate({"policies": {"standard": {
    "first_touch": {"minutes": 15}, "cadence": {"touches": 3, "days": 5}, "disposition": {"minutes": 480},
    "at_risk_fraction": 0.75}}}).resolve(None)


def ids():
    counter = itertools.count(1)
    return lambda: f"d{next(counter)}"


def route(attempt=1, outcome="assigned", assignee="anna"):
    return Route(lead_id="L1", attempt=attempt, routed_at=T0 + timedelta(minutes=attempt - 1), assignee_id=assignee,
                 team="smb", outcome=outcome)


def touch(minutes, outcome=None, kind=TouchType.CALL):
    return Touch(f"f{minutes}", T0 + timedelta(minutes=minutes), kind, outcome)


def test_a_routing_announces_its_deadlines_with_at_risk_times():
    r = route()
    result = on_route(None, [], r, POLICY, CAL, [], ids())
    event = deadlines_set(r, POLICY.name, result)
    assert (event.lead_id, event.routing_attempt, event.assignee_id, event.team, event.policy) == (
        "L1", 1, "anna", "smb", "standard")
    assert event.set_at == T0 and event.superseded_deadline_ids == []
    first = event.deadlines[0]  # earliest due first
    assert first.kind == SlaKind.FIRST_TOUCH
    assert (first.due_at, first.at_risk_at) == (T0 + timedelta(minutes=15), T0 + timedelta(minutes=11.25))
    assert {d.kind for d in event.deadlines} == set(SlaKind)
    assert {d.deadline_id for d in event.deadlines} == {d.id for d in result.created}


def test_a_re_route_announces_the_superseded_deadlines_and_the_new_ones():
    new_id = ids()
    first = on_route(None, [], route(), POLICY, CAL, [], new_id)
    second = on_route(1, first.created, route(attempt=2, assignee="ben"), POLICY, CAL, [], new_id)
    event = deadlines_set(route(attempt=2, assignee="ben"), POLICY.name, second)
    assert event.superseded_deadline_ids == sorted(d.id for d in first.created)
    assert event.assignee_id == "ben" and event.routing_attempt == 2 and len(event.deadlines) == 3


def test_return_to_nurture_announces_only_what_it_superseded():
    first = on_route(None, [], route(), POLICY, CAL, [], ids())
    back = on_route(1, first.created, route(attempt=2, outcome="returned_to_nurture"), POLICY, CAL, [], ids())
    event = deadlines_set(route(attempt=2, outcome="returned_to_nurture"), POLICY.name, back)
    assert event.deadlines == [] and len(event.superseded_deadline_ids) == 3
    # nothing started, nothing stopped: nothing to say
    nurture = route(outcome="returned_to_nurture")
    assert deadlines_set(nurture, POLICY.name, on_route(None, [], nurture, POLICY, CAL, [], ids())) is None


def test_a_stale_routing_announces_nothing():
    first = on_route(None, [], route(), POLICY, CAL, [], ids())
    assert deadlines_set(route(), POLICY.name, on_route(1, first.created, route(), POLICY, CAL, [], ids())) is None


def _first_touch():
    created = on_route(None, [], route(), POLICY, CAL, [], ids()).created
    return next(d for d in created if d.kind == SlaKind.FIRST_TOUCH)


def test_a_touch_in_time_announces_the_deadline_met_once():
    before = _first_touch()
    after = apply_touch(before, touch(5))
    met = deadline_met(before, after)
    assert (met.deadline_id, met.kind, met.met_at, met.late, met.due_at) == (
        before.id, SlaKind.FIRST_TOUCH, T0 + timedelta(minutes=5), False, before.due_at)
    assert deadline_met(after, apply_touch(after, touch(7))) is None  # met already
    assert event_time(met, T0) == met.met_at


def test_a_late_touch_announces_a_late_met():
    before = _first_touch()
    met = deadline_met(before, apply_touch(before, touch(20)))
    assert met.late is True and met.met_at == T0 + timedelta(minutes=20)


def test_touches_that_meet_nothing_announce_nothing():
    before = _first_touch()
    assert deadline_met(before, apply_touch(before, touch(3, kind=TouchType.NOTE))) is None
    cadence = next(d for d in on_route(None, [], route(), POLICY, CAL, [], ids()).created
                   if d.kind == SlaKind.CADENCE)
    assert deadline_met(cadence, apply_touch(cadence, touch(3))) is None  # 1 of 3 touches
    closed = apply_touch(cadence, touch(4, outcome=FollowUpOutcome.LOST))
    assert deadline_met(cadence, closed) is None  # closed is not met


def test_a_touch_before_the_routing_meets_the_new_deadline():
    result = on_route(None, [], route(), POLICY, CAL, [touch(2)], ids())
    first = next(d for d in result.created if d.kind == SlaKind.FIRST_TOUCH)
    assert deadline_met(None, first).late is False


def test_event_ids_are_derived_from_what_happened():
    assert set_event_id("L1", 1) == set_event_id("L1", 1) != set_event_id("L1", 2)
    assert met_event_id("d1") == met_event_id("d1") != met_event_id("d2")


def test_event_ids_are_the_uuid5s_they_always_were():
    """The ids are computed without ``uuid.UUID``: the same text as ``uuid5`` (a replay across versions keeps them)."""
    import uuid

    from leadbridge_sla_watcher.announcements import _NS

    for lead, attempt in itertools.product(["L1", "lead-ü-2", "x" * 200], [1, 2, 17]):
        assert set_event_id(lead, attempt) == str(uuid.uuid5(_NS, f"{lead}:{attempt}:deadlines-set"))
        assert met_event_id(f"{lead}-d{attempt}") == str(uuid.uuid5(_NS, f"{lead}-d{attempt}:met"))
