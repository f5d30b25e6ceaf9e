"""Fixtures for insights' integration tests: settings on a fresh database, and a published lead story."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from leadbridge_contracts.envelope import Envelope
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
    RosterChanged,
    RosterRep,
    RosterTeam,
    SlaAtRisk,
    SlaBreached,
    SlaDeadline,
    SlaDeadlineMet,
    SlaDeadlinesSet,
)
from leadbridge_events.producer import EventProducer
from leadbridge_events.runtime import ServiceRuntime
from leadbridge_insights.settings import InsightsSettings


@pytest.fixture
def settings(kafka_bootstrap, fresh_database_url) -> InsightsSettings:
    return InsightsSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=fresh_database_url,
                            INSIGHTS_LIMBO_AFTER_MINUTES=60)


async def wait_consuming(runtime: ServiceRuntime) -> None:
    await asyncio.wait_for(runtime.kafka_ready.wait(), timeout=60)
    while runtime.runner is None:
        await asyncio.sleep(0.05)
    await runtime.runner.wait_assigned()
    # "latest" is resolved lazily: resolve it now, or events published next could land before it and be skipped
    consumer = runtime.runner._consumer
    for tp in consumer.assignment():
        await consumer.position(tp)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 45.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.2)


# The story is dated tomorrow, and the app under test is given a clock two hours later. Other services
# may be live on the shared topics and react to these events (scoring, routing) at the real time: dating
# the story later keeps its own stage and assignment the latest ones. It starts at 06:00 UTC, so its hour of
# events stays inside one UTC day whatever the time the tests run (dated "now + 1 day", a run after 23:10 UTC
# put the last leads on the next day, and the day's trends counted 4 of the 6 captured).
STORY_START = (datetime.now(UTC) + timedelta(days=1)).replace(hour=6, minute=0, second=0, microsecond=0)


def frozen_clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


async def foreign_events(client, story: Story) -> bool:
    """Whether a live service reacted to the story's events (then counts it can raise are bounds)."""
    for lead in story.events:
        r = await client.get(f"/v1/leads/{lead}/timeline")
        if any(e["source"] != "test" for e in r.json()["events"]):
            return True
    return False


@dataclass
class Story:
    """Five leads of one campaign (and one team) published to the real topics, as the services would."""

    campaign: str
    team: str
    won: str          # MQL, routed (deadlines set), touched in time (deadline met), accepted, qualified, won
    rejected: str     # MQL, routed (deadlines set), first touch late (at risk, breached, met late), rejected:
    #                   no budget, back to nurture
    limbo: str        # MQL two hours ago, never routed
    nurture: str      # scored below the MQL threshold
    test: str         # a platform test lead: never in the funnel
    events: dict[str, int]  # lead id -> number of events published
    now: datetime           # the clock to give the app: two hours after the story began


