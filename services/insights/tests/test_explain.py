"""The one-line explanations: every decision readable, no personal data."""

from __future__ import annotations

from datetime import UTC, datetime

from leadbridge_contracts.events import (
    Bant,
    Contact,
    FollowUpLogged,
    LeadActivityRecorded,
    LeadCaptured,
    LeadProfile,
    LeadRouted,
    LeadScored,
    MatchedRule,
    SlaAtRisk,
    SlaBreached,
    SlaDeadline,
    SlaDeadlineMet,
    SlaDeadlinesSet,
)
from leadbridge_insights.explain import explain

T = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
PROFILE = LeadProfile(contact=Contact(email="ann@example.com", phone="+4915112345678", name="Ann Example"),
                      channel="paid", campaign="spring-sale", source="google", form_type="demo_request")


def test_capture_names_where_the_lead_came_from_without_personal_data():
    text = explain(LeadCaptured(lead_id="l1", captured_at=T, profile=PROFILE))
    assert text == "Captured (source google, channel paid, campaign spring-sale, form demo_request)"
    assert "example" not in text.lower() and "+49" not in text


def test_capture_of_a_test_lead_says_it_is_kept_out_of_the_funnel():
    text = explain(LeadCaptured(lead_id="l1", captured_at=T, profile=LeadProfile(is_test=True)))
    assert text == "Captured; platform test lead, kept out of the funnel"


def test_activity():
    text = explain(LeadActivityRecorded(lead_id="l1", activity_id="a1", occurred_at=T, kind="download",
                                        asset="pricing.pdf", profile=PROFILE))
    assert text == "Activity: download (asset pricing.pdf)"


def test_score_shows_the_breakdown_the_stage_and_the_matched_rules():
    text = explain(LeadScored(
        lead_id="l1", scored_at=T, score=72, fit=30, engagement=25, intent=20, negative=-3, grade="A",
        stage="mql", previous_stage="nurture", became_mql=True, model_version="2025-03",
        matched_rules=[MatchedRule(rule="size-200+", category="fit", points=20, explanation="200+ employees"),
                       MatchedRule(rule="free-mail", category="negative", points=-3)],
    ))
    assert text == ("Scored 72 (grade A): fit 30, engagement 25, intent 20, negative -3 -> MQL "
                    "(crossed the MQL threshold). Rules: size-200+ +20 (200+ employees); free-mail -3 "
                    "[model 2025-03]")


def test_score_back_to_nurture_gives_the_reason():
    text = explain(LeadScored(lead_id="l1", scored_at=T, score=10, grade="D", stage="nurture", previous_stage="mql",
                              reason="sales rejected: no budget", model_version="v1"))
    assert "-> NURTURE (was MQL); reason: sales rejected: no budget" in text


def test_routing_gives_the_rep_the_rule_the_reason_and_the_sla_policy():
    text = explain(LeadRouted(lead_id="l1", routed_at=T, assignee_id="rep-7", assignee_name="Bo", team="emea",
                              rule="emea-enterprise", reason="country DE, 200+ employees; least loaded rep",
                              sla_policy="hot-15m", attempt=2, previous_assignees=["rep-3"]))
    assert text == ("Assigned to Bo (rep-7), team emea by rule emea-enterprise: country DE, 200+ employees; "
                    "least loaded rep; SLA policy hot-15m; re-route #2 (previously rep-3)")


def test_routing_overflow_outcomes():
    back = explain(LeadRouted(lead_id="l1", routed_at=T, outcome="returned_to_nurture", rule="fallback",
                              reason="every rep is at capacity", reason_code="capacity"))
    assert back == "Returned to nurture (rule fallback): every rep is at capacity"
    fallback = explain(LeadRouted(lead_id="l1", routed_at=T, outcome="fallback_owner", assignee_id="inside-sales",
                                  pool="overflow", rule="fallback", reason="no rule matched"))
    assert fallback == "Sent to fallback owner inside-sales, pool overflow by rule fallback: no rule matched"


