"""The funnel projection: facts folded from events (in any order), then counted by dimension."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.events import (
    FollowUpLogged,
    LeadCaptured,
    LeadProfile,
    LeadRouted,
    LeadScored,
    SlaAtRisk,
    SlaBreached,
    SlaDeadline,
    SlaDeadlineMet,
    SlaDeadlinesSet,
)
from leadbridge_insights.facts import LeadFacts, apply_event
from leadbridge_insights.funnel import funnel, in_limbo, touch_bucket

T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)
LIMBO = timedelta(hours=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def captured(lead, channel="paid", campaign="spring", source="google", is_test=False, minute=0):
    return LeadCaptured(lead_id=lead, captured_at=at(minute), profile=LeadProfile(
        channel=channel, campaign=campaign, source=source, is_test=is_test))


def scored(lead, stage, minute=1, **kw):
    return LeadScored(lead_id=lead, scored_at=at(minute), score=50, grade="B", stage=stage, model_version="v1",
                      became_mql=stage == "mql", **kw)


def routed(lead, rep="rep-1", team="emea", minute=2, outcome="assigned"):
    return LeadRouted(lead_id=lead, routed_at=at(minute), outcome=outcome, assignee_id=rep, team=team,
                      rule="r", reason="because")


def touch(lead, fid, minute=5, touch_type="call", **kw):
    return FollowUpLogged(lead_id=lead, follow_up_id=fid, touch_type=touch_type, occurred_at=at(minute),
                          logged_at=at(minute), **kw)


def breach(lead, due_minute=15, kind="first_touch"):
    return SlaBreached(lead_id=lead, deadline_id="d", policy="p", kind=kind, due_at=at(due_minute),
                       fired_at=at(due_minute))


def deadlines_set(lead, due_minute=15, minute=2, attempt=1):
    return SlaDeadlinesSet(lead_id=lead, policy="p", set_at=at(minute), routing_attempt=attempt, deadlines=[
        SlaDeadline(deadline_id=f"d{attempt}", kind="first_touch", due_at=at(due_minute)),
        SlaDeadline(deadline_id=f"c{attempt}", kind="cadence", due_at=at(due_minute + 600))])


def met(lead, minute, late=False, due_minute=15, attempt=1, kind="first_touch"):
    return SlaDeadlineMet(lead_id=lead, deadline_id=f"d{attempt}", kind=kind, met_at=at(minute), late=late,
                          due_at=at(due_minute), routing_attempt=attempt)


def fold(lead, *events) -> LeadFacts:
    facts = LeadFacts(lead_id=lead)
    for data in events:
        time = next(getattr(data, a) for a in ("captured_at", "scored_at", "routed_at", "occurred_at", "fired_at",
                                               "set_at", "met_at") if hasattr(data, a))
        facts = apply_event(facts, data, time)
    return facts


def test_a_full_lead_life_is_folded_into_facts():
    f = fold("a", captured("a"), scored("a", "mql"), routed("a"), touch("a", "t1"), touch("a", "t2", minute=30),
             touch("a", "t3", touch_type="note", outcome="accepted"), touch("a", "t4", outcome="won", amount=900))
    assert f.captured and f.mql and f.routed and f.accepted and f.won and not f.nurtured
    assert (f.channel, f.team, f.rep, f.touches, f.won_amount) == ("paid", "emea", "rep-1", 3, 900)
    assert f.first_touch_within_sla and f.first_touch_at == at(5)


def test_the_fold_does_not_depend_on_the_order_events_arrive_in():
    events = [captured("a"), scored("a", "mql"), routed("a"), touch("a", "t1", minute=20), breach("a"),
              scored("a", "nurture", minute=40, reason="rejected"), touch("a", "t2", minute=39, outcome="rejected",
                                                                         reason="no budget")]
    results = {fold("a", *perm) for perm in itertools.permutations(events)}
    assert len(results) == 1  # all 5040 orders give the same facts
    (only,) = results
    assert only.stage == "nurture" and only.rejected_reason == "no budget" and not only.first_touch_within_sla


def test_replayed_follow_up_counts_once_and_json_round_trips():
    f = fold("a", captured("a"), routed("a"), touch("a", "t1"), touch("a", "t1"))
    assert f.touches == 1
    assert LeadFacts.from_json(f.to_json()) == f


def test_first_touch_after_the_deadline_is_not_within_sla():
    late = fold("a", captured("a"), routed("a"), SlaAtRisk(lead_id="a", deadline_id="d", policy="p",
                kind="first_touch", due_at=at(15), fired_at=at(12)), touch("a", "t1", minute=16))
    assert not late.first_touch_within_sla and late.sla_at_risk and not late.sla_breached
    untouched = fold("a", captured("a"), routed("a"))
    assert not untouched.first_touch_within_sla
    cadence_breach = fold("a", captured("a"), routed("a"), touch("a", "t1"), breach("a", 60, kind="cadence"))
    assert cadence_breach.first_touch_within_sla and cadence_breach.sla_breached


def test_deadlines_set_gives_the_first_touch_deadline_before_any_warning():
    late = fold("a", captured("a"), routed("a"), deadlines_set("a", due_minute=15), touch("a", "t1", minute=16))
    assert late.first_touch_due_at == at(15) and not late.first_touch_within_sla  # no at-risk, no breach needed
    in_time = fold("a", captured("a"), routed("a"), deadlines_set("a", due_minute=15), touch("a", "t1", minute=14))
    assert in_time.first_touch_within_sla
    assert LeadFacts.from_json(late.to_json()) == late


def test_the_watchers_met_verdict_wins_over_inference():
    # re-routed after rep-1 missed it; rep-2 touched within the new deadline: the watcher says met in time
    rerouted = fold("a", captured("a"), routed("a"), deadlines_set("a"), breach("a"),
                    deadlines_set("a", due_minute=45, minute=20, attempt=2), touch("a", "t1", minute=30),
                    met("a", 30, due_minute=45, attempt=2))
    assert rerouted.first_touch_due_at == at(15) and rerouted.first_touch_within_sla and rerouted.sla_breached
    late = fold("a", captured("a"), routed("a"), met("a", 20, late=True))
    assert not late.first_touch_within_sla and late.first_touch_met_late
    assert fold("a", met("a", 5, kind="disposition")).first_touch_met_at is None  # only first touch counts
    assert LeadFacts.from_json(late.to_json()) == late


def test_the_earliest_met_first_touch_decides_in_any_order():
    events = [captured("a"), routed("a"), deadlines_set("a"), met("a", 20, late=True),
              deadlines_set("a", due_minute=90, minute=60, attempt=2), met("a", 70, due_minute=90, attempt=2)]
    results = {fold("a", *perm) for perm in itertools.permutations(events)}
    (only,) = results
    assert only.first_touch_met_at == at(20) and not only.first_touch_within_sla


def test_capture_attribution_wins_over_later_snapshots():
    later = LeadScored(lead_id="a", scored_at=at(1), score=1, grade="D", stage="nurture", model_version="v1",
                       profile=LeadProfile(channel="organic", campaign="other"))
    assert fold("a", later, captured("a")).channel == "paid"
    assert fold("a", captured("a"), later).channel == "paid"
    assert fold("a", later).channel == "organic"  # capture not seen (yet): the snapshot fills in


def test_re_routing_keeps_the_latest_team_and_rep():
    f = fold("a", captured("a"), routed("a", "rep-2", "us", minute=30), routed("a", "rep-1", "emea", minute=2))
    assert (f.team, f.rep, f.routed_at) == ("us", "rep-2", at(2))


@pytest.mark.parametrize(("n", "bucket"), [(0, "0"), (1, "1-3"), (3, "1-3"), (4, "4+"), (9, "4+")])
def test_touch_buckets(n, bucket):
    assert touch_bucket(n) == bucket


def test_limbo_is_captured_long_enough_ago_and_neither_routed_nor_nurtured():
    mql_only = fold("a", captured("a"), scored("a", "mql"))
    assert in_limbo(mql_only, NOW, LIMBO)
    assert not in_limbo(mql_only, at(59), LIMBO)  # not yet: the clock decides
    assert in_limbo(mql_only, at(60), LIMBO)
    assert not in_limbo(fold("a", captured("a"), scored("a", "nurture")), NOW, LIMBO)
    assert not in_limbo(fold("a", captured("a"), routed("a")), NOW, LIMBO)
    back = fold("a", captured("a"), scored("a", "mql"), routed("a", outcome="returned_to_nurture"))
    assert not in_limbo(back, NOW, LIMBO)


def sample_leads() -> list[LeadFacts]:
    return [
        fold("won", captured("won"), scored("won", "mql"), routed("won"), *[touch("won", f"t{i}", minute=5 + i)
             for i in range(4)], touch("won", "acc", touch_type="note", outcome="accepted"),
             touch("won", "q", touch_type="meeting", outcome="qualified"),
             touch("won", "w", touch_type="note", outcome="won", amount=1000)),
        fold("rej", captured("rej"), scored("rej", "mql"), routed("rej", "rep-2"), breach("rej"),
             touch("rej", "t1", minute=20, outcome="rejected", reason="no budget"),
             scored("rej", "nurture", minute=21, reason="sales rejected: no budget")),
        fold("lost", captured("lost", channel="social", campaign=None, source="meta"), scored("lost", "mql"),
             routed("lost", "rep-3", "us"), touch("lost", "t1"), touch("lost", "l", outcome="lost", reason="price")),
        fold("cold", captured("cold", channel="social", source="meta"), scored("cold", "nurture")),
        fold("limbo", captured("limbo", channel="social", source="meta"), scored("limbo", "mql")),
        fold("untouched", captured("untouched"), scored("untouched", "mql"), routed("untouched", "rep-1")),
        fold("test", captured("test", is_test=True), scored("test", "mql"), routed("test")),
    ]


def test_funnel_by_channel():
    report = funnel(sample_leads(), by="channel", now=NOW, limbo_after=LIMBO)
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == ["paid", "social"]  # the test lead is not counted anywhere
    paid = rows["paid"]
    assert {k: paid[k] for k in ("captured", "mql", "nurtured", "routed", "first_touch_within_sla", "accepted",
                                 "rejected", "qualified", "won", "lost", "limbo", "sla_breached")} == {
        "captured": 3, "mql": 3, "nurtured": 1, "routed": 3, "first_touch_within_sla": 1, "accepted": 1,
        "rejected": 1, "qualified": 1, "won": 1, "lost": 0, "limbo": 0, "sla_breached": 1}
    assert paid["touches"] == {"0": 1, "1-3": 1, "4+": 1}
    assert paid["rejected_reasons"] == {"no budget": 1} and paid["won_amount"] == 1000
    assert paid["sla_compliance"] == pytest.approx(1 / 3, abs=1e-4)
    social = rows["social"]
    assert (social["captured"], social["routed"], social["limbo"], social["nurtured"]) == (3, 1, 1, 1)
    assert social["lost_reasons"] == {"price": 1}
    assert report["total"]["captured"] == 6 and report["total"]["limbo"] == 1


def test_funnel_by_team_rep_campaign_and_source():
    leads = sample_leads()
    teams = {r["key"]: r for r in funnel(leads, by="team", now=NOW, limbo_after=LIMBO)["rows"]}
    assert (teams["emea"]["routed"], teams["us"]["routed"], teams["(none)"]["routed"]) == (3, 1, 0)
    reps = {r["key"]: r["captured"] for r in funnel(leads, by="rep", now=NOW, limbo_after=LIMBO)["rows"]}
    assert reps == {"rep-1": 2, "(none)": 2, "rep-2": 1, "rep-3": 1}
    campaigns = {r["key"]: r["captured"] for r in funnel(leads, by="campaign", now=NOW, limbo_after=LIMBO)["rows"]}
    assert campaigns == {"spring": 5, "(none)": 1}
    sources = {r["key"]: r["captured"] for r in funnel(leads, by="source", now=NOW, limbo_after=LIMBO)["rows"]}
    assert sources == {"google": 3, "meta": 3}


def test_funnel_window_is_by_capture_time_and_limbo_follows_the_clock():
    leads = [fold("early", captured("early", minute=0), scored("early", "mql")),
             fold("late", captured("late", minute=90), scored("late", "mql"))]
    report = funnel(leads, by="channel", now=at(120), limbo_after=LIMBO, since=at(30))
    assert report["total"]["captured"] == 1 and report["total"]["limbo"] == 0  # late: only 30 minutes old
    assert funnel(leads, by="channel", now=at(120), limbo_after=LIMBO, until=at(30))["total"]["limbo"] == 1
    assert funnel(leads, by="channel", now=at(200), limbo_after=LIMBO)["total"]["limbo"] == 2


def test_unknown_dimension_is_refused():
    with pytest.raises(ValueError):
        funnel([], by="color", now=NOW, limbo_after=LIMBO)


def test_the_folds_copies_are_dataclass_copies():
    """``facts._replace`` (the fold's copy, faster than ``dataclasses.replace``) gives the same facts and refuses
    what is not a field."""
    import dataclasses

    from leadbridge_insights.facts import LeadFacts, _replace

    base = LeadFacts(lead_id="l", channel="web", touch_ids=("a",))
    changed = _replace(base, channel="ads", mql=True)
    assert changed == dataclasses.replace(base, channel="ads", mql=True) and base.channel == "web"
    assert hash(changed) == hash(dataclasses.replace(base, channel="ads", mql=True))
    with pytest.raises(TypeError):
        _replace(base, not_a_field=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.channel = "x"  # type: ignore[misc]


def test_stored_facts_load_as_the_dataclass_would_build_them():
    from leadbridge_insights.facts import LeadFacts

    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    facts = LeadFacts(lead_id="l", captured=True, captured_at=at, touch_ids=("a", "b"), sla_alerts=(("d", "k"),))
    raw = facts.to_json()
    assert list(raw) == [f for f in LeadFacts.__dataclass_fields__]  # every field, in order
    loaded = LeadFacts.from_json({**raw, "a_field_of_a_later_version": 1})
    assert loaded == facts and list(loaded.__dict__) == list(facts.__dict__)
    old_row = {k: v for k, v in raw.items() if k not in ("route_pool", "resolved_deadlines")}  # an older version
    assert LeadFacts.from_json(old_row) == facts  # missing fields take their defaults
    with pytest.raises(TypeError):
        LeadFacts.from_json({"captured": True})
