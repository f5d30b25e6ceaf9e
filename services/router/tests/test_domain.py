"""Unit tests of the pure routing domain: rules, weights, caps, availability, time zones, DST."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from leadbridge_router import fairness
from leadbridge_router.availability import cap_usage, is_on_shift, next_shift_start, unavailable_reason
from leadbridge_router.fairness import PoolState
from leadbridge_router.roster import Roster
from leadbridge_router.routing import ASSIGNED, FALLBACK_OWNER, HELD, NURTURE, decide
from leadbridge_router.rules import LeadFacts, first_match

UTC = UTC
WEEKDAY_9_17 = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
NOON_UTC = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday


def roster(**over) -> Roster:
    data = {
        "teams": [
            {"id": "de", "overflow": {"kind": "next_pool", "pool": "general"}},
            {"id": "senior", "overflow": {"kind": "next_pool", "pool": "general"}, "sla_policy": "vip"},
            {"id": "general", "overflow": {"kind": "nurture"}},
        ],
        "reps": [
            {"id": "anna", "team": "de", "languages": ["de"], "timezone": "Europe/Berlin"},
            {"id": "bert", "team": "de", "languages": ["de", "en"], "timezone": "Europe/Berlin"},
            {"id": "sam", "team": "senior", "tier": "senior"},
            {"id": "jim", "team": "senior", "tier": "junior"},
            {"id": "gil", "team": "general", "weight": 2},
            {"id": "gus", "team": "general", "weight": 1},
        ],
        "rules": [
            {"id": "german", "pool": "de", "when": {"languages": ["de"]}},
            {"id": "hot", "pool": "senior", "when": {"score_min": 80}, "require": {"min_tier": "senior"}},
            {"id": "big", "pool": "senior", "when": {"segments": ["enterprise"]}},
        ],
        "fallback_pool": "general",
    }
    data.update(over)
    return Roster.model_validate(data)


def edit(model, **changes):
    """A validated copy (model_copy(update=...) does not validate nested dicts)."""
    return type(model).model_validate({**model.model_dump(), **changes})


def route(r: Roster, lead: LeadFacts, states=None, loads=None, now=NOON_UTC, **kw):
    return decide(r, lead, states or {}, loads or {}, now, **kw)


# -- rules ------------------------------------------------------------------------------------------

def test_first_matching_rule_wins():
    r = roster()
    assert first_match(r.rules, LeadFacts("l", language="de", score=95)).id == "german"
    assert first_match(r.rules, LeadFacts("l", language="en", score=95)).id == "hot"
    assert first_match(r.rules, LeadFacts("l", company_size=5000)).id == "big"
    assert first_match(r.rules, LeadFacts("l", company_size=10)) is None


def test_no_rule_goes_to_fallback_pool_with_reason():
    d = route(roster(), LeadFacts("l", language="fr"))
    assert d.outcome == ASSIGNED and d.pool == "general" and d.rule == "fallback"
    assert "no rule matched" in d.reason


def test_rule_requirement_picks_senior_rep():
    r = roster()
    picked = {route(r, LeadFacts("l", score=90), states={}).rep_id for _ in range(3)}
    assert picked == {"sam"}


def test_no_pool_at_all_is_nurture_with_visible_reason():
    d = route(roster(rules=[], fallback_pool=None), LeadFacts("l"))
    assert d.outcome == NURTURE and d.reason_code == "no_pool" and "no pool" in d.reason


def test_unknown_references_are_rejected():
    with pytest.raises(ValueError):
        Roster.model_validate({"teams": [{"id": "a"}], "reps": [{"id": "x", "team": "b"}]})
    with pytest.raises(ValueError):
        Roster.model_validate({"teams": [{"id": "a", "overflow": {"kind": "next_pool", "pool": "zz"}}]})


# -- weighted round robin -------------------------------------------------------------------------

def run(r: Roster, pool: str, n: int, state: PoolState | None = None, reps=None):
    state = state or PoolState()
    members = reps or r.members(pool)
    got = []
    for i in range(n):
        rep = fairness.pick(state, members)
        state = fairness.record(state, rep, NOON_UTC + timedelta(seconds=i))
        got.append(rep.id)
    return got, state


def test_weighted_shares_follow_weights():
    got, _ = run(roster(), "general", 300)
    assert Counter(got) == {"gil": 200, "gus": 100}


def test_ties_go_to_least_recently_assigned_not_oldest_id():
    r = roster()
    state = PoolState(counters={
        "anna": fairness.RepCounter(pass_=1.0, assigned=1, last_assigned_at=NOON_UTC),
        "bert": fairness.RepCounter(pass_=1.0, assigned=1, last_assigned_at=NOON_UTC - timedelta(hours=1)),
    }, vtime=0.0)
    assert fairness.pick(state, r.members("de")).id == "bert"


def test_state_survives_restart_and_new_rep_joins_at_par():
    r = roster()
    got, state = run(r, "general", 30)
    # "restart": the state is plain data rebuilt from storage; add a rep: nobody is reset, no burst
    new = r.model_copy(update={"reps": r.reps + [r.rep("gus").model_copy(update={"id": "neo"})]})
    got2, _ = run(new, "general", 40, state=state)
    counts = Counter(got2)
    assert counts["neo"] == counts["gus"] == 10 and counts["gil"] == 20


def test_rep_back_from_leave_gets_no_burst():
    r = roster()
    members = r.members("general")
    _, state = run(r, "general", 30, reps=[m for m in members if m.id == "gil"])  # gus away
    got, _ = run(r, "general", 6, state=state)
    assert Counter(got) == {"gil": 4, "gus": 2}


# -- availability, caps, time zones, DST ----------------------------------------------------------

def test_skips_inactive_out_of_office_and_capped_reps():
    r = roster()
    reps = [rep.model_copy(update=u) for rep, u in zip(r.members("general"), [{"active": False}, {}], strict=False)]
    r2 = r.model_copy(update={"reps": [x for x in r.reps if x.team != "general"] + reps})
    assert route(r2, LeadFacts("l")).rep_id == "gus"
    ooo = r.model_copy(update={"reps": [edit(x, out_of_office=[
        {"start": date(2026, 3, 1), "end": date(2026, 3, 10)}]) if x.id == "gil" else x for x in r.reps]})
    d = route(ooo, LeadFacts("l"))
    assert d.rep_id == "gus" and d.skipped["gil"] == "out of office"
    capped = r.model_copy(update={"reps": [x.model_copy(update={"daily_cap": 1}) for x in r.reps]})
    d = route(capped, LeadFacts("l"), loads={"gil": [NOON_UTC - timedelta(hours=1)]})
    assert d.rep_id == "gus" and d.skipped["gil"].startswith("at daily cap")


def test_caps_count_by_the_reps_local_day_and_week():
    tokyo = roster().rep("gil").model_copy(update={"timezone": "Asia/Tokyo", "daily_cap": 1, "weekly_cap": 2})
    now = datetime(2026, 3, 4, 16, 0, tzinfo=UTC)  # Thu 01:00 in Tokyo
    # assigned Wed 23:00 Tokyo: yesterday there, same UTC day
    assert cap_usage(tokyo, [datetime(2026, 3, 4, 14, 0, tzinfo=UTC)], now) == (0, 1)
    assert unavailable_reason(tokyo, [datetime(2026, 3, 4, 14, 0, tzinfo=UTC)], now) is None
    two = [datetime(2026, 3, 2, 1, 0, tzinfo=UTC), datetime(2026, 3, 3, 1, 0, tzinfo=UTC)]
    assert unavailable_reason(tokyo, two, now).startswith("at weekly cap")
    # last week's leads do not count this week (Mon 2026-03-02 00:00 Tokyo = Sun 15:00 UTC)
    assert cap_usage(tokyo, [datetime(2026, 3, 1, 14, 59, tzinfo=UTC)], now) == (0, 0)


def test_working_hours_in_the_reps_zone():
    ny = roster().rep("gus").model_copy(update={"timezone": "America/New_York", "working_hours": WEEKDAY_9_17})
    assert not is_on_shift(ny, datetime(2026, 3, 4, 13, 30, tzinfo=UTC))  # 08:30 EST
    assert is_on_shift(ny, datetime(2026, 3, 4, 14, 0, tzinfo=UTC))  # 09:00 EST
    assert not is_on_shift(ny, datetime(2026, 3, 7, 15, 0, tzinfo=UTC))  # Saturday


def test_daylight_saving_change_moves_the_shift_in_utc():
    ny = roster().rep("gus").model_copy(update={"timezone": "America/New_York", "working_hours": WEEKDAY_9_17})
    # US clocks spring forward on Sun 2026-03-08: 09:00 local is 14:00 UTC before, 13:00 UTC after
    assert is_on_shift(ny, datetime(2026, 3, 6, 14, 0, tzinfo=UTC))
    assert not is_on_shift(ny, datetime(2026, 3, 6, 13, 30, tzinfo=UTC))
    assert is_on_shift(ny, datetime(2026, 3, 9, 13, 30, tzinfo=UTC))
    # Friday after hours -> next shift is Monday 09:00 EDT = 13:00 UTC (not 14:00)
    assert next_shift_start(ny, datetime(2026, 3, 6, 23, 0, tzinfo=UTC)) == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    # Europe changes three weeks later: a Berlin rep's 09:00 is 08:00 UTC, then 07:00 UTC
    be = ny.model_copy(update={"timezone": "Europe/Berlin"})
    assert next_shift_start(be, datetime(2026, 3, 27, 18, 0, tzinfo=UTC)) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_daily_cap_resets_at_local_midnight_across_dst():
    ny = roster().rep("gus").model_copy(update={"timezone": "America/New_York", "daily_cap": 1})
    sat_evening = datetime(2026, 3, 8, 3, 30, tzinfo=UTC)  # Sat 22:30 EST
    sun_after = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)  # Sun 00:30 EST (before the 02:00 jump)
    assert unavailable_reason(ny, [sat_evening], datetime(2026, 3, 8, 4, 30, tzinfo=UTC)) is not None
    assert unavailable_reason(ny, [sat_evening], sun_after) is None


def test_route_now_picks_the_rep_on_shift():
    r = roster()
    reps = [x.model_copy(update={"timezone": "Asia/Tokyo", "working_hours": WEEKDAY_9_17}) if x.id == "gil" else x
            for x in r.reps]
    d = route(r.model_copy(update={"reps": reps}), LeadFacts("l"))  # 21:00 in Tokyo
    assert d.rep_id == "gus" and d.skipped["gil"] == "off shift"


def test_hold_until_the_shift_starts():
    r = roster()
    teams = [t.model_copy(update={"off_hours": "hold"}) if t.id == "general" else t for t in r.teams]
    reps = [x.model_copy(update={"timezone": "America/New_York", "working_hours": WEEKDAY_9_17})
            if x.team == "general" else x for x in r.reps]
    d = route(r.model_copy(update={"teams": teams, "reps": reps}), LeadFacts("l"),
              now=datetime(2026, 3, 6, 23, 0, tzinfo=UTC))
    assert d.outcome == HELD and d.hold_until == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)


# -- overflow ---------------------------------------------------------------------------------------

def test_overflow_to_next_pool_then_nurture_with_capacity_reason():
    r = roster()
    capped = r.model_copy(update={"reps": [x.model_copy(update={"weekly_cap": 0}) if x.team == "de" else x
                                           for x in r.reps]})
    d = route(capped, LeadFacts("l", language="de"))
    assert d.outcome == ASSIGNED and d.pool == "general" and d.overflowed == ("de",)
    full = r.model_copy(update={"reps": [x.model_copy(update={"weekly_cap": 0}) for x in r.reps]})
    d = route(full, LeadFacts("l", language="de"))
    assert d.outcome == NURTURE and d.reason_code == "capacity" and d.reason.startswith("capacity")
    assert d.overflowed == ("de", "general") and d.rep_id is None


def test_overflow_to_fallback_owner():
    r = roster()
    teams = [edit(t, overflow={"kind": "fallback_owner", "owner": "sam"}) if t.id == "general"
             else t for t in r.teams]
    reps = [x.model_copy(update={"active": False}) if x.team == "general" else x for x in r.reps]
    d = route(r.model_copy(update={"teams": teams, "reps": reps}), LeadFacts("l"))
    assert d.outcome == FALLBACK_OWNER and d.rep_id == "sam"


def test_escalation_never_returns_to_previous_assignee():
    d = route(roster(), LeadFacts("l"), pool="general", rule_id="fallback", exclude=frozenset({"gil"}),
              why="escalation")
    assert d.rep_id == "gus" and d.reason.startswith("escalation")
    d = route(roster(), LeadFacts("l"), pool="general", rule_id="fallback", exclude=frozenset({"gil", "gus"}))
    assert d.outcome == NURTURE


def test_removing_a_rep_resets_nothing_for_the_others():
    r = roster()
    _, state = run(r, "general", 30)
    before = dict(state.counters)
    three = edit(r, reps=[x.model_dump() for x in r.reps] + [{"id": "neo", "team": "general"}])
    _, state = run(three, "general", 4, state=state)
    without_gus = [m for m in three.members("general") if m.id != "gus"]  # gus leaves mid-stream
    got, after = run(three, "general", 9, state=state, reps=without_gus)
    assert Counter(got) == {"gil": 6, "neo": 3}  # 2:1, as the weights say
    assert after.counters["gus"] == state.counters["gus"]  # gus's history is kept for when he returns
    assert after.counters["gil"].assigned > before["gil"].assigned


def test_roster_lookups_follow_the_roster_a_copy_with_new_lists_is_looked_up_afresh():
    r = roster()
    assert [m.id for m in r.members("de")] == ["anna", "bert"] and r.rep("gil").weight == 2 and r.team("nope") is None
    r.members("de").clear()  # callers get their own list
    assert [m.id for m in r.members("de")] == ["anna", "bert"]
    moved = r.model_copy(update={"reps": [rep.model_copy(update={"team": "general"}) if rep.id == "anna" else rep
                                          for rep in r.reps if rep.id != "gus"]})
    assert [m.id for m in moved.members("de")] == ["bert"] and moved.rep("gus") is None
    assert [m.id for m in moved.members("general")] == ["anna", "gil"]
    assert [m.id for m in r.members("general")] == ["gil", "gus"] and r.rep("gus") is not None  # the original
    dupes = Roster.model_construct(teams=r.teams, reps=[*r.reps, r.reps[0].model_copy(update={"weight": 9})])
    assert dupes.rep("anna") is r.reps[0]  # the first of duplicate ids, as a scan finds it