async def publish_story(producer: EventProducer, tag: str) -> Story:
    def lid(kind: str) -> str:
        return f"{tag}-{kind}-{uuid.uuid4().hex[:8]}"

    s = Story(campaign=f"camp-{tag}", team=f"team-{tag}", won=lid("won"), rejected=lid("rej"), limbo=lid("limbo"),
              nurture=lid("nurture"), test=lid("test"), events={}, now=STORY_START + timedelta(hours=2))
    base = STORY_START
    clock = iter(range(1000))
    envelopes: list[Envelope] = []

    def t() -> datetime:
        return base + timedelta(minutes=next(clock))

    def add(lead: str, data, time: datetime) -> None:
        envelopes.append(Envelope.of(data, source="test", lead_id=lead, time=time))
        s.events[lead] = s.events.get(lead, 0) + 1

    def profile(is_test: bool = False) -> LeadProfile:
        return LeadProfile(channel="paid", campaign=s.campaign, source="google", form_type="demo_request",
                           is_test=is_test)

    rule = MatchedRule(rule="demo-request", category="intent", points=30, explanation="asked for a demo")
    for lead in (s.won, s.rejected, s.limbo, s.nurture, s.test):
        at = t()
        add(lead, LeadCaptured(lead_id=lead, captured_at=at, profile=profile(lead == s.test)), at)
    for lead in (s.won, s.rejected, s.limbo, s.test):
        at = t()
        add(lead, LeadScored(lead_id=lead, scored_at=at, score=75, fit=25, engagement=20, intent=30, grade="A",
                             stage="mql", previous_stage="nurture", became_mql=True, matched_rules=[rule],
                             model_version="v-test", profile=profile(lead == s.test)), at)
    at = t()
    add(s.nurture, LeadScored(lead_id=s.nurture, scored_at=at, score=12, grade="D", stage="nurture",
                              model_version="v-test", profile=profile()), at)
    at = t()
    add(s.won, LeadActivityRecorded(lead_id=s.won, activity_id="a1", occurred_at=at, kind="download",
                                    asset="pricing.pdf"), at)
    routings = []
    for lead, rep in ((s.won, f"{tag}-rep-1"), (s.rejected, f"{tag}-rep-2"), (s.test, f"{tag}-rep-1")):
        at = t()
        routings.append((lead, rep, at))
        add(lead, LeadRouted(lead_id=lead, routed_at=at, assignee_id=rep, team=s.team, rule="emea-demo",
                             reason="demo request from DE; least loaded rep", sla_policy="hot-15m"), at)
    due = t() + timedelta(minutes=15)
    for lead, rep, at in routings[:2]:  # as the SLA watcher announces them (one second later: a stable order)
        add(lead, SlaDeadlinesSet(lead_id=lead, assignee_id=rep, team=s.team, policy="hot-15m", set_at=at, deadlines=[
            SlaDeadline(deadline_id=f"ft-{lead}", kind="first_touch", due_at=due, at_risk_at=due - timedelta(minutes=4))
        ]), at + timedelta(seconds=1))

    def follow_up(lead: str, fid: str, touch: str, at: datetime, **kw) -> None:
        add(lead, FollowUpLogged(lead_id=lead, follow_up_id=fid, touch_type=touch, actor="rep", occurred_at=at,
                                 logged_at=at, **kw), at)

    at = t()
    follow_up(s.won, "f1", "call", at, outcome="connected")
    add(s.won, SlaDeadlineMet(lead_id=s.won, deadline_id=f"ft-{s.won}", kind="first_touch", met_at=at, due_at=due),
        at + timedelta(seconds=1))
    follow_up(s.won, "f2", "note", t(), outcome="accepted")
    at = due - timedelta(minutes=4)
    add(s.rejected, SlaAtRisk(lead_id=s.rejected, deadline_id="d1", policy="hot-15m", kind="first_touch",
                              assignee_id=f"{tag}-rep-2", team=s.team, due_at=due, fired_at=at), at)
    add(s.rejected, SlaBreached(lead_id=s.rejected, deadline_id="d1", policy="hot-15m", kind="first_touch",
                                assignee_id=f"{tag}-rep-2", team=s.team, due_at=due, fired_at=due), due)
    follow_up(s.won, "f3", "meeting", due + timedelta(minutes=1), outcome="qualified",
              bant=Bant(budget=True, authority=True, need=True, timing=True))
    follow_up(s.rejected, "f4", "call", due + timedelta(minutes=2), outcome="rejected", reason="no budget")
    add(s.rejected, SlaDeadlineMet(lead_id=s.rejected, deadline_id=f"ft-{s.rejected}", kind="first_touch",
                                   met_at=due + timedelta(minutes=2), late=True, due_at=due),
        due + timedelta(minutes=2, seconds=1))
    at = due + timedelta(minutes=3)
    add(s.rejected, LeadScored(lead_id=s.rejected, scored_at=at, score=75, grade="A", stage="nurture",
                               previous_stage="mql", reason="sales rejected: no budget", model_version="v-test"), at)
    follow_up(s.won, "f5", "email", due + timedelta(minutes=30), outcome="won", amount=12000)
    for envelope in envelopes:
        await producer.send(envelope)
    return s


