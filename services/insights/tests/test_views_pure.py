"""Unit tests of the views' pure modules: percentiles, buckets, shares, trends, conversions, rep load,
and the lead row (status, open, waiting, live SLA warning)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.events import FollowUpLogged, LeadCaptured, LeadProfile, LeadRouted, SlaAtRisk, SlaBreached
from leadbridge_insights import load, speed, stages, trends
from leadbridge_insights.facts import LeadFacts, apply_event
from leadbridge_insights.lead_row import live_alert, row_of, status_of

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_percentile_interpolates_like_percentile_cont():
    assert speed.percentile([], 0.5) is None
    assert speed.percentile([7], 0.9) == 7
    assert speed.percentile([1, 2, 3, 4], 0.5) == 2.5
    assert speed.percentile([0, 10], 0.9) == 9
    assert speed.percentile(list(range(101)), 0.9) == 90
    with pytest.raises(ValueError):
        speed.percentile([1], 1.5)


def test_buckets_are_half_open_at_their_edges():
    assert speed.bucket_of(59.9) == 0 and speed.bucket_of(60) == 1 and speed.bucket_of(300) == 2
    assert speed.histogram([0, 299, 300, 3600, 86400, 10**7]) == [1, 1, 1, 0, 1, 0, 1, 1]


def test_shares_count_untouched_leads_as_missed_and_the_total_merges_groups():
    report = speed.speed_report([speed.Group("paid", [120, 600, 7200], 4), speed.Group("seo", [30], 1)])
    paid, seo = report["rows"]
    assert paid["key"] == "paid" and paid["population"] == 4 and paid["reached"] == 3
    assert paid["median_seconds"] == 600 and paid["within"] == {"5m": 0.25, "1h": 0.5, "24h": 0.75}
    assert seo["within"]["5m"] == 1.0
    total = report["total"]
    assert total["population"] == 5 and total["median_seconds"] == 360 and total["within"]["5m"] == 0.4
    empty = speed.summarize("x", [], 0)
    assert empty["median_seconds"] is None and empty["within"]["5m"] is None


def test_trends_fill_gaps_align_weeks_to_monday_and_compute_compliance():
    counts = {at(60): {"captured": 4, "routed": 2, "within_sla": 1}, at(60 * 24 * 2): {"captured": 1}}
    out = trends.series(counts, since=T0, until=T0 + timedelta(days=3), unit="day")
    assert out["x"] == [(T0.replace(hour=0) + timedelta(days=d)).isoformat() for d in range(4)]
    assert out["captured"] == [4, 0, 1, 0] and out["compliance_pct"] == [50.0, None, None, None]
    assert trends.bucket_start(datetime(2026, 11, 29, 23, tzinfo=UTC), "week").date().isoformat() == "2026-11-23"
    with pytest.raises(ValueError):
        trends.series({}, since=T0, until=T0 + timedelta(days=500), unit="day")


def test_funnel_stages_convert_from_the_previous_stage_and_the_top():
    out = stages.funnel_stages({"captured": 10, "mql": 5, "routed": 4, "touched": 2, "accepted": 1})
    assert [s["count"] for s in out] == [10, 5, 4, 2, 1, 0, 0]
    assert out[0]["from_previous"] is None and out[1]["from_previous"] == 0.5 and out[2]["from_top"] == 0.4
    assert out[6]["from_previous"] is None or out[6]["from_previous"] == 0.0
    assert stages.funnel_stages({})[1]["from_top"] is None
    assert stages.ranked({"b": 1, "a": 1, "c": 2}) == [
        {"reason": "c", "count": 2, "share": 0.5}, {"reason": "a", "count": 1, "share": 0.25},
        {"reason": "b", "count": 1, "share": 0.25}]


REP = {"id": "ann", "team": "emea", "max_open": 2, "weekly_cap": 6, "timezone": "Europe/Berlin",
       "working_hours": {"mon": ["09:00-17:00"]}, "out_of_office": []}


def test_availability_follows_the_reps_zone_shifts_and_absences():
    assert load.availability(REP, at(0)) == "on shift"              # 10:00 in Berlin
    assert load.availability(REP, at(8 * 60)) == "off shift"        # 18:00 in Berlin
    assert load.availability({**REP, "active": False}, at(0)) == "inactive"
    away = {**REP, "out_of_office": [{"start": "2026-11-23", "end": "2026-11-23"}]}
    assert load.availability(away, at(0)) == "out of office"
    exact = {**REP, "out_of_office": [{"start": at(-1).isoformat(), "end": at(1).isoformat()}]}
    assert load.availability(exact, at(0)) == "out of office" and load.availability(exact, at(2)) == "on shift"
    assert load.availability({**REP, "working_hours": None}, at(8 * 60)) == "on shift"


def test_rep_load_counts_this_local_week_and_flags_capacity():
    sunday_night = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # Monday 00:30 in Berlin
    rows = load.rep_load({"reps": [REP], "teams": []}, open_by_rep={"ann": 2, "bob": 1},
                         assigned_hourly={"ann": [(sunday_night, 3), (sunday_night - timedelta(hours=1), 5)]},
                         breaches_hourly={"ann": [(at(0), 1)]}, names={"bob": "Bob"}, teams={"bob": "us"}, now=at(60))
    ann, bob = rows
    assert (ann["open"], ann["week_new"], ann["breaches_week"], ann["at_capacity"]) == (2, 3, 1, True)
    assert ann["open_ratio"] == 1.0 and ann["availability"] == "on shift"
    assert (bob["name"], bob["team"], bob["max_open"], bob["availability"]) == ("Bob", "us", None, "unknown")
    pools = load.pool_load({"teams": [{"id": "emea", "overflow": "nurture"}]}, waiting={"emea": (2, at(0))},
                           overflows={"emea": {"returned_to_nurture": 3}, "us": {"fallback_owner": 1}}, now=at(30))
    assert [(p["pool"], p["waiting"], p["overflows_week"]) for p in pools] == [("emea", 2, 3), ("us", 0, 1)]
    assert pools[0]["oldest_wait_seconds"] == 1800


def fold(*events: tuple) -> LeadFacts:
    f = LeadFacts(lead_id="a")
    for data, time in events:
        f = apply_event(f, data, time)
    return f


def captured() -> tuple:
    return LeadCaptured(lead_id="a", captured_at=T0, profile=LeadProfile(channel="paid")), T0


def routed(minute: float = 2, outcome: str = "assigned", reason_code: str = "assigned") -> tuple:
    return LeadRouted(lead_id="a", routed_at=at(minute), outcome=outcome, assignee_id="ann" if outcome != "returned_to_nurture" else None,
                      team="emea", pool="emea", reason="x", reason_code=reason_code), at(minute)


def warning(kind: type, minute: float, deadline: str = "d1") -> tuple:
    return kind(lead_id="a", deadline_id=deadline, policy="p", kind="first_touch", assignee_id="ann", team="emea",
                due_at=at(15), fired_at=at(minute)), at(minute)


def touch(minute: float, outcome: str | None = None) -> tuple:
    return FollowUpLogged(lead_id="a", follow_up_id=f"f{minute}", touch_type="call", occurred_at=at(minute),
                          logged_at=at(minute), outcome=outcome), at(minute)


def test_the_row_has_the_speed_to_lead_durations_and_the_status():
    f = fold(captured(), routed(2), touch(10))
    row = row_of(f)
    assert (row["route_secs"], row["touch_secs"], row["status"], row["is_open"]) == (120, 600, "touched", True)
    assert status_of(fold(captured(), routed(2), touch(10, "won"))) == "won"
    assert not row_of(fold(captured(), routed(2), touch(10, "lost")))["is_open"]
    assert row_of(fold(captured()))["unowned"] and row_of(fold(captured()))["touch_secs"] is None


def test_a_capacity_return_waits_until_routed_again():
    waiting = fold(captured(), routed(2, "returned_to_nurture", "capacity"))
    assert row_of(waiting)["waiting_pool"] == "emea" and status_of(waiting) == "waiting"
    assert row_of(fold(captured(), routed(2, "returned_to_nurture", "capacity"), routed(5)))["waiting_pool"] is None


def test_a_warning_is_live_until_touched_met_or_superseded_and_a_breach_outranks_at_risk():
    assert live_alert(fold(captured(), routed(), warning(SlaAtRisk, 11)))[0] == "at_risk"
    both = fold(captured(), routed(), warning(SlaBreached, 15), warning(SlaAtRisk, 11))
    assert live_alert(both)[:2] == ("breached", "first_touch")
    assert live_alert(fold(captured(), routed(), warning(SlaAtRisk, 11), touch(12))) is None
    assert live_alert(fold(captured(), routed(), touch(10), warning(SlaAtRisk, 11))) is not None
    assert row_of(fold(captured(), routed(), warning(SlaBreached, 15)))["alert_owner"] == "ann"


def test_the_sql_aggregates_shape_into_the_same_summary_as_the_reference():
    values = [30, 120, 600, 7200]
    a = {"t_population": 5, "t_reached": 4, "t_median": speed.percentile(values, 0.5),
         "t_p90": speed.percentile(values, 0.9), **{f"t_within_{n}": sum(v <= lim for v in values)
                                                     for n, lim in speed.THRESHOLDS},
         **{f"t_h{i}": n for i, n in enumerate(speed.histogram(values))}, "key": "paid", "is_total": 0}
    report = speed.report_from_aggregates([a, {**a, "key": None, "is_total": 1}], "t")
    assert report["rows"][0] == speed.summarize("paid", values, 5)
    assert report["total"] == speed.summarize("total", values, 5)
    assert speed.report_from_aggregates([], "t")["total"]["population"] == 0