def test_touches_and_outcomes():
    def fu(**kw):
        return explain(FollowUpLogged(lead_id="l1", follow_up_id="f", occurred_at=T, logged_at=T, **kw))

    assert fu(touch_type="call", actor="rep-7") == "Call by rep-7"
    assert fu(touch_type="call", actor="rep-7", outcome="no-answer") == "Call by rep-7: no-answer"
    assert fu(touch_type="note", outcome="rejected", reason="no budget") == "Note: rejected (no budget)"
    assert (fu(touch_type="meeting", outcome="qualified", bant=Bant(budget=True, need=True))
            == "Meeting: qualified (BANT: budget, need)")
    assert fu(touch_type="email", outcome="won", amount=12000) == "Email: won (amount 12000)"
    assert fu(touch_type="call", outcome="lost", reason="chose a competitor") == "Call: lost (chose a competitor)"


def test_sla_deadlines_at_risk_and_breached():
    due = datetime(2025, 3, 4, 9, 45, tzinfo=UTC)
    risk = explain(SlaAtRisk(lead_id="l1", deadline_id="d", policy="hot-15m", kind="first_touch",
                             assignee_id="rep-7", team="emea", due_at=due, fired_at=T))
    assert risk == "First-touch SLA at risk: due 2025-03-04 09:45 UTC (policy hot-15m, rep rep-7, team emea)"
    breach = explain(SlaBreached(lead_id="l1", deadline_id="d", policy="hot-15m", kind="cadence", due_at=due,
                                 fired_at=T, escalate=False))
    assert breach == "Follow-up cadence SLA breached: was due 2025-03-04 09:45 UTC (policy hot-15m); not escalated"


def test_deadlines_set_says_what_is_due_when_for_whom_under_which_policy():
    due = datetime(2025, 3, 4, 10, 15, tzinfo=UTC)
    first = SlaDeadline(deadline_id="d1", kind="first_touch", due_at=due, at_risk_at=due.replace(minute=11))
    text = explain(SlaDeadlinesSet(lead_id="l1", assignee_id="anna", team="emea", policy="standard", set_at=T,
                                   deadlines=[first]))
    assert text == "First touch due 2025-03-04 10:15 UTC (at risk 10:11) for anna (team emea) under policy standard"
    cadence = SlaDeadline(deadline_id="d2", kind="cadence", due_at=datetime(2025, 3, 9, 10, 0, tzinfo=UTC))
    rerouted = explain(SlaDeadlinesSet(lead_id="l1", assignee_id="ben", policy="standard", routing_attempt=2,
                                       deadlines=[first, cadence], superseded_deadline_ids=["d0", "d00"]))
    assert rerouted == ("First touch due 2025-03-04 10:15 UTC (at risk 10:11); follow-up cadence due "
                        "2025-03-09 10:00 UTC for ben under policy standard; re-route #2; replaces 2 earlier deadlines")
    stopped = explain(SlaDeadlinesSet(lead_id="l1", policy="standard", superseded_deadline_ids=["d1"]))
    assert stopped == "SLA clock stopped: 1 deadline of the previous assignment no longer count (policy standard)"


def test_deadline_met_in_time_or_late():
    due = datetime(2025, 3, 4, 10, 15, tzinfo=UTC)
    met = explain(SlaDeadlineMet(lead_id="l1", deadline_id="d1", kind="first_touch", met_at=T, due_at=due))
    assert met == "First-touch SLA met: touched 2025-03-04 09:30 UTC, due 10:15"
    late = explain(SlaDeadlineMet(lead_id="l1", deadline_id="d1", kind="disposition", late=True,
                                  met_at=due.replace(day=5), due_at=due))
    assert late == "Disposition SLA met late: touched 2025-03-05 10:15 UTC, was due 2025-03-04 10:15 UTC"


def test_crm_delivery_attempts_show_destination_status_and_retry():
    from leadbridge_contracts.events import CrmDeliveryRecorded

    failed = CrmDeliveryRecorded(lead_id="l", delivery_id="msg_1", destination="hubspot:main",
                                 destination_kind="hubspot", delivered_event_id="e", delivered_event_type="lead-routed", attempt=2, result="failed",
                                 status_code=429, error="HTTP 429 RATE_LIMIT", recorded_at=T,
                                 next_attempt_at=T.replace(minute=45))
    text = explain(failed)
    assert "hubspot:main" in text and "attempt 2: failed (HTTP 429)" in text and "retry at" in text
    assert explain(failed.model_copy(update={"result": "delivered", "status_code": 200, "error": None,
                                             "next_attempt_at": None})).endswith("delivered (HTTP 200)")
