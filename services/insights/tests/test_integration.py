"""Insights over the real Kafka and PostgreSQL: events on the real topics -> timeline and funnel over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

import httpx
import pytest
from leadbridge_contracts.envelope import Envelope
from leadbridge_contracts.events import LeadCaptured, LeadProfile
from leadbridge_devstack.ports import free_port
from leadbridge_events.testing import auth_headers
from leadbridge_insights.app import create_app
from leadbridge_insights.settings import InsightsSettings

pytestmark = pytest.mark.integration


async def test_timeline_and_funnel_from_events_on_the_real_topics(settings, producer, unique_name, kit):
    app = create_app(settings, group_id=unique_name, auto_offset_reset="latest",
                     clock=kit.frozen_clock(kit.start + timedelta(hours=2)))
    async with app.router.lifespan_context(app):
        await kit.wait_consuming(app.state.runtime)
        story = await kit.publish_story(producer, unique_name)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://insights", headers=auth_headers()) as client:

            async def all_projected() -> bool:
                for lead, count in story.events.items():
                    r = await client.get(f"/v1/leads/{lead}/timeline")
                    if r.status_code != 200 or sum(e["source"] == "test" for e in r.json()["events"]) < count:
                        return False
                return True

            await kit.eventually(all_projected)

            async def own_timeline(lead: str) -> list[dict]:  # what this test published (a live service may add)
                events = (await client.get(f"/v1/leads/{lead}/timeline")).json()["events"]
                return [e for e in events if e["source"] == "test"]

            timeline = await own_timeline(story.won)
            assert [e["type"] for e in timeline] == [
                "lead-captured", "lead-scored", "lead-activity-recorded", "lead-routed", "sla-deadlines-set",
                "follow-up-logged", "sla-deadline-met", "follow-up-logged", "follow-up-logged", "follow-up-logged"]
            lines = [e["explanation"] for e in timeline]
            assert lines[0].startswith("Captured (source google, channel paid")
            assert "Scored 75 (grade A)" in lines[1] and "demo-request +30 (asked for a demo)" in lines[1]
            assert "by rule emea-demo: demo request from DE; least loaded rep; SLA policy hot-15m" in lines[3]
            assert lines[4].startswith("First touch due ") and " UTC (at risk " in lines[4]
            assert lines[4].endswith(f"for {unique_name}-rep-1 (team {story.team}) under policy hot-15m")
            assert lines[6].startswith("First-touch SLA met: touched ")
            assert lines[-1] == "Email by rep: won (amount 12000)"

            rejected = [e["explanation"] for e in await own_timeline(story.rejected)]
            assert any(x.startswith("First-touch SLA at risk: due") for x in rejected)
            assert any(x.startswith("First-touch SLA breached") for x in rejected)
            assert "Call by rep: rejected (no budget)" in rejected
            assert any(x.startswith("First-touch SLA met late: touched ") for x in rejected)
            assert rejected[-1].endswith("(was MQL); reason: sales rejected: no budget [model v-test]")

            assert (await client.get(f"/v1/leads/{unique_name}-nobody/timeline")).status_code == 404

            by_campaign = (await client.get("/v1/funnel", params={"by": "campaign"})).json()
            (row,) = [r for r in by_campaign["rows"] if r["key"] == story.campaign]
            assert {k: row[k] for k in ("captured", "nurtured", "accepted", "rejected", "qualified", "won",
                                        "lost")} == {
                "captured": 4, "nurtured": 2, "accepted": 1, "rejected": 1, "qualified": 1, "won": 1, "lost": 0}
            assert row["rejected_reasons"] == {"no budget": 1}
            reacted = await kit.foreign_events(client, story)
            if not reacted:
                assert (row["mql"], row["routed"], row["first_touch_within_sla"], row["limbo"]) == (3, 2, 1, 1)
                assert row["touches"] == {"0": 0, "1-3": 2, "4+": 0}
            else:  # a live router may have routed the limbo lead, a live scoring re-scored the nurture one
                assert row["mql"] >= 3 and row["routed"] >= 2 and row["limbo"] <= 1

            by_team = (await client.get("/v1/funnel", params={"by": "team"})).json()
            (team,) = [r for r in by_team["rows"] if r["key"] == story.team]
            assert (team["routed"], team["sla_breached"], team["sla_compliance"]) == (2, 1, 0.5)
            assert by_campaign["now"] == (kit.start + timedelta(hours=2)).isoformat()

            assert (await client.get("/v1/funnel", params={"by": "color"})).status_code == 422
            later = (await client.get("/v1/funnel", params={"by": "campaign", "since": "2999-01-01T00:00:00Z"}))
            assert later.json()["rows"] == []
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).json() == {"database": "ok", "kafka": "ok"}
            assert "leadbridge_insights_events_projected_total" in (await client.get("/metrics")).text


@pytest.mark.parametrize("linger_ms", [1000, 0])
async def test_insights_lingers_so_a_trickle_of_events_is_projected_in_few_batches(settings, producer, unique_name,
                                                                                   kit, linger_ms):
    """A read model may be a second behind: insights' broker holds its fetches for up to a second (its
    ``consumer_linger_ms``), so events trickling in one by one are projected a handful per transaction, and a
    lead's events that come close together write its views row once. Without the linger (0, as every other
    service consumes) each event of the trickle is a transaction of its own."""
    assert InsightsSettings().consumer_linger_ms == 1000  # the default
    app = create_app(settings.model_copy(update={"consumer_linger_ms": linger_ms}), group_id=unique_name,
                     auto_offset_reset="latest")
    leads = [f"{unique_name}-{i}" for i in range(40)]
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await kit.wait_consuming(runtime)
        before, started = runtime.runner.stats.transactions, asyncio.get_running_loop().time()
        for lead in leads:  # one every 25 ms: a fetch that does not wait returns each on its own
            at = kit.start + timedelta(minutes=1)
            await producer.send(Envelope.of(LeadCaptured(lead_id=lead, captured_at=at, profile=LeadProfile(
                channel="paid", source="google")), source="test", lead_id=lead, time=at))
            await asyncio.sleep(0.025)
        spread = asyncio.get_running_loop().time() - started  # ~1.1 s; longer on a loaded machine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://insights", headers=auth_headers()) as c:
            async def all_projected() -> bool:
                return [(await c.get(f"/v1/leads/{lead}/timeline")).status_code for lead in leads] == [200] * 40

            await kit.eventually(all_projected)
        batches = runtime.runner.stats.transactions - before
    windows = int(spread) + 2  # the linger's windows the publishing spanned, a partial one at each end
    if linger_ms:
        assert batches <= windows, f"{batches} transactions for 40 events published over {spread:.1f} s"
    else:  # the control: what the test would see if insights did not linger
        assert batches > 2 * windows, f"only {batches} transactions without a linger: the control shows nothing"


async def test_python_dash_m_starts_the_service_and_stops_cleanly(settings, unique_name):
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DATABASE_URL": settings.database_url, "INSIGHTS_HOST": "127.0.0.1", "INSIGHTS_PORT": str(port),
           "INSIGHTS_GROUP_ID": unique_name}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "leadbridge_insights", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=auth_headers()) as client:

            async def ready() -> bool:
                assert proc.returncode is None, "the service exited"
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            deadline = asyncio.get_running_loop().time() + 60
            while not await ready():
                assert asyncio.get_running_loop().time() < deadline, "not ready in time"
                await asyncio.sleep(0.2)
            page = await client.get("/")
            assert page.status_code == 200 and '<ol id="funnel"' in page.text
            for asset in ("/static/vendor/uPlot.iife.min.js", "/static/insights.js", "/static/insights.css"):
                assert (await client.get(asset)).status_code == 200, asset  # from the package: no CDN
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit status -SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), err.decode(errors="replace")[-2000:]
    assert b"Application shutdown complete" in err
