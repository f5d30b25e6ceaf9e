"""Insights' batch projection writes exactly what one event at a time writes, per lead in order: the timeline,
the facts, the views' rows (what the managers' views read), the breach and overflow rows -- over every event
type, leads interleaved, several events of one lead in one batch, an event twice in one batch and a replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import (
    Contact,
    CrmDeliveryRecorded,
    FollowUpLogged,
    LeadActivityRecorded,
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
from leadbridge_events.batching import BatchContext
from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate, migrations_dir
from leadbridge_insights import store
from leadbridge_insights.handlers import HANDLERS, project_many
from sqlalchemy import select, text

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _story(n: int) -> list[Envelope]:
    """One lead's events in their order: captured ... won, with SLA warnings, a re-route and an overflow."""
    lead = f"lead-{n}-{uuid.uuid4().hex[:8]}"
    rep, team = f"rep-{n % 3}", f"team-{n % 2}"
    events: list[Envelope] = []

    def add(data, minutes: float) -> None:
        at = T0 + timedelta(minutes=minutes)
        events.append(Envelope.of(data, source="test", lead_id=lead, time=at,
                                  caused_by=events[-1] if events else None))

    def at(minutes: float) -> datetime:
        return T0 + timedelta(minutes=minutes)

    profile = LeadProfile(contact=Contact(email=f"p{n}@x.example", name=f"Zoe {n}"), channel=("paid", "organic")[n % 2],
                          campaign=f"c{n % 3}", source="google", company=f"Co {n}", is_test=n == 4)
    add(LeadCaptured(lead_id=lead, captured_at=at(0), profile=profile), 0)
    add(LeadActivityRecorded(lead_id=lead, activity_id=f"{lead}-a", occurred_at=at(1), kind="visit", channel="organic"), 1)
    add(LeadScored(lead_id=lead, scored_at=at(2), score=70 + n, grade="A", stage="mql", previous_stage="nurture",
                   became_mql=True, model_version="v", profile=profile), 2)
    if n % 3 == 2:  # no rep could take it: back to nurture for capacity, overflowing through two pools
        add(LeadRouted(lead_id=lead, routed_at=at(3), outcome="returned_to_nurture", pool=team, reason="capacity",
                       reason_code="capacity", overflowed_from=[team, "spare", team]), 3)
        return events
    add(LeadRouted(lead_id=lead, routed_at=at(3), assignee_id=rep, assignee_name=f"Rep {n}", team=team, pool=team,
                   reason="least loaded", sla_policy="hot", overflowed_from=["spare"] if n % 2 else []), 3)
    due = at(18)
    add(SlaDeadlinesSet(lead_id=lead, assignee_id=rep, team=team, policy="hot", set_at=at(3), deadlines=[
        SlaDeadline(deadline_id=f"ft-{lead}", kind="first_touch", due_at=due, at_risk_at=at(14))]), 3.1)
    add(CrmDeliveryRecorded(lead_id=lead, delivery_id=f"d-{lead}", destination="hubspot:main", destination_kind="hubspot",
                            delivered_event_id=events[-2].id, delivered_event_type="lead-routed", attempt=1,
                            result="delivered", status_code=200, recorded_at=at(3.2)), 3.2)
    add(SlaAtRisk(lead_id=lead, deadline_id=f"ft-{lead}", policy="hot", kind="first_touch", assignee_id=rep, team=team,
                  due_at=due, fired_at=at(14)), 14)
    if n % 2:
        add(SlaBreached(lead_id=lead, deadline_id=f"ft-{lead}", policy="hot", kind="first_touch", assignee_id=rep,
                        team=team, due_at=due, fired_at=due), 18)
    add(FollowUpLogged(lead_id=lead, follow_up_id=f"f-{lead}", touch_type="call", actor=rep, occurred_at=at(20),
                       logged_at=at(20), outcome="connected"), 20)
    add(SlaDeadlineMet(lead_id=lead, deadline_id=f"ft-{lead}", kind="first_touch", met_at=at(20), late=True, due_at=due),
        20.1)
    add(LeadRouted(lead_id=lead, routed_at=at(25), assignee_id="rep-9", team=team, pool=team, reason="re-route",
                   attempt=2, sla_policy="hot"), 25)
    add(FollowUpLogged(lead_id=lead, follow_up_id=f"w-{lead}", touch_type="meeting", actor="rep-9", occurred_at=at(40),
                       logged_at=at(40), outcome="won", amount=1000.0 + n), 40)
    return events