@dataclass
class LoadStory:
    """Beside a ``Story``: the roster, a lead at risk now (with contact details), a capacity overflow."""

    at_risk: str       # captured, routed to rep-3 of the story's team, at-risk warning, not touched
    waiting: str       # captured, returned to nurture for capacity: on the team's waiting list
    name: str          # the at-risk lead's contact name (what the search finds)
    rep: str


async def publish_load_story(producer: EventProducer, story: Story, tag: str) -> LoadStory:
    rep3 = f"{tag}-rep-3"
    s = LoadStory(at_risk=f"{tag}-risk-{uuid.uuid4().hex[:8]}", waiting=f"{tag}-wait-{uuid.uuid4().hex[:8]}",
                  name=f"Zoe Quigley {tag[-6:]}", rep=rep3)
    base = STORY_START + timedelta(minutes=40)
    roster = RosterChanged(changed_at=base, teams=[RosterTeam(id=story.team, name="Team", overflow="nurture")], reps=[
        RosterRep(id=f"{tag}-rep-1", name="Ann", team=story.team, max_open=2, weekly_cap=6),
        RosterRep(id=f"{tag}-rep-2", name="Bo", team=story.team, max_open=2, weekly_cap=6,
                  out_of_office=[{"start": "2000-01-01T00:00:00+00:00", "end": "2100-01-01T00:00:00+00:00"}]),
        RosterRep(id=rep3, name="Cy", team=story.team, max_open=1, weekly_cap=1)])
    profile = LeadProfile(channel="paid", campaign=story.campaign, source="google", company="Quigley GmbH",
                          contact=Contact(name=s.name, email=f"zoe.{tag[-6:]}@quigley.example"))
    envelopes = [Envelope.of(roster, source="test", lead_id="roster", time=base)]
    for lead, minute in ((s.at_risk, 0), (s.waiting, 1)):
        at = base + timedelta(minutes=minute)
        envelopes.append(Envelope.of(LeadCaptured(lead_id=lead, captured_at=at, profile=profile), source="test",
                                     lead_id=lead, time=at))
    at = base + timedelta(minutes=3)
    envelopes.append(Envelope.of(LeadRouted(lead_id=s.at_risk, routed_at=at, assignee_id=rep3, assignee_name="Cy",
                                            team=story.team, pool=story.team, reason="next in round robin"),
                                 source="test", lead_id=s.at_risk, time=at))
    envelopes.append(Envelope.of(LeadRouted(lead_id=s.waiting, routed_at=at, outcome="returned_to_nurture",
                                            pool=story.team, reason="capacity: nobody can take it",
                                            reason_code="capacity", overflowed_from=[story.team]),
                                 source="test", lead_id=s.waiting, time=at))
    at = base + timedelta(minutes=14)
    envelopes.append(Envelope.of(SlaAtRisk(lead_id=s.at_risk, deadline_id=f"ft-{s.at_risk}", policy="hot-15m",
                                           kind="first_touch", assignee_id=rep3, team=story.team,
                                           due_at=base + timedelta(minutes=18), fired_at=at),
                                 source="test", lead_id=s.at_risk, time=at))
    for envelope in envelopes:
        await producer.send(envelope)
    return s


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, as a fixture (test modules do not import conftest)."""
    return SimpleNamespace(publish_story=publish_story, eventually=eventually, wait_consuming=wait_consuming,
                           frozen_clock=frozen_clock, foreign_events=foreign_events, start=STORY_START,
                           publish_load_story=publish_load_story)


@pytest.fixture
async def producer(kafka_bootstrap):
    async with EventProducer(kafka_bootstrap) as p:
        yield p
