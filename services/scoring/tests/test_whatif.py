"""What-if, pure: stage changes by channel and campaign between two models over the same leads."""

from __future__ import annotations

from datetime import UTC, datetime

from leadbridge_contracts.events import LeadProfile, Stage
from leadbridge_scoring.lifecycle import LeadState
from leadbridge_scoring.model_file import parse_model
from leadbridge_scoring.scoring import Activity
from leadbridge_scoring.whatif import LeadFacts, compare, render

NOW = datetime(2026, 11, 23, tzinfo=UTC)
BASE = """
version: {v}
mql_threshold: {t}
fit: [{{id: vp, field: job_title, contains: [vp], points: 30}}]
intent: [{{id: demo, form_type: [demo_request], points: 30}}]
grades: {{bands: [{{grade: A, min: 50}}, {{grade: B}}]}}
"""


def lead(i: int, title: str, channel: str, campaign: str, demo: bool = False, stage: Stage = Stage.NURTURE,
         test: bool = False) -> LeadFacts:
    acts = [Activity(f"a{i}", NOW, form_type="demo_request" if demo else "contact")]
    return LeadFacts(f"l{i}", LeadProfile(job_title=title, is_test=test), LeadState(stage=stage), acts,
                     channel, campaign)


def test_compare_counts_moves_by_channel_and_campaign() -> None:
    current, proposed = parse_model(BASE.format(v="cur", t=60)), parse_model(BASE.format(v="new", t=30))
    leads = [
        lead(1, "VP", "paid", "q4"),               # 30: nurture -> MQL under the new threshold
        lead(2, "Engineer", "paid", "q4"),         # 0: stays nurture
        lead(3, "VP", "organic", "blog", demo=True),  # 60: MQL in both
        lead(4, "VP", "organic", "blog", stage=Stage.SQL),  # sales owns it
        lead(5, "VP", "paid", "q4", test=True),    # test leads are left out
    ]
    report = compare(leads, current, proposed, NOW)
    assert (report.leads, report.to_mql, report.to_nurture, report.sql_unchanged) == (4, 1, 0, 1)
    paid = next(g for g in report.groups if g.channel == "paid")
    assert (paid.campaign, paid.leads, paid.to_mql, paid.changed) == ("q4", 2, 1, 1)
    assert report.groups[0] is paid  # the groups that move most come first
    reverse = compare(leads, proposed, current, NOW)
    assert (reverse.to_mql, reverse.to_nurture) == (0, 1)
    text = render(report)
    assert "cur -> new" in text and "1 nurture->MQL" in text and "q4" in text
    assert report.as_dict()["groups"][0]["changed"] == 1
