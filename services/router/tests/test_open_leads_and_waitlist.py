"""Unit tests: caps vs open leads (daily/weekly = new leads in the period, max_open = open now), and the
pure parts of the capacity waiting list (which pools a freed slot can serve, what counts as routed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadbridge_router.availability import RepLoad, as_load, unavailable_reason
from leadbridge_router.roster import Rep, Roster
from leadbridge_router.routing import ASSIGNED, HELD, NURTURE, Decision, decide, is_routed, pools_feeding
from leadbridge_router.rules import LeadFacts

UTC = UTC
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # Wednesday
LEAD = LeadFacts(lead_id="l1", score=70, grade="B", stage="mql", language="en", country="US", company_size=10)


def test_max_open_counts_open_leads_whenever_assigned():
    rep = Rep(id="ann", team="t", max_open=2)
    old = NOW - timedelta(days=30)  # long before this week: still open, still counts
    assert unavailable_reason(rep, RepLoad(assigned_at=(), open_count=2), NOW) == "at max open leads (2/2)"
    assert unavailable_reason(rep, RepLoad(assigned_at=(), open_count=1), NOW) is None
    assert unavailable_reason(rep, [old, old], NOW) == "at max open leads (2/2)"  # a list = all open


def test_closed_leads_still_use_up_the_day_but_free_max_open():
    rep = Rep(id="ann", team="t", daily_cap=2, max_open=1)
    today = NOW - timedelta(hours=1)
    # two leads assigned today, both already won/lost: the daily cap is used up, max_open is not
    assert unavailable_reason(rep, RepLoad(assigned_at=(today, today), open_count=0), NOW).startswith("at daily cap")
    # one assigned today and closed: a new one may come, max_open has room
    assert unavailable_reason(rep, RepLoad(assigned_at=(today,), open_count=0), NOW) is None
    # still open: max_open is the limit
    assert unavailable_reason(rep, RepLoad(assigned_at=(today,), open_count=1), NOW).startswith("at max open")


def test_weekly_cap_is_new_leads_this_local_week():
    rep = Rep(id="ann", team="t", weekly_cap=6)
    monday = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    last_week = monday - timedelta(days=2)
    assert unavailable_reason(rep, RepLoad(assigned_at=(monday,) * 6), NOW).startswith("at weekly cap")
    assert unavailable_reason(rep, RepLoad(assigned_at=(last_week,) * 6), NOW) is None


def test_as_load_keeps_the_old_list_form():
    stamps = [NOW, NOW]
    assert as_load(stamps) == RepLoad(assigned_at=(NOW, NOW), open_count=2)
    load = RepLoad(open_count=3)
    assert as_load(load) is load


def _roster() -> Roster:
    return Roster.model_validate({
        "teams": [{"id": "a", "overflow": {"kind": "next_pool", "pool": "b"}},
                  {"id": "b", "overflow": {"kind": "next_pool", "pool": "c"}},
                  {"id": "c"}, {"id": "x"}],
        "reps": [{"id": "ann", "team": "a", "max_open": 1}, {"id": "bob", "team": "a", "max_open": 1},
                 {"id": "cyd", "team": "c", "max_open": 1}],
        "rules": [], "fallback_pool": "a",
    })


def test_decide_skips_reps_at_max_open_then_overflows():
    r = _roster()
    d = decide(r, LEAD, {}, {"ann": RepLoad(open_count=1)}, NOW)
    assert d.outcome == ASSIGNED and d.rep_id == "bob"
    full = {rep: RepLoad(open_count=1) for rep in ("ann", "bob")}
    d = decide(r, LEAD, {}, full, NOW)
    assert d.outcome == ASSIGNED and d.rep_id == "cyd" and d.overflowed == ("a", "b")
    d = decide(r, LEAD, {}, {**full, "cyd": RepLoad(open_count=1)}, NOW)
    assert d.outcome == NURTURE and d.reason_code == "capacity" and "max open" in d.reason
    assert d.skipped["ann"] == "at max open leads (1/1)"


def test_pools_feeding_follow_the_overflow_chains():
    r = _roster()
    assert pools_feeding(r, "c") == ["a", "b", "c"]  # a slot in c serves leads waiting in a, b or c
    assert pools_feeding(r, "b") == ["a", "b"]
    assert pools_feeding(r, "a") == ["a"]
    assert pools_feeding(r, "x") == ["x"]


def test_only_an_owner_takes_a_lead_off_the_waiting_list():
    assert is_routed(Decision(ASSIGNED, "r", "why", "assigned", rep_id="ann"))
    assert not is_routed(Decision(NURTURE, "r", "why", "capacity"))
    assert not is_routed(Decision(HELD, "r", "why", "held_off_hours"))