def batches() -> list[list[Envelope]]:
    """The stories' events, leads interleaved (each lead's own order kept), cut into batches of 7; the first
    event repeated inside its batch, and two of the first batch's events replayed in a later one."""
    stories = [_story(n) for n in range(6)]
    flat = [s[i] for i in range(max(map(len, stories))) for s in stories if i < len(s)]
    out = [flat[i:i + 7] for i in range(0, len(flat), 7)]
    out[0].insert(3, out[0][0])
    out[2] = out[0][1:3] + out[2]
    return out


async def _snapshot(engine) -> dict[str, list]:
    out: dict[str, list] = {}
    async with engine.connect() as conn:
        for table, order in ((store.timeline, "seq"), (store.lead_facts, "lead_id"), (store.lead_views, "lead_id"),
                             (store.lead_search, "lead_id"), (store.sla_breaches, "event_id"),
                             (store.pool_overflows, "event_id")):
            columns = [c for c in table.columns if c.name not in ("seq", "recorded_at", "updated_at")]
            out[table.name] = [tuple(r) for r in (await conn.execute(select(*columns).order_by(table.c[order])))]
    return out


async def test_batch_projection_equals_one_by_one(fresh_database_url, second_database_url):
    outbox = store.metadata.tables["insights.outbox"]
    snapshots, plan = [], batches()  # the same events (ids) on both paths
    for url, batched in ((fresh_database_url, False), (second_database_url, True)):
        engine = make_engine(url)
        sessions = session_factory(engine)
        try:
            await migrate(engine, store.metadata, migrations_dir("leadbridge_insights"))
            for batch in plan:
                async with sessions() as session, session.begin():
                    ctx = BatchContext(session=session, outbox=outbox)
                    if batched:
                        await project_many(batch, ctx)
                    else:
                        for e in batch:
                            await HANDLERS[e.type].handler(e, ctx.for_event(e))
            snapshots.append(await _snapshot(engine))
        finally:
            await engine.dispose()
    expected, got = snapshots
    assert len(expected["lead_views"]) == len(expected["lead_search"]) == 6 and len(expected["timeline"]) == len({e.id for b in plan for e in b})
    assert expected["sla_breaches"] and len(expected["pool_overflows"]) == 6  # 2 x 2 pools, 2 x "spare"
    statuses = {r[[c.name for c in store.lead_views.columns].index("status")] for r in expected["lead_views"]}
    assert statuses >= {"won", "waiting"}
    for table in expected:
        assert got[table] == expected[table], table


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
async def test_the_search_text_is_written_only_when_it_changes(fresh_database_url, batched):
    """A lead's ``lead_search`` row (the trigram-indexed text) gets a new version at capture and when its owner
    changes, not for events that leave the text as it is: each new version put all its trigrams into the index
    again. Its ``lead_views`` row is rewritten for every one of those events all the same."""
    outbox = store.metadata.tables["insights.outbox"]
    events = _story(1)  # captured, activity, scored, routed to rep-1, ... re-routed to rep-9, won
    engine = make_engine(fresh_database_url)
    sessions = session_factory(engine)
    lead = events[0].lead_id
    try:
        await migrate(engine, store.metadata, migrations_dir("leadbridge_insights"))
        versions: list[tuple[str, str, str]] = []
        for e in events:
            async with sessions() as session, session.begin():
                ctx = BatchContext(session=session, outbox=outbox)
                if batched:
                    await project_many([e], ctx)
                else:
                    await HANDLERS[e.type].handler(e, ctx.for_event(e))
            async with engine.connect() as conn:
                search, search_version = (await conn.execute(text(
                    "SELECT search, xmin::text FROM insights.lead_search WHERE lead_id = :l"), {"l": lead})).one()
                view_version = (await conn.execute(text(
                    "SELECT xmin::text FROM insights.lead_views WHERE lead_id = :l"), {"l": lead})).scalar_one()
            versions.append((search, search_version, view_version))
    finally:
        await engine.dispose()
    texts = list(dict.fromkeys(s for s, _, _ in versions))
    assert texts == [f"{lead} zoe 1 p1@x.example co 1", f"{lead} zoe 1 p1@x.example co 1 rep-1 rep 1",
                     f"{lead} zoe 1 p1@x.example co 1 rep-9"]
    assert len({v for _, v, _ in versions}) == len(texts)  # one row version per text, not per event
    assert len({v for _, _, v in versions}) > 2 * len(texts)  # the views' row: rewritten event after event
