"""The service over the real Kafka broker and PostgreSQL: capture -> nurture -> MQL -> recycle -> MQL, and SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import (
    Bant,
    Contact,
    FollowUpLogged,
    FollowUpOutcome,
    LeadActivityRecorded,
    LeadCaptured,
    LeadProfile,
    Stage,
    TouchType,
)
from leadbridge_events.producer import EventProducer
from leadbridge_events.testing import collect_events
from leadbridge_scoring import store
from leadbridge_scoring.app import build_runtime
from leadbridge_scoring.model_file import default_model_path, load_model
from leadbridge_scoring.settings import ScoringSettings
from leadbridge_scoring.whatif_cli import run_what_if
from sqlalchemy import func, select

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC) - timedelta(hours=1)


def envelope(data, lead_id: str) -> Envelope:
    return Envelope.of(data, source="intake", lead_id=lead_id)


async def test_scoring_service_end_to_end(kafka_bootstrap: str, fresh_database_url: str, unique_name: str,
                                          tmp_path, capsys) -> None:
    settings = ScoringSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url)
    model = load_model(default_model_path())
    runtime = build_runtime(settings, model, group_id=unique_name, auto_offset_reset="latest")
    await runtime.start()
    lead_a, lead_b = f"lead-{uuid.uuid4()}", f"lead-{uuid.uuid4()}"
    manager = LeadProfile(contact=Contact(email="pat@acme.example"), job_title="Marketing Manager",
                          company_size=300, industry="Software", country="US", channel="paid",
                          campaign="q4-whitepaper", form_type="content", custom={"asset": "Lead scoring whitepaper"})
    executive = LeadProfile(contact=Contact(email="ceo@big.example"), job_title="CEO", company_size=5000,
                            industry="Software", country="GB", channel="organic", campaign="demo-page",
                            form_type="demo_request")

    async def scored(lead_id: str, count: int) -> list:
        events = await collect_events(kafka_bootstrap, ["lead-scored"], lead_ids=[lead_id], count=count,
                                      timeout=45)
        return [e.data for e in events]

    try:
        await runtime.kafka_ready.wait()
        assert runtime.runner is not None
        await runtime.runner.wait_assigned()
        async with EventProducer(kafka_bootstrap) as producer:
            # A: a whitepaper download -> nurture
            await producer.send(envelope(LeadCaptured(lead_id=lead_a, captured_at=T0, profile=manager), lead_a))
            capture_b = envelope(LeadCaptured(lead_id=lead_b, captured_at=T0, profile=executive), lead_b)
            await producer.send(capture_b)
            await producer.send(capture_b)  # redelivered: handled once
            [first] = await scored(lead_a, 1)
            assert (first.stage, first.became_mql, first.previous_stage) == (Stage.NURTURE, False, None)
            assert first.model_version == model.version and first.fit == 35
            assert {r.rule for r in first.matched_rules} >= {"title-manager", "whitepaper-download"}

            # A: a later demo request crosses the threshold -> MQL, once
            demo = LeadActivityRecorded(lead_id=lead_a, activity_id="act-1", occurred_at=T0 + timedelta(minutes=5),
                                        kind="form_submission", form_type="demo_request", channel="paid",
                                        campaign="q4-whitepaper")
            await producer.send(envelope(demo, lead_a))
            await producer.send(envelope(demo, lead_a))  # same activity, new event id: stored once, no change
            _, mql = await scored(lead_a, 2)
            assert (mql.stage, mql.previous_stage, mql.became_mql) == (Stage.MQL, Stage.NURTURE, True)
            assert mql.intent == 30 and "follow-up-cta" in {r.rule for r in mql.matched_rules}

            # A: sales rejects -> nurture with the reason
            await producer.send(envelope(FollowUpLogged(
                lead_id=lead_a, follow_up_id="fu-1", touch_type=TouchType.CALL, occurred_at=T0 + timedelta(minutes=20),
                logged_at=T0 + timedelta(minutes=21), outcome=FollowUpOutcome.REJECTED, reason="no budget"), lead_a))
            *_, recycled = await scored(lead_a, 3)
            assert (recycled.stage, recycled.previous_stage) == (Stage.NURTURE, Stage.MQL)
            assert recycled.reason == "rejected by sales: no budget" and not recycled.became_mql

            # A: a new pricing request -> MQL again
            await producer.send(envelope(LeadActivityRecorded(
                lead_id=lead_a, activity_id="act-2", occurred_at=T0 + timedelta(minutes=30), kind="form_submission",
                form_type="pricing"), lead_a))
            *_, again = await scored(lead_a, 4)
            assert (again.stage, again.became_mql) == (Stage.MQL, True)

            # B: a demo-requesting CEO is an MQL at once; sales qualifies with BANT -> SQL
            [b_first] = await scored(lead_b, 1)
            assert (b_first.stage, b_first.became_mql, b_first.grade) == (Stage.MQL, True, "A")
            await producer.send(envelope(FollowUpLogged(
                lead_id=lead_b, follow_up_id="fu-2", touch_type=TouchType.MEETING,
                occurred_at=T0 + timedelta(minutes=40), logged_at=T0 + timedelta(minutes=40),
                outcome=FollowUpOutcome.QUALIFIED, bant=Bant(budget=True, authority=True, need=True, timing=True)),
                lead_b))
            _, sql = await scored(lead_b, 2)
            assert (sql.stage, sql.previous_stage, sql.became_mql) == (Stage.SQL, Stage.MQL, False)
            assert sql.profile.job_title == "CEO"

        async with runtime.engine.connect() as conn:
            outbox = runtime.outbox
            counts = dict((await conn.execute(
                select(outbox.c.key, func.count()).where(outbox.c.key.in_([lead_a, lead_b])).group_by(outbox.c.key)
            )).all())
            assert counts == {lead_a: 4, lead_b: 2}  # duplicates emitted nothing
            rows = {r.lead_id: r for r in (await conn.execute(select(store.leads))).all()}
            assert rows[lead_a].stage == "mql" and rows[lead_a].mql_emitted
            assert rows[lead_b].stage == "sql"
            n_acts = (await conn.execute(select(func.count()).select_from(store.activities)
                                         .where(store.activities.c.lead_id == lead_a))).scalar_one()
            assert n_acts == 3
    finally:
        await runtime.stop()

    # what-if over the stored leads: a stricter model moves A back to nurture; nothing is emitted
    strict = tmp_path / "strict.yaml"
    strict.write_text(default_model_path().read_text().replace("mql_threshold: 60", "mql_threshold: 95")
                      .replace('version: "2026.11-default-1"', 'version: "strict"'))
    capsys.readouterr()
    assert await run_what_if(settings, str(strict), as_of=(T0 + timedelta(hours=1)).isoformat()) == 0
    out = capsys.readouterr().out
    assert "2 leads; 1 would change stage: 0 nurture->MQL, 1 MQL->nurture; 1 SQL leads stay with sales" in out
    assert "q4-whitepaper" in out and "paid" in out
