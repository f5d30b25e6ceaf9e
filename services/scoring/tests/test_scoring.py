"""The pure scoring function: every rule kind, decay, caps, grades and the explanation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.events import Contact, LeadProfile, Stage
from leadbridge_scoring.model_file import default_model_path, load_model, parse_model
from leadbridge_scoring.scoring import Activity, decay_factor, score

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

MODEL = parse_model("""
version: test-1
mql_threshold: 50
fit:
  - {id: exec, field: job_title, contains: [vp, chief], points: 20, explanation: Executive}
  - {id: big, field: company_size, min: 500, points: 15}
  - {id: mid, field: company_size, min: 50, max: 499, points: 8}
  - {id: saas, field: industry, equals: [SaaS], points: 10}
  - {id: us, field: country, equals: [US], points: 5}
engagement:
  - {id: whitepaper, asset_contains: [whitepaper], points: 5, max_times: 2}
  - {id: survey, form_type: [survey], points: 15}
  - {id: webinar, kind: [webinar], channel: [social], points: 10}
  - {id: second-cta, kind: [form_submission], after: [whitepaper], points: 10}
intent:
  - {id: demo, form_type: [demo_request], points: 30}
negative:
  - {id: free-mail, field: email_domain, equals: [gmail.com], points: -10}
  - {id: student, field: job_title, contains: [student], points: -25}
decay: {half_life_days: 10, max_age_days: 60}
caps: {fit: 40, engagement: 20, intent: 25, negative: 30}
grades:
  bands:
    - {grade: A, min: 50}
    - {grade: B, min: 20}
    - {grade: C}
