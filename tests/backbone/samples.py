"""One realistic sample of every event type, for contract and round-trip tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadbridge_contracts.events import (
    Bant,
    Contact,
    CrmDeliveryRecorded,
    EventData,
    FollowUpLogged,
    LeadActivityRecorded,
    LeadCaptured,
    LeadProfile,
    LeadRouted,
    LeadScored,
    MatchedRule,
    RosterChanged,
    RosterRep,
    RosterTeam,
    SlaAtRisk,
    SlaBreached,
    SlaDeadline,
    SlaDeadlineMet,
    SlaDeadlinesSet,
)

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

PROFILE = LeadProfile(
    contact=Contact(email="ana@example.com", phone="+4915112345678", name="Ana Example"),
    company="Example GmbH", job_title="VP Sales", company_size=250, industry="software", country="DE",
    language="de", channel="paid", campaign="q4-demo", form_type="demo_request", source="web_form", consent=True,
    utm={"utm_source": "google", "utm_medium": "cpc"},
)


def samples(lead_id: str) -> list[EventData]:
    return [
        LeadCaptured(lead_id=lead_id, captured_at=NOW, profile=PROFILE, dedupe_key="idem-1"),
        LeadActivityRecorded(lead_id=lead_id, activity_id="act-1", occurred_at=NOW, kind="form_submission",
                             form_type="pricing", channel="organic"),
        LeadScored(lead_id=lead_id, scored_at=NOW, score=72, fit=30, engagement=22, intent=20, grade="B",
                   stage="mql", became_mql=True, model_version="2026.11",
                   matched_rules=[MatchedRule(rule="vp_title", category="fit", points=15, explanation="VP title")],
                   profile=PROFILE),
        LeadRouted(lead_id=lead_id, routed_at=NOW, assignee_id="rep-7", team="dach", pool="dach-senior",
                   rule="german-speaking", reason="language de -> DACH senior pool; rep-7 next in weighted round robin",
                   sla_policy="first-touch-15m", profile=PROFILE),
        FollowUpLogged(lead_id=lead_id, follow_up_id="fu-1", touch_type="call", actor="rep-7",
                       occurred_at=NOW + timedelta(minutes=5), logged_at=NOW + timedelta(minutes=6),
                       outcome="qualified", bant=Bant(budget=True, authority=True, need=True, timing=False)),
        SlaAtRisk(lead_id=lead_id, deadline_id="d-1", policy="first-touch-15m", kind="first_touch", assignee_id="rep-7",
                  team="dach", due_at=NOW + timedelta(minutes=15), fired_at=NOW + timedelta(minutes=11)),
        SlaBreached(lead_id=lead_id, deadline_id="d-1", policy="first-touch-15m", kind="first_touch",
                    assignee_id="rep-7", team="dach", due_at=NOW + timedelta(minutes=15),
                    fired_at=NOW + timedelta(minutes=15, seconds=1)),
        SlaDeadlinesSet(lead_id=lead_id, routing_attempt=2, assignee_id="rep-7", team="dach",
                        policy="first-touch-15m", set_at=NOW,
                        deadlines=[SlaDeadline(deadline_id="d-2", kind="first_touch",
                                               due_at=NOW + timedelta(minutes=15),
                                               at_risk_at=NOW + timedelta(minutes=11))],
                        superseded_deadline_ids=["d-1"]),
        SlaDeadlineMet(lead_id=lead_id, deadline_id="d-2", kind="first_touch", met_at=NOW + timedelta(minutes=5),
                       due_at=NOW + timedelta(minutes=15), routing_attempt=2),
        CrmDeliveryRecorded(lead_id=lead_id, delivery_id="msg_1", destination="hubspot:main",
                            destination_kind="hubspot", delivered_event_id="e-1", delivered_event_type="lead-routed",
                            attempt=2, result="failed", status_code=429, error="HTTP 429 RATE_LIMIT",
                            next_attempt_at=NOW + timedelta(minutes=5), recorded_at=NOW),
        RosterChanged(changed_at=NOW, teams=[RosterTeam(id="dach", overflow="next_pool", overflow_to="emea")],
                      reps=[RosterRep(id="rep-7", name="Ann", team="dach", weekly_cap=6, max_open=20,
                                      timezone="Europe/Berlin", working_hours={"mon": ["09:00-17:00"]},
                                      out_of_office=[{"start": "2026-12-24", "end": "2026-12-26", "reason": None}])]),
    ]


def activity_handlers(handler, batch=None):
    """The table of a test consumer on a topic of its own: lead-activity-recorded in, and out (echoes)."""
    from leadbridge_events.registry import EventHandlers, on

    return EventHandlers(on(LeadActivityRecorded, handler, batch=batch), emits=(LeadActivityRecorded,))