""")


def act(aid: str, days_ago: float = 0, **kw: str) -> Activity:
    return Activity(activity_id=aid, occurred_at=NOW - timedelta(days=days_ago), **kw)


def rules(breakdown) -> dict[str, float]:
    return {h.rule: h.points for h in breakdown.matched}


def test_empty_lead_scores_zero_and_lowest_grade() -> None:
    b = score(LeadProfile(), [], MODEL, NOW)
    assert (b.total, b.grade, b.stage, b.matched, b.model_version) == (0, "C", Stage.NURTURE, (), "test-1")


def test_contains_matches_whole_words_case_insensitively() -> None:
    assert rules(score(LeadProfile(job_title="VP of Sales"), [], MODEL, NOW)) == {"exec": 20}
    assert rules(score(LeadProfile(job_title="Chief Revenue Officer"), [], MODEL, NOW)) == {"exec": 20}
    assert rules(score(LeadProfile(job_title="MVP engineer"), [], MODEL, NOW)) == {}


def test_equals_is_case_insensitive() -> None:
    assert rules(score(LeadProfile(industry="saas", country="US"), [], MODEL, NOW)) == {"saas": 10, "us": 5}
    assert rules(score(LeadProfile(industry="SaaS platforms"), [], MODEL, NOW)) == {}


@pytest.mark.parametrize("size,expected", [(None, {}), (10, {}), (50, {"mid": 8}), (499, {"mid": 8}),
                                           (500, {"big": 15})])
def test_range_rule_on_company_size(size: int | None, expected: dict[str, float]) -> None:
    assert rules(score(LeadProfile(company_size=size), [], MODEL, NOW)) == expected


def test_negative_rules_on_email_domain_and_title() -> None:
    p = LeadProfile(contact=Contact(email="Jo@Gmail.com"), job_title="Student")
    b = score(p, [], MODEL, NOW)
    assert rules(b) == {"free-mail": -10, "student": -25, "cap:negative": 5}
    assert b.negative == -30 and b.total == -30


def test_activity_selectors_form_type_kind_channel_and_asset() -> None:
    acts = [act("a", form_type="survey"), act("b", kind="webinar", channel="social"),
            act("c", kind="webinar", channel="paid"), act("d", kind="download", asset="Scoring Whitepaper 2026")]
    b = score(LeadProfile(), acts, MODEL, NOW)
    assert {k: v for k, v in rules(b).items() if not k.startswith("cap:")} == {"survey": 15, "webinar": 10,
                                                                               "whitepaper": 5}


def test_survey_outranks_whitepaper_and_later_cta_earns_more() -> None:
    survey = score(LeadProfile(), [act("s", form_type="survey")], MODEL, NOW).engagement
    paper = score(LeadProfile(), [act("w", asset="whitepaper")], MODEL, NOW).engagement
    assert survey > paper
    # a form after the whitepaper earns the follow-up points; the same form before it does not
    after = score(LeadProfile(), [act("w", 2, kind="download", asset="whitepaper"), act("f", 1)], MODEL, NOW)
    before = score(LeadProfile(), [act("f", 2), act("w", 1, kind="download", asset="whitepaper")], MODEL, NOW)
    assert "second-cta" in rules(after) and "second-cta" not in rules(before)


def test_max_times_counts_the_most_recent() -> None:
    acts = [act(f"w{i}", days_ago=i * 10, asset="whitepaper") for i in range(3)]
    b = score(LeadProfile(), acts, MODEL, NOW)
    hit = next(h for h in b.matched if h.rule == "whitepaper")
    assert hit.points == round(5 + 5 * 0.5, 2)  # now and 10 days ago (one half-life); the oldest not counted
    assert "(x2)" in hit.explanation and "faded to 75%" in hit.explanation


def test_intent_is_not_decayed() -> None:
    b = score(LeadProfile(), [act("d", days_ago=40, form_type="demo_request")], MODEL, NOW)
    assert b.intent == 25  # 30 points capped at 25, despite being 40 days old


def test_decay_half_life_and_max_age() -> None:
    assert decay_factor(0, MODEL) == 1
    assert decay_factor(10, MODEL) == pytest.approx(0.5)
    assert decay_factor(20, MODEL) == pytest.approx(0.25)
    assert decay_factor(61, MODEL) == 0
    assert decay_factor(-1, MODEL) == 1  # a clock a little ahead is not a bonus
    assert score(LeadProfile(), [act("s", 10, form_type="survey")], MODEL, NOW).engagement == 7.5
    assert score(LeadProfile(), [act("s", 61, form_type="survey")], MODEL, NOW).matched == ()


def test_no_decay_configured_keeps_points() -> None:
    model = MODEL.model_copy(update={"decay": MODEL.decay.model_copy(update={"half_life_days": None,
                                                                             "max_age_days": None})})
    assert score(LeadProfile(), [act("s", 365, form_type="survey")], model, NOW).engagement == 15


def test_caps_per_category_and_explanations_add_up() -> None:
    p = LeadProfile(job_title="VP", company_size=1000, industry="SaaS", country="US")  # 50 fit -> cap 40
    acts = [act("s", form_type="survey"), act("b", kind="webinar", channel="social")]  # 25 -> cap 20
    b = score(p, acts, MODEL, NOW)
    assert (b.fit, b.engagement, b.total) == (40, 20, 60)
    assert rules(b)["cap:fit"] == -10 and rules(b)["cap:engagement"] == -5
    assert round(sum(h.points for h in b.matched), 2) == b.total
    assert next(h for h in b.matched if h.rule == "exec").explanation == "Executive"


def test_threshold_grade_and_stage() -> None:
    p = LeadProfile(job_title="VP", industry="SaaS")  # 30
    nurture = score(p, [act("s", form_type="survey")], MODEL, NOW)  # 45
    assert (nurture.total, nurture.grade, nurture.stage) == (45, "B", Stage.NURTURE)
    mql = score(p, [act("s", form_type="survey"), act("x", kind="webinar", channel="social")], MODEL, NOW)
    assert (mql.total, mql.grade, mql.stage) == (50, "A", Stage.MQL)


def test_grade_on_fit() -> None:
    model = MODEL.model_copy(update={"grades": MODEL.grades.model_copy(update={"on": "fit"})})
    b = score(LeadProfile(), [act("d", form_type="demo_request")], model, NOW)
    assert b.total == 25 and b.grade == "C"  # by total it would be B; by fit (0) it is C
    b2 = score(LeadProfile(job_title="VP"), [], model, NOW)
    assert b2.grade == "B"


def test_test_leads_never_reach_mql_by_score() -> None:
    p = LeadProfile(job_title="VP", company_size=1000, industry="SaaS", is_test=True)
    assert score(p, [act("d", form_type="demo_request")], MODEL, NOW).stage is Stage.NURTURE


def test_default_model_seed_examples() -> None:
    model = load_model(default_model_path())
    exec_lead = LeadProfile(job_title="VP Marketing", company_size=2000, industry="Software", country="US",
                            contact=Contact(email="a@acme.example"))
    demo = score(exec_lead, [act("c", form_type="demo_request")], model, NOW)
    assert demo.stage is Stage.MQL and demo.grade == "A"
    student = LeadProfile(job_title="Student", contact=Contact(email="s@gmail.com"))
    assert score(student, [act("c", kind="download", asset="whitepaper")], model, NOW).total < 0


def test_a_new_model_object_is_scored_by_its_own_rules() -> None:
    """The rules are compiled once per model object (``scoring._plan``): an edited model, even one built from
    the same text, scores by what it says."""
    lead = LeadProfile(job_title="VP of Sales", industry="SaaS")
    assert rules(score(lead, [], MODEL, NOW)) == {"exec": 20, "saas": 10}
    edited = MODEL.model_copy(update={"fit": [MODEL.fit[0].model_copy(update={"contains": ["director"]})]})
    assert rules(score(lead, [], edited, NOW)) == {}
    assert rules(score(LeadProfile(job_title="Sales Director"), [], edited, NOW)) == {"exec": 20}
    assert rules(score(lead, [], MODEL, NOW)) == {"exec": 20, "saas": 10}  # the first model's plan still holds
